"""A z-buffer triangle rasteriser in plain torch (CPU or CUDA, no compiled extension) and the mesh renderer on it.

Cameras follow `nsr.cameras`: a pixel (i, j) is covered when its centre u = (j + 0.5)/R, v = (i + 0.5)/R falls
inside the projected triangle, so silhouettes agree with `camera_rays` to the pixel. Depth is camera-space z from
perspective-correct interpolation (1/z is linear in screen space), exact for planar triangles up to float32.

The rasteriser works on (triangle, pixel) candidates: every triangle of every view expands, row by row of its
screen bounding box, to the pixels of the row's conservative x-span (`repeat_interleave`, in chunks of at most
`max_candidates` box pixels), candidates inside the triangle scatter
a packed int64 key (float32 depth bits << 32 | triangle) with `amin`, so the nearest triangle per pixel wins
without any per-pixel loop; winners are then re-interpolated once per pixel.

Triangles with a corner closer than `near` to the camera plane are dropped (no clipping): the rigs keep cameras
≥ 1.2 from the origin and objects within 0.78 of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from datasets.meshes.load import MeshAsset
from datasets.procedural.tracer import RenderOutput, TracerConfig, _shade
from nsr.cameras import split_cameras

NO_HIT = torch.iinfo(torch.int64).max


@dataclass
class RasterConfig:
    supersample: int = 1            # s×s samples per pixel, box-filtered (1 = exact pixel-centre coverage)
    max_candidates: int = 1 << 22   # (triangle, pixel) pairs per chunk: bounds memory (~200 MB at float32)
    near: float = 1e-3
    lighting: bool = True           # the procedural tracer's fixed world lights; False = unlit albedo
    lights: TracerConfig = field(default_factory=TracerConfig)


@dataclass
class Fragments:
    """The covered pixels only (P of V·R·R, ascending): flat pixel index `(P,)` into `(V, R, R)` images, triangle
    index into the mesh `(P,)`, camera-space depth `(P,)` and perspective-correct barycentrics `(P, 3)`.
    Compact, because every consumer works on covered pixels and scatters into images once."""

    pixel: torch.Tensor
    face: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor


def _screen(corners: torch.Tensor, cameras: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World corners `(F, 3, 3)` → pixel coordinates `(V, F, 3, 2)` (pixel centre j at x = j) and camera z
    `(V, F, 3)`."""
    c2w, K = split_cameras(cameras)
    w2c = torch.linalg.inv(c2w)
    cam = torch.einsum("vij,fcj->vfci", w2c[:, :3, :3], corners) + w2c[:, None, None, :3, 3]
    z = cam[..., 2]
    x, y = cam[..., 0] / z, cam[..., 1] / z
    fx, fy, cx, cy, sk = (K[:, i, j].reshape(-1, 1, 1) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2), (0, 1)))
    u = fx * x + sk * y + cx
    v = fy * y + cy
    return torch.stack([u * resolution - 0.5, v * resolution - 0.5], dim=-1), z


