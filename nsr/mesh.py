"""Mesh extraction from a neural density field, mesh export, and point-set metrics (Chamfer, F-score).

Extraction follows the release (spec §7.5): raw σ on a res³ grid over the sampler bbox (meshgrid 'ij' over x, y, z),
marching cubes at iso-level 10, vertex colours from the field's rgb at the vertices, then −90° about x to make the
mesh y-up. It only needs a `query_fn(points (P, 3)) -> dict(sigma=(P, 1) raw, rgb=(P, 3) in [0, 1])`, e.g.
`lambda p: vae.query(triplane, p[None])` squeezed, so it is independent of the VAE.

Everything up to the finished mesh runs on `device`, marching cubes included (`nsr.marching_cubes`, plain torch): on
a GPU nothing but the final vertices, faces and colours crosses to the host. Memory: the grid points are generated
chunk by chunk, so the peak is the σ grid (res³ float32, 64 MiB at 256³) plus one chunk's field query
(`chunk_size`) or marching cubes' per-cell bytes (about 3 per cell plus the active cells' triangles).

A field that never crosses the level raises `EmptyMeshError` (with the σ range) rather than returning an empty mesh:
an empty GLB/OBJ is not a usable output, and the σ range tells the user whether the level or the model is at fault.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from nsr.marching_cubes import marching_cubes
from utils.media import atomic_output

QueryFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]

MESH_FORMATS = {".glb": "glb", ".obj": "obj", ".ply": "ply"}
# Points per field query. A triplane query holds about 1 KB per point, so 2¹⁷ points keep a 256³ extraction next to
# the release VAE's 1.8 GiB of weights under 2 GiB in all; larger chunks are faster (fewer launches) but not leaner.
DEFAULT_CHUNK = 2**17


class EmptyMeshError(ValueError):
    """The density field has no iso-surface at the requested level inside the bbox."""


@dataclass
class MeshStats:
    vertices: int
    faces: int
    watertight: bool
    area: float  # in bbox units²
    timings: dict[str, float] = field(default_factory=dict)  # seconds per extraction stage


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside (normals point out of the dense region)
    colors: np.ndarray  # (V, 3) uint8
    stats: MeshStats

    def to_trimesh(self) -> trimesh.Trimesh:
        rgba = np.concatenate([self.colors, np.full((len(self.colors), 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=rgba, process=False)


def grid_axis(resolution: int, bbox: tuple[float, float]) -> np.ndarray:
    """(res,) float64 grid coordinates: lo + v/(res−1)·(hi−lo), i.e. the release's (v/(res−1)·2−1)·half-extent."""
    lo, hi = bbox
    return lo + np.arange(resolution, dtype=np.float64) / (resolution - 1) * (hi - lo)


