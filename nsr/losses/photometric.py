"""Pixel losses on rendered vs ground-truth images (spec §2.9 "Photometric", "Alpha").

All functions take images `(N, C, H, W)` (any leading shape works as long as pred, target and mask broadcast) and
return a scalar.
"""
from __future__ import annotations

import torch


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error over every element."""
    return (pred - target).pow(2).mean()


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean absolute error over every element."""
    return (pred - target).abs().mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, bg_weight: float = 1.0) -> torch.Tensor:
    """Foreground MSE normalised by the foreground size, plus `bg_weight` × background MSE normalised by its size.

    pred, target `(N, C, H, W)`; mask `(N, 1, H, W)` in [0, 1] (1 = foreground; soft values weight both terms).
    Normalising each region by its own pixel count keeps small objects from being drowned by the white background.
    A region with no pixels contributes 0.
    """
    mask = mask.to(pred.dtype)
    squared = (pred - target).pow(2)
    channels = pred.shape[-3]
    fg_count = (mask.sum() * channels).clamp_min(1.0)
    bg_count = ((1.0 - mask).sum() * channels).clamp_min(1.0)
    fg = (squared * mask).sum() / fg_count
    bg = (squared * (1.0 - mask)).sum() / bg_count
    return fg + bg_weight * bg