def _planes(xy: torch.Tensor, z: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Screen-linear functions of triangles xy `(T, 3, 2)` with corner depths z `(T, 3)`, `(T, 4, 3)`.

    Rows: the three screen barycentrics and 1/z; columns (c0, cx, cy) give c0 + cx·dx + cy·dy at pixel
    origin + (dx, dy). Taking them relative to `origin (T, 2)` (the bounding-box corner) keeps the constants at
    triangle scale, so float32 edge tests stay exact to ~1e-6 px even at 1024².
    """
    a, b, c = (xy[:, k] - origin for k in range(3))

    def edge(s, t):  # cross(p, s, t) = s×t + p×(s − t) as (c0, cx, cy)
        return torch.stack([s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0], s[:, 1] - t[:, 1], t[:, 0] - s[:, 0]], dim=-1)

    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    bary = torch.stack([edge(b, c), edge(c, a), edge(a, b)], dim=1) / area[:, None, None]
    inv_z = (bary / z[:, :, None]).sum(dim=1, keepdim=True)  # 1/z is linear in screen space
    return torch.cat([bary, inv_z], dim=1)


def _evaluate(planes: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """`(N, 4, 3)` planes at offsets dx, dy `(N,)` → `(N, 4)`."""
    return planes[..., 0] + planes[..., 1] * dx[:, None] + planes[..., 2] * dy[:, None]


def _row_spans(planes: torch.Tensor, size: torch.Tensor, corner_pixel: torch.Tensor, resolution: int, start: int,
               stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Covered pixels of triangles start … stop − 1, row by row of each box: the x-span where the three edge
    functions are non-negative. The span from the edge crossings is widened by 1e-3 px (float rounding of the
    crossings is < 3e-4 px at 1024²), then each end pixel gets the exact edge test and moves one pixel in if it
    fails; the pixels between two covered ends are covered too (a triangle is convex and the edge functions are
    linear along the row), so no per-pixel inside test is needed. Returns, per covered pixel, the triangle `(N,)`,
    the flat pixel index `(N,)` and 1/z `(N,)`, all stepped along the row from the row's first pixel.

    Rows instead of whole boxes halve the work of typical triangles (a box is ≥ 2× its triangle).
    """
    device, dtype = planes.device, planes.dtype
    heights = size[start:stop, 1].long()
    row_tri = torch.repeat_interleave(torch.arange(start, stop, device=device), heights)
    row_first = torch.repeat_interleave(torch.cumsum(heights, 0) - heights, heights)
    dy = (torch.arange(len(row_tri), device=device) - row_first).to(dtype)
    edge = planes[row_tri, :3]  # (rows, 3 edges, (c0, cx, cy))
    a = edge[..., 0] + edge[..., 2] * dy[:, None]  # the edge function along the row is a + b·dx
    b = edge[..., 1]
    bound = -a / torch.where(b == 0, torch.ones_like(b), b)
    inf = torch.full_like(bound, float("inf"))
    lower = torch.where(b > 0, bound, torch.where((b == 0) & (a < 0), inf, -inf)).amax(dim=-1)
    upper = torch.where(b < 0, bound, inf).amin(dim=-1)
    width = size[row_tri, 0]
    lo = torch.ceil(lower - 1e-3).clamp_min(0.0)
    hi = torch.minimum(torch.floor(upper + 1e-3), width - 1)
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    lo, hi = torch.where(finite, lo, 0.0), torch.where(finite, hi, -1.0)  # inf bound: the row misses

    def covered(x):  # the exact test, the same arithmetic as `_evaluate`
        return ((edge[..., 0] + edge[..., 1] * x[:, None] + edge[..., 2] * dy[:, None]) >= 0).all(dim=-1)

    lo = torch.where(covered(lo), lo, lo + 1)
    hi = torch.where(covered(hi), hi, hi - 1)
    span = (hi - lo + 1).clamp_min(0.0).long()
    row_pixel = corner_pixel[row_tri] + dy.long() * resolution + lo.long()
    inv_z = planes[row_tri, 3]
    row_inv_z = inv_z[:, 0] + inv_z[:, 1] * lo + inv_z[:, 2] * dy  # 1/z at the span start, + inv_z[:, 1] per pixel
    row = torch.repeat_interleave(torch.arange(len(row_tri), device=device), span)

    def per_pixel(x):  # index_select: ~2× faster than advanced indexing for these 1-D gathers on the CPU
        return torch.index_select(x, 0, row)

    offset = torch.arange(len(row), device=device) - per_pixel(torch.cumsum(span, 0) - span)
    step = inv_z[:, 1].contiguous()
    return per_pixel(row_tri), per_pixel(row_pixel) + offset, per_pixel(row_inv_z) + per_pixel(step) * offset.to(dtype)


@torch.no_grad()
def rasterise(corners: torch.Tensor, cameras: torch.Tensor, resolution: int, near: float = 1e-3,
              max_candidates: int = 1 << 22, max_triangle_views: int = 1 << 22,
              cull: torch.Tensor | None = None) -> Fragments:
    """Nearest triangle per pixel centre. corners `(F, 3, 3)` world positions, cameras `(V, 25)` (same device).

    cull `(F,)` bool: faces of closed outward-wound surfaces, skipped where they face away from the camera (they
    are hidden there anyway, and skipping them halves the work on closed meshes). Views go in groups of at most
    `max_triangle_views` / F (at least one), which bounds the per-triangle tables.
    """
    group = max(1, max_triangle_views // max(1, corners.shape[0]))
    firsts = range(0, cameras.shape[0], group)
    parts = [_rasterise(corners, cameras[k:k + group], resolution, near, max_candidates, cull) for k in firsts]
    if len(parts) == 1:
        return parts[0]
    for k, part in zip(firsts, parts):  # a group's pixel indices start at its first view
        part.pixel += k * resolution * resolution
    return Fragments(*(torch.cat([getattr(f, name) for f in parts]) for name in ("pixel", "face", "depth", "bary")))


def _rasterise(corners, cameras, resolution, near, max_candidates, cull) -> Fragments:
    views, faces = cameras.shape[0], corners.shape[0]
    device = corners.device
    xy, z = _screen(corners, cameras, resolution)
    low = xy.amin(dim=2).ceil().clamp(0, resolution - 1)
    high = xy.amax(dim=2).floor().clamp(0, resolution - 1)
    inside = (xy.amin(dim=2) <= resolution - 1).all(-1) & (xy.amax(dim=2) >= 0).all(-1)
    # zero-area triangles (edge-on or degenerate) cover no pixel centre; their barycentrics would divide by 0
    area = ((xy[..., 1, 0] - xy[..., 0, 0]) * (xy[..., 2, 1] - xy[..., 0, 1])
            - (xy[..., 1, 1] - xy[..., 0, 1]) * (xy[..., 2, 0] - xy[..., 0, 0]))
    keep = inside & (z.amin(dim=-1) > near) & (high >= low).all(-1) & (area != 0)
    if cull is not None and bool(cull.any()):
        normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
        eye = split_cameras(cameras)[0][:, :3, 3]
        facing = torch.einsum("vfk,fk->vf", eye[:, None] - corners[None, :, 0], normal)
        keep &= ~(cull[None] & (facing < 0))
    tris = keep.reshape(-1).nonzero().squeeze(1)  # flat (view·F + face) ids of triangles with candidate pixels
    low = low.reshape(-1, 2)[tris]
    size = (high.reshape(-1, 2)[tris] - low + 1)
    counts = (size[:, 0] * size[:, 1]).long()
    planes = _planes(xy.reshape(-1, 3, 2)[tris], z.reshape(-1, 3)[tris], low)
    # pixel index of each triangle's box corner; a candidate adds dy·R + dx
    corner_pixel = ((tris // faces) * resolution + low[:, 1].long()) * resolution + low[:, 0].long()
    keys = torch.full((views * resolution * resolution,), NO_HIT, dtype=torch.int64, device=device)
    # chunks of whole triangles whose candidate counts sum to at most max_candidates (a bigger one goes alone)
    ends = torch.cumsum(counts, 0)
    start = 0
    while start < len(tris):
        base = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, base + max_candidates, right=True)))
        owner, pixel, inv_z = _row_spans(planes, size, corner_pixel, resolution, start, stop)
        depth = 1.0 / inv_z
        # positive float32 depths order like their bit patterns, so one int64 amin picks depth, then triangle
        key = (depth.float().view(torch.int32).long() << 32) | owner
        keys.scatter_reduce_(0, pixel, key, reduce="amin")
        start = stop

    pixel = (keys != NO_HIT).nonzero().squeeze(1)
    winner = keys[pixel] & 0xFFFFFFFF  # index into tris
    px, py = pixel % resolution, (pixel // resolution) % resolution
    values = _evaluate(planes[winner], (px - low[winner, 0].long()).to(xy.dtype),
                       (py - low[winner, 1].long()).to(xy.dtype))
    depth = 1.0 / values[:, 3]
    # perspective-correct barycentrics: screen weights over corner depth, renormalised
    bary = values[:, :3] / z.reshape(-1, 3)[tris[winner]] * depth[:, None]
    return Fragments(pixel, tris[winner] % faces, depth, bary)


class MeshTensors:
    """A `MeshAsset` as tensors on one device (moved once, rendered from many cameras)."""

    def __init__(self, asset: MeshAsset, device="cpu", dtype=torch.float32):
        self.corners = torch.as_tensor(asset.corners, dtype=dtype, device=device)
        self.colors = torch.as_tensor(asset.colors, dtype=dtype, device=device)
        self.uvs = torch.as_tensor(asset.uvs, dtype=dtype, device=device)
        self.texture_ids = torch.as_tensor(asset.texture_ids, device=device)
        self.cull = None if asset.closed is None else torch.as_tensor(asset.closed, device=device)
        # (1, 3, H, W) for grid_sample
        self.textures = [torch.as_tensor(t, dtype=dtype, device=device).permute(2, 0, 1)[None] for t in asset.textures]
        edge1 = self.corners[:, 1] - self.corners[:, 0]
        edge2 = self.corners[:, 2] - self.corners[:, 0]
        self.face_normals = F.normalize(torch.linalg.cross(edge1, edge2, dim=-1), dim=-1)


def _albedo(mesh: MeshTensors, face: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Surface colour `(P, 3)` of P hit points on triangles `face (P,)` at barycentrics `(P, 3)`."""
    color = (mesh.colors[face] * bary[..., None]).sum(dim=1)
    if not mesh.textures:
        return color
    texture_id = mesh.texture_ids[face]
    uv = (mesh.uvs[face] * bary[..., None]).sum(dim=1)
    for k, texture in enumerate(mesh.textures):
        sel = (texture_id == k).nonzero().squeeze(1)
        if len(sel) == 0:
            continue
        # repeat wrapping (uv mod 1); v points up while image rows go down
        u, v = uv[sel, 0].remainder(1.0), uv[sel, 1].remainder(1.0)
        grid = torch.stack([u * 2 - 1, (1 - v) * 2 - 1], dim=-1)[None, None]
        sample = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
        color[sel] = color[sel] * sample[0, :, 0].T
    return color


@torch.no_grad()
def render_mesh(mesh: MeshTensors, cameras: torch.Tensor, resolution: int,
                config: RasterConfig | None = None) -> RenderOutput:
    """RGBA on white, depth and world normals of one mesh from cameras `(V, 25)` (on the mesh's device); images
    `(V, C, R, R)` as the procedural tracer's `RenderOutput`.

    Normals are the geometric face normals turned towards the camera, so closed meshes show outward normals
    whatever their winding. With supersample s > 1 colour and alpha are box-filtered over s×s samples, depth and
    normal averaged over the covered samples (depth > 0 exactly where alpha > 0).
    """
    config = config or RasterConfig()
    s = config.supersample
    frags = rasterise(mesh.corners, cameras.to(mesh.corners.dtype), resolution * s, config.near,
                      config.max_candidates, cull=mesh.cull)
    views, size = cameras.shape[0], resolution * s
    face, bary, pixel = frags.face, frags.bary, frags.pixel
    normal = mesh.face_normals[face]
    c2w, _ = split_cameras(cameras.to(normal.dtype))
    eye = c2w[:, :3, 3][pixel // (size * size)]
    # the side a planar triangle shows is the same at every point of it: test against its first corner
    facing = ((eye - mesh.corners[face, 0]) * normal).sum(-1, keepdim=True)
    normal = torch.where(facing < 0, -normal, normal)
    albedo = _albedo(mesh, face, bary)
    color = _shade(normal, albedo, config.lights) if config.lighting else albedo.clamp(0.0, 1.0)

    def image(values: torch.Tensor, fill: float) -> torch.Tensor:  # (P, C) → (V, C, size, size)
        out = torch.full((views * size * size, values.shape[-1]), fill, dtype=values.dtype, device=values.device)
        out[pixel] = values
        return out.reshape(views, size, size, -1).permute(0, 3, 1, 2)

    alpha = image(torch.ones_like(frags.depth)[:, None], 0.0)
    color, depth, normal = image(color, 1.0), image(frags.depth[:, None], 0.0), image(normal, 0.0)
    if s > 1:
        coverage = F.avg_pool2d(alpha, s)
        safe = coverage.clamp_min(1e-12)
        color = torch.where(coverage > 0, F.avg_pool2d(color * alpha, s) / safe, 1.0)
        depth = F.avg_pool2d(depth, s) / safe
        normal = F.normalize(F.avg_pool2d(normal, s), dim=1)
        alpha = coverage
    rgb = color * alpha + (1.0 - alpha)
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, normal=normal, color=color)
