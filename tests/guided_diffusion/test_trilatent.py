"""The fixed tri-latent position table and the timestep sinusoid against their closed forms (spec §5.1)."""
import math

import numpy as np
import torch

from guided_diffusion.embedding import timestep_embedding
from guided_diffusion.trilatent import TriLatentTokenizer, trilatent_pos_embed


def test_pos_table_first_half_encodes_token_second_half_plane():
    dim, tokens, planes = 16, 5, 3
    table = trilatent_pos_embed(dim, tokens, planes).double().numpy()
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    for row in range(planes * tokens):
        plane, token = divmod(row, tokens)
        expected = np.concatenate([np.sin(token * omega), np.cos(token * omega),
                                   np.sin(plane * omega), np.cos(plane * omega)])
        np.testing.assert_allclose(table[row], expected, atol=1e-7)


def test_tokenizer_pos_embed_is_a_frozen_parameter_of_the_release_shape():
    tok = TriLatentTokenizer(channels=4, latent_size=32, patch_size=2, hidden_size=64)
    assert tok.pos_embed.shape == (1, 768, 64) and not tok.pos_embed.requires_grad
    assert "pos_embed" in dict(tok.named_parameters())


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 10, 500])
    emb = timestep_embedding(t, 256)
    i = torch.arange(128, dtype=torch.float64)
    args = t[:, None].double() * torch.exp(-math.log(10000) * i / 128)
    torch.testing.assert_close(emb.double(), torch.cat([args.cos(), args.sin()], 1), atol=2e-4, rtol=0)
    assert torch.all(emb[0, :128] == 1) and torch.all(emb[0, 128:] == 0)
