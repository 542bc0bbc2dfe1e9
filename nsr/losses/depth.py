"""Scale-and-shift-invariant depth loss (MiDaS formulation, spec §2.9 "Depth").

The rendered depth of a neural field is only defined up to the scale and offset the density happens to settle on,
so the prediction is first aligned to the target by the least-squares scale s and shift t inside the foreground
mask (a closed-form 2×2 solve per image), then compared with a masked MSE plus a single-scale gradient-matching
term. Both terms are "batch-reduced": summed over the whole batch and divided by the batch's total mask count.
"""
from __future__ import annotations

import torch


def align_scale_and_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image least-squares s, t minimising Σ mask·(s·pred + t − target)²; returns s·pred + t.

    pred, target, mask `(N, H, W)`. Images whose normal equations are singular (fewer than two distinct masked
    depths) keep s = t = 0, i.e. they are compared against a flat prediction.
    """
    dims = (-2, -1)
    a00 = (mask * pred * pred).sum(dims)
    a01 = (mask * pred).sum(dims)
    a11 = mask.sum(dims)
    b0 = (mask * pred * target).sum(dims)
    b1 = (mask * target).sum(dims)
    det = a00 * a11 - a01 * a01
    solvable = det.abs() > 0
    safe_det = torch.where(solvable, det, torch.ones_like(det))
    scale = torch.where(solvable, (a11 * b0 - a01 * b1) / safe_det, torch.zeros_like(det))
    shift = torch.where(solvable, (a00 * b1 - a01 * b0) / safe_det, torch.zeros_like(det))
    return scale[:, None, None] * pred + shift[:, None, None]


def _masked_mse_batch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # MiDaS divides by 2·Σmask; kept because the 0.2 hinge threshold of the release is calibrated on this scale
    total = mask.sum()
    if total == 0:
        return pred.sum() * 0.0
    return (mask * (pred - target).pow(2)).sum() / (2.0 * total)


def _gradient_matching_batch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    total = mask.sum()
    if total == 0:
        return pred.sum() * 0.0
    diff = mask * (pred - target)
    grad_x = (diff[:, :, 1:] - diff[:, :, :-1]).abs() * (mask[:, :, 1:] * mask[:, :, :-1])
    grad_y = (diff[:, 1:, :] - diff[:, :-1, :]).abs() * (mask[:, 1:, :] * mask[:, :-1, :])
    return (grad_x.sum() + grad_y.sum()) / total


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
