"""Evaluation ground truth of procedural objects: SDF and albedo queries, and surface point samples.

Surface samples are drawn uniformly by area: uniform points in the object's box are kept when they lie in a thin
shell |sdf| < shell (whose volume near the surface is area × 2·shell), then projected onto the surface along the
SDF gradient. Points where the projection does not land (creases) are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from datasets.procedural.scene import SDFScene
from datasets.procedural.spec import ObjectSpec


@dataclass
class SurfaceSamples:
    points: torch.Tensor   # (P, 3)
    normals: torch.Tensor  # (P, 3) unit, outward
    albedo: torch.Tensor   # (P, 3) palette colour in [0, 1], unshaded


def query_sdf(spec: ObjectSpec, points: torch.Tensor, device=None) -> torch.Tensor:
    """Signed distance `(P,)` of the object at world points `(P, 3)` (negative inside)."""
    scene = SDFScene([spec], device=device or points.device, dtype=points.dtype)
    return scene.sdf(points.to(scene.device)[None])[0]


def query_albedo(spec: ObjectSpec, points: torch.Tensor, device=None) -> torch.Tensor:
    """Albedo `(P, 3)` of the part nearest to each point `(P, 3)`."""
    scene = SDFScene([spec], device=device or points.device, dtype=points.dtype)
    return scene.sdf_albedo(points.to(scene.device)[None])[1][0]


@torch.no_grad()
def sample_surface(spec: ObjectSpec, num_points: int, seed: int = 0, shell: float = 0.01, device=None,
                   batch: int = 65536, tolerance: float = 1e-3) -> SurfaceSamples:
    """`num_points` points on the surface with normals and albedo, deterministic for a given seed and device."""
    scene = SDFScene([spec], device=device)
    generator = torch.Generator(device=scene.device).manual_seed(seed)
    low, high = scene.bounds[0, 0] - shell, scene.bounds[0, 1] + shell
    kept: list[torch.Tensor] = []
    total = 0
    rounds = 0
    while total < num_points:
        rounds += 1
        if rounds > 1000:
            raise RuntimeError(f"could not sample {num_points} surface points of {spec.category} {spec.index}: "
                               f"only {total} found")
        candidates = low + (high - low) * torch.rand(batch, 3, generator=generator, device=scene.device)
        candidates = candidates[scene.sdf(candidates[None])[0].abs() < shell]
        for _ in range(2):  # Newton-like projection onto the zero level set
            dist = scene.sdf(candidates[None])[0]
            candidates = candidates - dist[:, None] * scene.normals(candidates[None])[0]
        candidates = candidates[scene.sdf(candidates[None])[0].abs() < tolerance]
        kept.append(candidates)
        total += len(candidates)
    points = torch.cat(kept)[:num_points]
    _, albedo = scene.sdf_albedo(points[None])
    return SurfaceSamples(points=points, normals=scene.normals(points[None])[0], albedo=albedo[0])
