"""Offline conditioners (trained from scratch), the registry and prompt validation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ldm import build_conditioner, conditioner_names, validate_prompts

TEXT = {"width": 32, "depth": 1, "num_heads": 2, "vector_dim": 24}
IMAGE = {"width": 32, "depth": 1, "num_heads": 2, "vector_dim": 24, "image_size": 64, "patch_size": 4}


@pytest.fixture(scope="module")
def text_conditioner():
    torch.manual_seed(0)
    return build_conditioner("offline-text", **TEXT)


def test_text_shapes_padding_and_batch_independence(text_conditioner):
    prompts = ["a red car", "a wooden chair with four legs", ""]
    out = text_conditioner(prompts)
    assert out["crossattn"].shape == (3, 77, 32) and out["vector"].shape == (3, 24)
    ids, mask = text_conditioner.tokenize(prompts)
    assert mask.sum(dim=1).tolist() == [5, 8, 2]  # SOT + words + EOT
    assert torch.equal(out["crossattn"][~mask], torch.zeros(int((~mask).sum()), 32))  # padding is exactly zero
    assert out["crossattn"][mask].abs().sum(dim=-1).gt(0).all()
    alone = text_conditioner(prompts[:1])
    torch.testing.assert_close(alone["crossattn"][0], out["crossattn"][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(alone["vector"][0], out["vector"][0], rtol=0, atol=1e-6)
    assert (text_conditioner.context_dim, text_conditioner.vector_dim, text_conditioner.num_tokens) == (32, 24, 77)


def test_text_is_deterministic_and_rebuilds_from_describe(text_conditioner):
    prompts = ["a blue plastic chair", "a tall lamp"]
    first, second = text_conditioner(prompts), text_conditioner(prompts)
    assert torch.equal(first["crossattn"], second["crossattn"]) and torch.equal(first["vector"], second["vector"])
    description = text_conditioner.describe()
    assert description == {"name": "offline-text", "preset": "tiny", "width": 32, "depth": 1, "num_heads": 2,
                           "vector_dim": 24, "max_length": 77, "mlp_ratio": 4.0, "compact_vocab": True}
    rebuilt = build_conditioner(**description)
    rebuilt.load_state_dict(text_conditioner.state_dict())
    assert torch.equal(rebuilt(prompts)["vector"], first["vector"])
    assert text_conditioner.trainable and all(p.requires_grad for p in text_conditioner.parameters())


def test_text_gradients_reach_every_parameter(text_conditioner):
    text_conditioner.zero_grad()
    out = text_conditioner(["a red car", "a green tree"])
    (out["crossattn"].square().mean() + out["vector"].square().mean()).backward()
    for name, param in text_conditioner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_text_encoder_learns_to_tell_captions_apart():
    torch.manual_seed(0)
    captions = ["a red sports car", "a wooden chair", "a tall table lamp", "a small sailing boat"]
    conditioner = build_conditioner("offline-text", **TEXT)
    head = torch.nn.Linear(24, 4)
    optimizer = torch.optim.AdamW([*conditioner.parameters(), *head.parameters()], lr=3e-3)
    labels = torch.arange(4)
    for _ in range(50):
        loss = F.cross_entropy(head(conditioner(captions)["vector"]), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (head(conditioner(captions)["vector"]).argmax(dim=1) == labels).float().mean().item()
    assert accuracy == 1.0


def test_image_shapes_gradients_and_determinism():
    torch.manual_seed(0)
    conditioner = build_conditioner("offline-image", **IMAGE)
    images = torch.rand(2, 3, 96, 96) * 2 - 1
    out = conditioner(images)
    assert out["crossattn"].shape == (2, 256, 32) and out["vector"].shape == (2, 24)
    assert conditioner.num_tokens == 256 and conditioner.trainable
    assert torch.equal(conditioner(images)["crossattn"], out["crossattn"])
    (out["crossattn"].square().mean() + out["vector"].square().mean()).backward()
    for name, param in conditioner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    rebuilt = build_conditioner(**conditioner.describe())
    rebuilt.load_state_dict(conditioner.state_dict())
    assert torch.equal(rebuilt(images)["vector"], out["vector"].detach())
    null = conditioner.null_condition(3)
    assert null["crossattn"].shape == (3, 256, 32) and null["vector"].shape == (3, 24) and not null["vector"].any()
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        build_conditioner("offline-image", image_size=100, patch_size=8)


def test_registry_names_and_unknown_name_error():
    assert conditioner_names() == ["clip-text", "clip-dino-image", "clip-zeroshot-text", "clip-zeroshot-image",
                                   "offline-text", "offline-image"]
    with pytest.raises(ValueError) as err:
        build_conditioner("t5-text")
    assert str(err.value) == ("unknown conditioner 't5-text'; valid names: clip-text, clip-dino-image, "
                              "clip-zeroshot-text, clip-zeroshot-image, offline-text, offline-image")
    with pytest.raises(ValueError, match="unknown offline-text preset 'huge'; choose one of tiny, small"):
        build_conditioner("offline-text", preset="huge")


def test_validate_prompts():
    assert validate_prompts(["a chair", "a lamp"]) == ["a chair", "a lamp"]
    assert validate_prompts("a chair") == ["a chair"]
    with pytest.raises(ValueError) as err:
        validate_prompts(["a chair", "", "  \t"])
    assert str(err.value) == ("empty prompt: prompt(s) at position 1, 2 of 3 are empty or whitespace only; "
                              "describe the object to generate, e.g. 'a blue plastic chair'")
    with pytest.raises(ValueError, match="empty prompt: no prompt was given"):
        validate_prompts([])
    with pytest.raises(TypeError, match="prompts must be strings, got NoneType"):
        validate_prompts(["a chair", None])


def test_residue_embedding_gives_every_clip_token_its_own_pair_of_rows():
    import torch

    from ldm.offline_text import RESIDUE_TABLES, ResidueEmbedding

    ids = torch.arange(49408)
    pairs = torch.stack([ids % RESIDUE_TABLES[0], ids % RESIDUE_TABLES[1]], dim=1)
    assert len(torch.unique(pairs, dim=0)) == 49408
    emb = ResidueEmbedding(49408, 8)
    expected = emb.tables[0].weight[ids % RESIDUE_TABLES[0]] + emb.tables[1].weight[ids % RESIDUE_TABLES[1]]
    assert torch.equal(emb(ids), expected)
    with pytest.raises(ValueError, match="cannot separate"):
        ResidueEmbedding(10_000, 8, sizes=(7, 11))
