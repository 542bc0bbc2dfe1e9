"""A batch of procedural objects as tensors, so one call evaluates the SDF of many objects at once.

Parts are grouped by primitive type into padded tables `(B, P_t, ...)`. Moving points into every part's frame of one
type is one affine map for all parts at once: local = Rᵀ(p − c), with all parts' rotations stacked side by side.
Padding parts sit far away, so they never win the union's minimum.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from datasets.procedural.palette import color_rgb
from datasets.procedural.primitives import PRIMITIVES
from datasets.procedural.spec import ObjectSpec, rotation_matrix

_FAR = 1.0e4  # where padding parts live: no point inside the render volume gets near them


class SDFScene:
    """SDF and albedo of B objects. Points are per object: `(B, N, 3)` → distances `(B, N)`."""

    def __init__(self, specs: Sequence[ObjectSpec], device=None, dtype=torch.float32):
        self.specs = list(specs)
        if not self.specs:
            raise ValueError("an SDFScene needs at least one object spec")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        batch = len(self.specs)
        self.bounds = torch.tensor(np.stack([s.bounds() for s in self.specs]), device=self.device, dtype=dtype)
        self.tables = []
        for primitive in PRIMITIVES:
            rows = [[p for p in spec.parts if p.primitive == primitive] for spec in self.specs]
            count = max(len(r) for r in rows)
            if count == 0:
                continue
            rot = np.tile(np.eye(3), (batch, count, 1, 1))
            centre = np.full((batch, count, 3), _FAR)
            params = np.ones((batch, count, 4))
            albedo = np.ones((batch, count, 3))
            for b, parts in enumerate(rows):
                for k, part in enumerate(parts):
                    rot[b, k] = rotation_matrix(part.rotation)
                    centre[b, k] = part.position
                    params[b, k, :len(part.params)] = part.params
                    albedo[b, k] = color_rgb(part.color)
            # with row vectors, p_local = Rᵀ(p − c) reads p·R − c·R; stack every part's R: (B, 3, count·3)
            weight = np.transpose(rot, (0, 2, 1, 3)).reshape(batch, 3, count * 3)
            bias = -np.einsum("bkj,bkji->bki", centre, rot).reshape(batch, 1, count * 3)
            as_tensor = lambda a: torch.tensor(a, device=self.device, dtype=dtype)  # noqa: E731
            self.tables.append(dict(fn=PRIMITIVES[primitive], count=count, weight=as_tensor(weight),
                                    bias=as_tensor(bias), params=as_tensor(params)[:, None],
                                    albedo=as_tensor(albedo)))

    def __len__(self) -> int:
        return len(self.specs)

    def _distances(self, table: dict, points: torch.Tensor) -> torch.Tensor:
        """Distances to every part of one type, `(B, N, P_t)`."""
        # three multiply-adds rather than a matmul: a matmul may run in TF32 on GPUs (if a trainer enabled it),
        # which would put ~1e-3 noise on every surface
        weight = table["weight"]
        local = torch.addcmul(table["bias"], points[..., 0:1], weight[:, 0:1])
        local = torch.addcmul(local, points[..., 1:2], weight[:, 1:2])
        local = torch.addcmul(local, points[..., 2:3], weight[:, 2:3])
        local = local.unflatten(-1, (table["count"], 3))
        return table["fn"](local, table["params"])

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Union distance `(B, N)` at points `(B, N, 3)`."""
        dist = None
        for table in self.tables:
            d = self._distances(table, points).amin(dim=-1)
            dist = d if dist is None else torch.minimum(dist, d)
        return dist

    def sdf_albedo(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Union distance `(B, N)` and the albedo of the nearest part `(B, N, 3)`."""
        dists = torch.cat([self._distances(t, points) for t in self.tables], dim=-1)
        albedos = torch.cat([t["albedo"] for t in self.tables], dim=1)
        dist, nearest = dists.min(dim=-1)
        albedo = torch.gather(albedos, 1, nearest[..., None].expand(-1, -1, 3))
        return dist, albedo

    def normals(self, points: torch.Tensor, step: float = 5e-4) -> torch.Tensor:
        """Unit outward normals `(B, N, 3)` from the tetrahedral finite-difference gradient of the SDF."""
        offsets = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], device=points.device,
                               dtype=points.dtype)
        grad = torch.zeros_like(points)
        for k in range(4):
            grad = grad + offsets[k] * self.sdf(points + step * offsets[k])[..., None]
        return torch.nn.functional.normalize(grad, dim=-1)
