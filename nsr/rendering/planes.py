"""Triplane feature lookup (spec §2.6 steps 2–3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nsr.rendering import triton_lookup


def project_to_planes(points: torch.Tensor) -> torch.Tensor:
    """Points `(B, M, 3)` → plane coordinates `(B, 3, M, 2)`: plane 0 (x, y), plane 1 (y, z), plane 2 (z, x).

    The first coordinate of each pair indexes the plane's width, the second its height. This is the released
    "fixed" projection, not the original EG3D (x, y), (x, z), (z, x).
    """
    return torch.stack([points[..., [0, 1]], points[..., [1, 2]], points[..., [2, 0]]], dim=1)


def sample_triplane(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Bilinear features (zeros outside, align_corners False) at world points scaled by 2/box_warp.

    planes `(B, 3, C, H, W)`, points `(B, M, 3)` → `(B, 3, M, C)`.
    """
    b, n, c, h, w = planes.shape
    coords = project_to_planes(points * (2.0 / box_warp)).reshape(b * n, 1, -1, 2)
    feats = F.grid_sample(planes.reshape(b * n, c, h, w), coords.to(planes.dtype), mode="bilinear",
                          padding_mode="zeros", align_corners=False)
    return feats[:, :, 0].transpose(1, 2).reshape(b, n, -1, c)


def mean_plane_features(planes: torch.Tensor, points: torch.Tensor, box_warp: float,
                        fused: bool | None = None) -> torch.Tensor:
    """The field MLP's input: `sample_triplane` averaged over the three planes, planes `(B, 3, C, H, W)`, points
    `(B, M, 3)` → `(B, M, C)`.

    `fused` picks the Triton kernel (`nsr.rendering.triton_lookup`); None uses it for CUDA tensors when Triton is
    there and the points need no gradient, otherwise `grid_sample` (the CPU path and the golden check's).
    """
    if fused is None:
        fused = planes.is_cuda and triton_lookup.available() and not points.requires_grad
    if fused:
        return triton_lookup.mean_triplane_lookup(planes, points, box_warp)
    return sample_triplane(planes, points, box_warp).mean(dim=1)
