"""Ray near/far limits from the intersection with an axis-aligned cube centred at the origin.

The arithmetic is the release's on purpose, in float32 and in the same order ((±half − o)·(1/d), then the renderer's
near + k/(S−1)·(far − near) and o + t·d): a hitting ray's first and last samples lie exactly on the box faces, and
whether the box filter keeps them is decided by the last bit of those products (docs/COMPATIBILITY.md, renderer
table, "samples on the box faces"). A tolerance or another formula changes Σw by up to ~1/63 of the ray's optical
depth on such rays.
"""
from __future__ import annotations

import torch


def ray_box_intersection(origins: torch.Tensor, directions: torch.Tensor, side: float):
    """Slab intersection with the cube [-side/2, side/2]³.

    origins, directions `(..., 3)` → t_near, t_far `(..., 1)`; rays that miss get t_near = -1, t_far = -2.
    """
    half = side / 2
    inv = 1.0 / directions
    t0 = (-half - origins) * inv
    t1 = (half - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1, keepdim=True)
    t_far = torch.maximum(t0, t1).amin(dim=-1, keepdim=True)
    hit = t_near <= t_far
    return torch.where(hit, t_near, -1.0), torch.where(hit, t_far, -2.0)


def auto_ray_range(origins: torch.Tensor, directions: torch.Tensor, side: float):
    """The released 'auto' near/far: the cube intersection, with the rays that miss (or only touch) it given
    near = the smallest near of the hitting rays and far = the *largest near* of the hitting rays. The far value is a
    quirk copied from OpenLRM (spec §14.35); it only matters for rays that miss the box, whose samples all fall
    outside it. Statistics run over every ray passed in, so callers pass all rays of one render at once.

    origins, directions `(..., 3)` → near, far `(..., 1)`.
    """
    near, far = ray_box_intersection(origins.detach(), directions.detach(), side)
    valid = far > near
    if bool(valid.any()):
        hit_near = near[valid]
        near, far = torch.where(valid, near, hit_near.min()), torch.where(valid, far, hit_near.max())
    return near, far
