"""The triplane field MLP: mean of the three plane features → density (raw) and colour features (spec §2.6 step 4).

The mean over the planes is taken by the lookup (`nsr.rendering.planes.mean_plane_features`), where it fuses.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualizedLinear(nn.Module):
    """StyleGAN2 FullyConnectedLayer: the stored weight ~ N(0, 1) is scaled by lr_mul/√in at run time (equalised
    learning rate), the bias (initialised to 0) by lr_mul."""

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)


class FieldMLP(nn.Module):
    """EqualizedLinear(C → hidden) → Softplus → EqualizedLinear(hidden → 1 + F).

    Output 0 is the raw density σ (the ray marcher applies softplus(σ − 1)); the other F outputs go through
    sigmoid·1.002 − 0.001 (MipNeRF's widened sigmoid).
    """

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.fc1 = EqualizedLinear(in_features, hidden)
        self.fc2 = EqualizedLinear(hidden, 1 + out_features)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean plane features `(B, M, C)` → sigma `(B, M, 1)`, colour `(B, M, F)` in (−0.001, 1.001)."""
        out = self.fc2(F.softplus(self.fc1(features)))
        return out[..., :1], torch.sigmoid(out[..., 1:]) * 1.002 - 0.001