@torch.no_grad()
def density_grid(
    query_fn: QueryFn,
    resolution: int,
    bbox: tuple[float, float],
    chunk_size: int = DEFAULT_CHUNK,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Raw σ on the grid → (res, res, res) float32 on `device`, indexed [x, y, z].

    Chunk coordinates are built from flat indices on the fly, so no res³×3 point array ever exists, and the chunks
    are written into the grid on the device: no host round trip per chunk.
    """
    device = torch.device(device or "cpu")
    axis = torch.from_numpy(grid_axis(resolution, bbox)).float().to(device)
    total = resolution**3
    sigma = torch.empty(total, dtype=torch.float32, device=device)
    for start in range(0, total, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, total), device=device)
        points = torch.stack(
            [axis[idx // resolution**2], axis[(idx // resolution) % resolution], axis[idx % resolution]], dim=-1
        )
        sigma[start : start + len(idx)] = query_fn(points)["sigma"].reshape(-1).to(device, torch.float32)
    return sigma.reshape(resolution, resolution, resolution)


def _drop_degenerate(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove faces with a repeated vertex index, duplicate faces (the first is kept) and vertices no face uses."""
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    _, group = torch.unique(faces.sort(dim=1).values, dim=0, return_inverse=True)
    order = torch.arange(len(faces), device=faces.device)
    first = torch.full((int(group.max()) + 1 if len(faces) else 0,), len(faces), device=faces.device)
    first = first.scatter_reduce(0, group, order, reduce="amin")
    faces = faces[first.sort().values]
    used, remap = torch.unique(faces, return_inverse=True)
    return vertices[used], remap.reshape(faces.shape)


def iso_surface(
    sigma: torch.Tensor, level: float, bbox: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes on a (res, res, res) [x, y, z] grid → vertices (V, 3) float32 in bbox coordinates and faces
    (F, 3) int64, on the grid's device. Normals point from high σ to low σ (outwards for a density field).

    Grid values exactly at the level put several vertices on the same grid node; they are welded, since they would
    otherwise leave zero-area faces and a non-manifold surface.
    """
    lo_sigma, hi_sigma = sigma.min().item(), sigma.max().item()
    if not (lo_sigma < level < hi_sigma):
        raise EmptyMeshError(
            f"no surface: sigma spans [{lo_sigma:.4g}, {hi_sigma:.4g}] and never crosses level {level:g}"
        )
    vertices, faces = marching_cubes(sigma, level)
    if (sigma == level).any():
        vertices, inverse = torch.unique(vertices, dim=0, return_inverse=True)
        vertices, faces = _drop_degenerate(vertices, inverse[faces])
    lo, hi = bbox
    return lo + vertices / (sigma.shape[0] - 1) * (hi - lo), faces


def _cluster(vertices: torch.Tensor, faces: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex clustering: snap vertices to a cells³ grid over their bbox, one averaged vertex per occupied cell."""
    lo = vertices.min(dim=0).values
    extent = (vertices.max(dim=0).values - lo).max()
    key3 = torch.floor((vertices - lo) / extent * cells).long()  # in [0, cells]
    key = (key3[:, 0] * (cells + 1) + key3[:, 1]) * (cells + 1) + key3[:, 2]
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    merged = torch.zeros(len(counts), 3, dtype=vertices.dtype, device=vertices.device).index_add_(0, inverse, vertices)
    return _drop_degenerate(merged / counts[:, None], inverse[faces])


def decimate(vertices: torch.Tensor, faces: torch.Tensor, target_faces: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce to at most `target_faces` faces (when achievable); returns (vertices (V', 3), faces (F', 3)).

    Vertex clustering with the finest cluster grid (found by bisection) that meets the target: no extra dependency,
    and fast enough for interactive use. Clustering does not preserve watertightness; the mesh stats report it.
    """
    if len(faces) <= target_faces:
        return vertices, faces
    edges = vertices[faces[:, [1, 2, 0]]] - vertices[faces]
    extent = float((vertices.max(dim=0).values - vertices.min(dim=0).values).max())
    # At half the mean edge length clustering merges almost nothing, so the answer lies below that many cells.
    lo, hi = 2, max(3, int(np.ceil(2 * extent / float(edges.norm(dim=-1).mean()))))
    best = _cluster(vertices, faces, lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        candidate = _cluster(vertices, faces, mid)
        if len(candidate[1]) <= target_faces:
            lo, best = mid, candidate
        else:
            hi = mid
    return best


@torch.no_grad()
def query_colors(query_fn: QueryFn, points: torch.Tensor, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The field's rgb at points (P, 3), on their device → (P, 3) uint8 (clipped to [0, 1] first)."""
    rgb = torch.cat([query_fn(chunk)["rgb"].float().to(points.device) for chunk in points.split(chunk_size)])
    return (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def rotate_to_y_up(vertices: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """−90° about x, the release's z-up → y-up conversion: (x, y, z) → (x, z, −y). A rotation, so winding is kept."""
    stack = torch.stack if isinstance(vertices, torch.Tensor) else np.stack
    return stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], 1)


def is_watertight(faces: torch.Tensor) -> bool:
    """Every undirected edge is shared by exactly two faces (trimesh's definition)."""
    if len(faces) == 0:
        return False
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).sort(dim=1).values
    _, counts = torch.unique(edges[:, 0] * (int(faces.max()) + 1) + edges[:, 1], return_counts=True)
    return bool((counts == 2).all())


def surface_area(vertices: torch.Tensor, faces: torch.Tensor) -> float:
    tri = vertices[faces].double()
    return float(0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1).sum())


def _sync(device: torch.device) -> float:
    """perf_counter after the device's queued work, so stage timings are real on asynchronous devices."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def extraction_bytes(resolution: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Estimated peak memory of `extract_mesh` besides the model, from the figures of the module docstring: the σ
    grid (4 B a cell) and marching cubes (about 3 B a cell), plus one chunk's field query (about 1 KB a point).
    The triangles (they grow with the surface, res², not res³) are left to the caller's margin."""
    return 7 * resolution**3 + 1024 * chunk_size


def extract_mesh(
    query_fn: QueryFn,
    resolution: int = 192,
    level: float = 10.0,
    chunk_size: int = DEFAULT_CHUNK,
    bbox: tuple[float, float] = (-0.45, 0.45),
    device: torch.device | str | None = None,
    y_up: bool = True,
    target_faces: int | None = None,
) -> Mesh:
    """Density field → coloured triangle mesh (see the module docstring for the released conventions).

    query_fn: points (P, 3) on `device` → dict(sigma (P, 1) raw, rgb (P, 3) in [0, 1]); called with P ≤ chunk_size.
    bbox: (lo, hi), the same on every axis. y_up: apply the release's (x, y, z) → (x, z, −y). target_faces: decimate
    to at most this many faces before colouring. Raises EmptyMeshError when σ never crosses `level`.
    """
    device = torch.device(device or "cpu")
    t0 = _sync(device)
    sigma = density_grid(query_fn, resolution, bbox, chunk_size, device)
    t1 = _sync(device)
    vertices, faces = iso_surface(sigma, level, bbox)
    del sigma
    t2 = _sync(device)
    if target_faces is not None:
        vertices, faces = decimate(vertices, faces, target_faces)
    t3 = _sync(device)
    # Colour at the final vertex positions, so decimated meshes are coloured from the field too.
    colors = query_colors(query_fn, vertices, chunk_size)
    t4 = _sync(device)
    if y_up:
        vertices = rotate_to_y_up(vertices)
    stats = MeshStats(vertices=len(vertices), faces=len(faces), watertight=is_watertight(faces),
                      area=surface_area(vertices, faces))
    mesh = Mesh(vertices.float().cpu().numpy(), faces.cpu().numpy(), colors.cpu().numpy(), stats)
    t5 = time.perf_counter()
    stats.timings = {
        "density_s": t1 - t0,
        "marching_cubes_s": t2 - t1,
        "decimate_s": t3 - t2,
        "color_s": t4 - t3,
        "finish_s": t5 - t4,
        "total_s": t5 - t0,
    }
    return mesh


def save_mesh(mesh: Mesh, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write .glb (vertex colours as COLOR_0, shown by gradio Model3D and Blender), .obj (colours on `v` lines) or
    .ply, atomically. Returns the path."""
    path = Path(path)
    file_type = MESH_FORMATS.get(path.suffix.lower())
    if file_type is None:
        raise ValueError(f"unsupported mesh format {path.suffix!r} for {path} (use {', '.join(MESH_FORMATS)})")
    with atomic_output(path, overwrite) as tmp:
        mesh.to_trimesh().export(tmp, file_type=file_type)
    return path


def mesh_to_points(mesh: Mesh, n: int, seed: int = 0) -> np.ndarray:
    """n points sampled uniformly (area-weighted) on the surface → (n, 3) float64; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    tri = mesh.vertices.astype(np.float64)[mesh.faces]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    face = rng.choice(len(tri), size=n, p=areas / areas.sum())
    u, v = rng.random(n), rng.random(n)
    # Reflect samples outside the triangle back in, so (u, v) is uniform over it.
    outside = u + v > 1.0
    u[outside], v[outside] = 1.0 - u[outside], 1.0 - v[outside]
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def _nearest_distances(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    return cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]


def chamfer_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Symmetric Chamfer distance between point sets a (N, 3) and b (M, 3), in bbox units.

    l1: ½(mean‖a→b‖ + mean‖b→a‖) of nearest-neighbour Euclidean distances (units);
    l2: ½(mean‖a→b‖² + mean‖b→a‖²) (units²). A set shifted by δ against itself gives l1 = δ, l2 = δ² as long as δ is
    below half the point spacing.
    """
    d_ab, d_ba = _nearest_distances(a, b)
    return {
        "l1": float(0.5 * (d_ab.mean() + d_ba.mean())),
        "l2": float(0.5 * ((d_ab**2).mean() + (d_ba**2).mean())),
    }


def f_score(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, threshold: float) -> dict[str, float]:
    """F-score at a distance threshold: precision = share of a within it of b, recall = share of b within it of a."""
    d_ab, d_ba = _nearest_distances(a, b)
    precision, recall = float((d_ab <= threshold).mean()), float((d_ba <= threshold).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f": f}
