"""Mesh extraction from a neural density field, mesh export, and point-set metrics (Chamfer, F-score).

Extraction follows the release (spec §7.5): raw σ on a res³ grid over the sampler bbox (meshgrid 'ij' over x, y, z),
PyMCubes at iso-level 10, vertex colours from the field's rgb at the vertices, then −90° about x to make the mesh
y-up. It only needs a `query_fn(points (P, 3)) -> dict(sigma=(P, 1) raw, rgb=(P, 3) in [0, 1])`, e.g.
`lambda p: vae.query(triplane, p[None])` squeezed, so it is independent of the VAE.

Memory: the grid points are generated chunk by chunk on `device` and only the σ grid (res³ float32, 28 MB at 192³)
is kept, on the CPU; the peak on the device is set by `chunk_size`.

A field that never crosses the level raises `EmptyMeshError` (with the σ range) rather than returning an empty mesh:
an empty GLB/OBJ is not a usable output, and the σ range tells the user whether the level or the model is at fault.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mcubes
import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from utils.media import atomic_output

QueryFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]

MESH_FORMATS = {".glb": "glb", ".obj": "obj", ".ply": "ply"}


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
    chunk_size: int = 2**18,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Raw σ on the grid → (res, res, res) float32 on the CPU, indexed [x, y, z].

    Chunk coordinates are built from flat indices on the fly, so no res³×3 point array ever exists.
    """
    device = torch.device(device or "cpu")
    axis = torch.from_numpy(grid_axis(resolution, bbox)).float().to(device)
    total = resolution**3
    sigma = torch.empty(total, dtype=torch.float32)
    for start in range(0, total, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, total), device=device)
        points = torch.stack(
            [axis[idx // resolution**2], axis[(idx // resolution) % resolution], axis[idx % resolution]], dim=-1
        )
        sigma[start : start + len(idx)] = query_fn(points)["sigma"].reshape(-1).float().cpu()
    return sigma.reshape(resolution, resolution, resolution).numpy()


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove faces with a repeated vertex index, duplicate faces and vertices no face uses."""
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    faces = faces[np.sort(first)]
    used, remap = np.unique(faces, return_inverse=True)
    return vertices[used], remap.reshape(faces.shape)


def _weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at identical positions. Grid values exactly at the level put several marching-cubes vertices on
    the same grid node, which otherwise leaves zero-area faces and a non-manifold surface."""
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    return _drop_degenerate(unique, inverse.reshape(-1)[faces])


def marching_cubes(sigma: np.ndarray, level: float, bbox: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """PyMCubes on a (res, res, res) [x, y, z] grid → vertices (V, 3) float64 in bbox coordinates, faces (F, 3) int64.

    Faces are oriented with normals pointing from high σ to low σ (outwards for a density field).
    """
    if not (sigma.min() < level < sigma.max()):
        raise EmptyMeshError(
            f"no surface: sigma spans [{sigma.min():.4g}, {sigma.max():.4g}] and never crosses level {level:g}"
        )
    vertices, faces = mcubes.marching_cubes(sigma, level)
    faces = faces.astype(np.int64)
    if (sigma == level).any():
        vertices, faces = _weld(vertices, faces)
    lo, hi = bbox
    return lo + vertices / (sigma.shape[0] - 1) * (hi - lo), faces


def _cluster(vertices: np.ndarray, faces: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: snap vertices to a cells³ grid over their bbox, one averaged vertex per occupied cell."""
    lo = vertices.min(axis=0)
    extent = float((vertices.max(axis=0) - lo).max())
    key3 = np.floor((vertices - lo) / extent * cells).astype(np.int64)  # in [0, cells]
    key = (key3[:, 0] * (cells + 1) + key3[:, 1]) * (cells + 1) + key3[:, 2]
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    merged = np.stack([np.bincount(inverse, weights=vertices[:, d]) for d in range(3)], axis=1) / counts[:, None]
    return _drop_degenerate(merged, inverse[faces])


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce to at most `target_faces` faces (when achievable); returns (vertices (V', 3), faces (F', 3)).

    Vertex clustering with the finest cluster grid (found by bisection) that meets the target: no extra dependency,
    and fast enough for interactive use. Clustering does not preserve watertightness; the mesh stats report it.
    """
    if len(faces) <= target_faces:
        return vertices, faces
    edges = vertices[faces[:, [1, 2, 0]]] - vertices[faces]
    extent = float((vertices.max(axis=0) - vertices.min(axis=0)).max())
    # At half the mean edge length clustering merges almost nothing, so the answer lies below that many cells.
    lo, hi = 2, max(3, int(np.ceil(2 * extent / np.linalg.norm(edges, axis=-1).mean())))
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
def query_colors(
    query_fn: QueryFn, points: np.ndarray, chunk_size: int = 2**18, device: torch.device | str | None = None
) -> np.ndarray:
    """The field's rgb at points (P, 3) → (P, 3) uint8 (clipped to [0, 1] first)."""
    device = torch.device(device or "cpu")
    points_t = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    rgb = torch.cat([query_fn(chunk.to(device))["rgb"].float().cpu() for chunk in points_t.split(chunk_size)])
    return (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def rotate_to_y_up(vertices: np.ndarray) -> np.ndarray:
    """−90° about x, the release's z-up → y-up conversion: (x, y, z) → (x, z, −y). A rotation, so winding is kept."""
    return np.stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], axis=1)


def _is_watertight(vertices: np.ndarray, faces: np.ndarray) -> bool:
    return bool(trimesh.Trimesh(vertices, faces, process=False).is_watertight)


def _surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[faces]
    return float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1).sum())


def extract_mesh(
    query_fn: QueryFn,
    resolution: int = 192,
    level: float = 10.0,
    chunk_size: int = 2**18,
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
    t0 = time.perf_counter()
    sigma = density_grid(query_fn, resolution, bbox, chunk_size, device)
    t1 = time.perf_counter()
    vertices, faces = marching_cubes(sigma, level, bbox)
    t2 = time.perf_counter()
    if target_faces is not None:
        vertices, faces = decimate(vertices, faces, target_faces)
    t3 = time.perf_counter()
    # Colour at the final vertex positions, so decimated meshes are coloured from the field too.
    colors = query_colors(query_fn, vertices, chunk_size, device)
    t4 = time.perf_counter()
    if y_up:
        vertices = rotate_to_y_up(vertices)
    stats = MeshStats(
        vertices=len(vertices),
        faces=len(faces),
        watertight=_is_watertight(vertices, faces),
        area=_surface_area(vertices, faces),
    )
    stats.timings = {
        "density_s": t1 - t0,
        "marching_cubes_s": t2 - t1,
        "decimate_s": t3 - t2,
        "color_s": t4 - t3,
        "total_s": time.perf_counter() - t0,
    }
    return Mesh(vertices.astype(np.float32), faces, colors, stats)


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
