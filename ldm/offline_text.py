"""Offline text conditioner: a small transformer over CLIP's BPE tokens, trained from scratch with the denoiser.

It needs no downloaded weights: open_clip bundles the CLIP BPE vocabulary, so prompts tokenise exactly as for CLIP
(lower-cased, 77 tokens, [SOT, words…, EOT] then padding). Attention is bidirectional and masked to the real tokens
(SOT … first EOT); the padded positions of `crossattn` are set to exactly zero so a prompt's context does not depend on
how much padding follows it, and `vector` is a projection of the mean over real tokens.
"""
from __future__ import annotations

import torch
from torch import nn

from ldm.base import Conditioner, as_prompt_list
from ldm.transformer import Encoder

PRESETS = {
    "tiny": {"width": 128, "depth": 2, "num_heads": 4, "compact_vocab": True},
    "small": {"width": 384, "depth": 6, "num_heads": 6, "compact_vocab": False},
}
RESIDUE_TABLES = (4093, 4091)  # coprime, product > CLIP's 49,408 tokens


class ResidueEmbedding(nn.Module):
    """Token embedding = E1[id mod p] + E2[id mod q] with coprime p, q.

    By the Chinese remainder theorem no two ids below p·q share both residues, so every CLIP token keeps its own
    embedding while the tables hold p + q rows instead of the full vocabulary (8,184 vs 49,408): the tiny offline
    conditioner shrinks from 6.7 M to 1.3 M parameters, which is what lets the embedded model ship in git.
    """

    def __init__(self, vocab_size: int, dim: int, sizes: tuple[int, int] = RESIDUE_TABLES):
        super().__init__()
        if sizes[0] * sizes[1] < vocab_size:
            raise ValueError(f"residue tables {sizes} cannot separate {vocab_size} tokens")
        self.sizes = sizes
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in sizes)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02 / 2**0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return sum(table(ids % n) for table, n in zip(self.tables, self.sizes))


class OfflineTextConditioner(Conditioner):
    """`forward(prompts: list[str])` → `dict(crossattn (B, max_length, width), vector (B, vector_dim))`.

    `preset` ('tiny' or 'small') fills the widths not given explicitly; `vector_dim` defaults to `width`.
    """

    name = "offline-text"
    modality = "text"
    trainable = True

    def __init__(self, preset: str = "tiny", width: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, vector_dim: int | None = None, max_length: int = 77,
                 mlp_ratio: float = 4.0, compact_vocab: bool | None = None):
        import open_clip

        if preset not in PRESETS:
            raise ValueError(f"unknown offline-text preset '{preset}'; choose one of {', '.join(PRESETS)}")
        given = {"width": width, "depth": depth, "num_heads": num_heads, "compact_vocab": compact_vocab}
        arch = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
        vector_dim = arch["width"] if vector_dim is None else vector_dim
        super().__init__(context_dim=arch["width"], vector_dim=vector_dim, num_tokens=max_length)
        self.settings = {"preset": preset, **arch, "vector_dim": vector_dim, "max_length": max_length,
                         "mlp_ratio": mlp_ratio}
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=max_length)
        self.eot_token_id = self.tokenizer.eot_token_id
        if arch["compact_vocab"]:
            self.token_embedding = ResidueEmbedding(self.tokenizer.vocab_size, arch["width"])
        else:
            self.token_embedding = nn.Embedding(self.tokenizer.vocab_size, arch["width"])
            nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.position_embedding = nn.Parameter(torch.randn(max_length, arch["width"]) * 0.01)
        self.encoder = Encoder(arch["width"], arch["depth"], arch["num_heads"], mlp_ratio)
        self.vector_proj = nn.Linear(arch["width"], vector_dim)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) and the real-token mask (B, L): True from SOT up to and including the first EOT.

        open_clip pads with id 0, which is also the token '!', so the mask comes from the EOT position, not the ids.
        """
        ids = self.tokenizer(as_prompt_list(prompts))
        eot_position = (ids == self.eot_token_id).int().argmax(dim=1)
        mask = torch.arange(ids.shape[1])[None] <= eot_position[:, None]
        return ids, mask

    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        x = self.token_embedding(ids) + self.position_embedding
        x = self.encoder(x, key_mask=mask).masked_fill(~mask[..., None], 0.0)
        pooled = x.sum(dim=1) / mask.sum(dim=1, keepdim=True)
        return {"crossattn": x, "vector": self.vector_proj(pooled)}

    def config(self) -> dict:
        return dict(self.settings)
