"""Signed distance functions of the primitives, in each primitive's local frame.

Every function takes local points `(..., 3)` and parameters `(..., 4)` (broadcast against the points, unused
trailing entries ignored) and returns distances `(...)`. Shapes are centred on the origin with their axis along
local z, so one rigid transform per part places them. All are exact Euclidean distances except the ellipsoid
(a close bound; the tracer's step scale covers it).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def _length2(x: Tensor, y: Tensor) -> Tensor:
    return torch.sqrt(x * x + y * y)


def sphere(p: Tensor, params: Tensor) -> Tensor:
    """params: radius."""
    return p.norm(dim=-1) - params[..., 0]


def ellipsoid(p: Tensor, params: Tensor) -> Tensor:
    """params: radii along x, y, z."""
    radii = params[..., :3]
    k0 = (p / radii).norm(dim=-1)
    k1 = (p / (radii * radii)).norm(dim=-1).clamp_min(1e-12)
    return k0 * (k0 - 1.0) / k1


def box(p: Tensor, params: Tensor) -> Tensor:
    """params: half extents along x, y, z."""
    q = p.abs() - params[..., :3]
    return q.clamp_min(0.0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0.0)


def rounded_box(p: Tensor, params: Tensor) -> Tensor:
    """params: half extents along x, y, z (including the rounding), edge radius."""
    radius = params[..., 3]
    q = p.abs() - (params[..., :3] - radius[..., None])
    return q.clamp_min(0.0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0.0) - radius


def cylinder(p: Tensor, params: Tensor) -> Tensor:
    """params: radius, half height."""
    dr = _length2(p[..., 0], p[..., 1]) - params[..., 0]
    dz = p[..., 2].abs() - params[..., 1]
    return torch.maximum(dr, dz).clamp_max(0.0) + _length2(dr.clamp_min(0.0), dz.clamp_min(0.0))


def capsule(p: Tensor, params: Tensor) -> Tensor:
    """params: radius, half length of the core segment (total half height = half length + radius)."""
    half = params[..., 1]
    z = p[..., 2] - torch.maximum(torch.minimum(p[..., 2], half), -half)
    return torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2 + z * z) - params[..., 0]


def cone(p: Tensor, params: Tensor) -> Tensor:
    """Capped cone. params: radius at z = -h, radius at z = +h, half height h."""
    r1, r2, h = params[..., 0], params[..., 1], params[..., 2]
    qx = _length2(p[..., 0], p[..., 1])
    qy = p[..., 2]
    cap_r = torch.where(qy < 0.0, r1, r2)
    ca_x = qx - torch.minimum(qx, cap_r)
    ca_y = qy.abs() - h
    k2x, k2y = r2 - r1, 2.0 * h
    t = (((r2 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0.0, 1.0)
    cb_x = qx - r2 + k2x * t
    cb_y = qy - h + k2y * t
    inside = (cb_x < 0.0) & (ca_y < 0.0)
    dist = torch.sqrt(torch.minimum(ca_x * ca_x + ca_y * ca_y, cb_x * cb_x + cb_y * cb_y))
    return torch.where(inside, -dist, dist)


def torus(p: Tensor, params: Tensor) -> Tensor:
    """Torus in the local xy-plane. params: ring radius, tube radius."""
    return _length2(_length2(p[..., 0], p[..., 1]) - params[..., 0], p[..., 2]) - params[..., 1]


SDFFunction = Callable[[Tensor, Tensor], Tensor]
PRIMITIVES: dict[str, SDFFunction] = {
    "sphere": sphere,
    "ellipsoid": ellipsoid,
    "box": box,
    "rounded_box": rounded_box,
    "cylinder": cylinder,
    "capsule": capsule,
    "cone": cone,
    "torus": torus,
}


def local_half_extents(primitive: str, params: list[float]) -> tuple[float, float, float]:
    """Half extents of the primitive's local axis-aligned bounding box."""
    if primitive == "sphere":
        return (params[0],) * 3
    if primitive in ("ellipsoid", "box", "rounded_box"):
        return params[0], params[1], params[2]
    if primitive == "cylinder":
        return params[0], params[0], params[1]
    if primitive == "capsule":
        return params[0], params[0], params[1] + params[0]
    if primitive == "cone":
        radius = max(params[0], params[1])
        return radius, radius, params[2]
    if primitive == "torus":
        return params[0] + params[1], params[0] + params[1], params[1]
    raise KeyError(f"unknown primitive {primitive!r}; choose one of {', '.join(PRIMITIVES)}")
