"""Pieces common to the two tri-latent DiTs: the named size registry, DiT initialisation, latent statistics."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from guided_diffusion.embedding import TimestepEmbedder
from guided_diffusion.trilatent import TriLatentTokenizer


@dataclass(frozen=True)
class DiTSize:
    depth: int
    hidden_size: int
    num_heads: int


# The DiT paper sizes (patch size is a separate setting, as in "DiT-L/2").
DIT_SIZES: dict[str, DiTSize] = {
    "S": DiTSize(depth=12, hidden_size=384, num_heads=6),
    "B": DiTSize(depth=12, hidden_size=768, num_heads=12),
    "L": DiTSize(depth=24, hidden_size=1024, num_heads=16),
    "XL": DiTSize(depth=28, hidden_size=1152, num_heads=16),
}


def init_dit_weights_(model: nn.Module) -> None:
    """DiT initialisation of everything generic: xavier-uniform Linear weights and zero biases, the patch conv
    initialised like a Linear, timestep MLP N(0, 0.02). Models zero their own modulation and output layers after."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    # Second pass: these own Linear children that the first pass has just reset.
    for m in model.modules():
        if isinstance(m, TriLatentTokenizer):
            nn.init.xavier_uniform_(m.proj.weight.view(m.proj.weight.shape[0], -1))
            nn.init.zeros_(m.proj.bias)
        elif isinstance(m, TimestepEmbedder):
            nn.init.normal_(m.fc1.weight, std=0.02)
            nn.init.normal_(m.fc2.weight, std=0.02)


def register_latent_statistics(module: nn.Module, channels: int, size: int) -> None:
    """Persistent `latent_std` (ones) and `latent_mean` (zeros), `(1, channels, size, size)`.

    The released joint checkpoints carry these (`ema_latent_std/mean`) for every denoiser; no forward pass reads
    them. They are kept so that our state dicts and the released ones convert one to one.
    """
    module.register_buffer("latent_std", torch.ones(1, channels, size, size))
    module.register_buffer("latent_mean", torch.zeros(1, channels, size, size))
