"""Timestep embeddings shared by the DiTs and the UNet."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding `(B,) → (B, dim)`: [cos, sin] of t·exp(−ln(max_period)·i/half), i < half = dim // 2.

    The cos half comes first (GLIDE/ADM order, which every released denoiser was trained with). `t` may be an
    integer DDPM index, t/1000 or a continuous flow time; it is embedded as given, in float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """t `(B,)` → sinusoid (`frequency_dim`) → Linear → SiLU → Linear → `(B, hidden_size)`."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.fc1 = nn.Linear(frequency_dim, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.frequency_dim).to(self.fc1.weight.dtype)
        return self.fc2(F.silu(self.fc1(emb)))
