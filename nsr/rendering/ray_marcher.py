"""Alpha compositing along rays (the MipNeRF-style marcher of EG3D, spec §2.6 step 6)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def composite(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor) -> dict[str, torch.Tensor]:
    """Composite S samples per ray using the S − 1 intervals between them.

    Colours, raw densities and depths are averaged at interval mid-points; density = softplus(σ − 1),
    α = 1 − exp(−density·δ), T = cumprod(1 − α + 1e-10) starting at 1, w = α·T.

    colors `(B, R, S, F)`, densities `(B, R, S, 1)`, depths `(B, R, S, 1)` →
    dict(color (B, R, F) = Σ w·c (no background), depth (B, R, 1) = Σ w·t (not normalised, not clamped),
    weight_sum (B, R, 1), weights (B, R, S−1, 1)).
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-densities_mid * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2), -2)
    weights = alpha * transmittance[:, :, :-1]
    return {
        "color": (weights * colors_mid).sum(-2),
        "depth": (weights * depths_mid).sum(-2),
        "weight_sum": weights.sum(-2),
        "weights": weights,
    }


def finish(color: torch.Tensor, depth: torch.Tensor, weight_sum: torch.Tensor, depth_min: torch.Tensor,
           depth_max: torch.Tensor, white_background: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Background and output ranges: colour + (1 − Σw) on a white background, mapped to [-1, 1]; depth with NaN → +inf
    then clamped to [depth_min, depth_max], which the release takes over every sample depth of the whole render call
    (so rays that hit nothing get the nearest sample depth of the batch)."""
    if white_background:
        color = color + 1 - weight_sum
    depth = torch.clamp(torch.nan_to_num(depth, float("inf")), depth_min, depth_max)
    return color * 2 - 1, depth
