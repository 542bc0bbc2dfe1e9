"""Scale-and-shift-invariant depth loss (MiDaS formulation, spec §2.9 "Depth").

The rendered depth of a neural field is only defined up to the scale and offset the density happens to settle on,
so the prediction is first aligned to the target by the least-squares scale s and shift t inside the foreground
mask (closed form per image), then compared with a masked MSE plus a single-scale gradient-matching
term. Both terms are "batch-reduced": summed over the whole batch and divided by the batch's total mask count.
"""
from __future__ import annotations

import torch


def align_scale_and_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image least-squares s, t minimising Σ mask·(s·pred + t − target)²; returns s·pred + t.

    pred, target, mask `(N, H, W)`. Solved with centred moments (s = cov / var, t = mean_t − s·mean_p), which is
    the same solution as the 2×2 normal equations but without their float32 cancellation. An image whose masked
    prediction is constant gets s = 0, t = mean target (MiDaS leaves s = t = 0 there; the mean is the better fit).
    """
    dims = (-2, -1)
    count = mask.sum(dims).clamp_min(1e-12)
    mean_p = (mask * pred).sum(dims) / count
    mean_t = (mask * target).sum(dims) / count
    centred_p = pred - mean_p[:, None, None]
    var = (mask * centred_p.pow(2)).sum(dims)
    cov = (mask * centred_p * (target - mean_t[:, None, None])).sum(dims)
    solvable = var > 0
    scale = torch.where(solvable, cov / torch.where(solvable, var, torch.ones_like(var)), torch.zeros_like(var))
    shift = mean_t - scale * mean_p
    return scale[:, None, None] * pred + shift[:, None, None]


def _masked_mse_batch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # MiDaS divides by 2·Σmask; kept because the 0.2 hinge threshold of the release is calibrated on this scale.
    # clamp_min(1): an empty mask gives 0 without a host sync (masks here are binary, so a non-empty sum is ≥ 1)
    return (mask * (pred - target).pow(2)).sum() / (2.0 * mask.sum()).clamp_min(1.0)


def _gradient_matching_batch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    diff = mask * (pred - target)
    grad_x = (diff[:, :, 1:] - diff[:, :, :-1]).abs() * (mask[:, :, 1:] * mask[:, :, :-1])
    grad_y = (diff[:, 1:, :] - diff[:, :-1, :]).abs() * (mask[:, 1:, :] * mask[:, :-1, :])
    return (grad_x.sum() + grad_y.sum()) / mask.sum().clamp_min(1.0)


def scale_shift_invariant_depth_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                                     gradient_weight: float = 0.5) -> torch.Tensor:
    """MiDaS loss: masked MSE of the aligned prediction + `gradient_weight` × single-scale gradient loss.

    pred, target `(N, 1, H, W)` or `(N, H, W)`; mask the same shape, 1 where the target depth is valid foreground.
    Invariant to any per-image affine change of `pred` (s > 0 or s < 0 alike). Returns a scalar.
    """
    if pred.dim() == 4:
        pred, target, mask = pred.squeeze(1), target.squeeze(1), mask.squeeze(1)
    mask = mask.to(pred.dtype)
    aligned = align_scale_and_shift(pred, target, mask)
    loss = _masked_mse_batch(aligned, target, mask)
    if gradient_weight > 0:
        loss = loss + gradient_weight * _gradient_matching_batch(aligned, target, mask)
    return loss


def hinged_depth_loss(loss: torch.Tensor, weight: float, threshold: float = 0.2) -> torch.Tensor:
    """The release's hinge: a depth loss above `threshold` is dropped (0), otherwise multiplied by `weight`.

    Early in training the rendered depth is noise and its aligned loss is large; dropping it then keeps the depth
    term from dominating the photometric ones until the geometry is roughly in place.
    """
    return torch.where(loss > threshold, torch.zeros_like(loss), loss * weight)
