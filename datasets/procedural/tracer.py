"""Ground-truth renderer for procedural objects: batched sphere tracing of the SDF, on any device.

Rays come from `nsr.cameras.camera_rays` (pixel centres, row-major). Each ray is clipped to the object's bounding
box and marched by the SDF value until it gets within `hit_epsilon` of the surface or leaves the box. Rays are
re-packed every `compact_every` steps so finished rays stop costing work, which keeps batches of many objects ×
views cheap on a GPU.

Edges are anti-aliased from the march itself: a ray that misses records its closest approach to the surface as an
angle (distance / t); a miss within half a pixel of the silhouette gets alpha 0.5 fading to 0, a hit gets alpha 1.
Colour, depth and normal of such an edge pixel are taken at the closest-approach point, so depth > 0 exactly where
alpha > 0. Shading is view-independent (fixed world lights), as the triplane colour field has no view direction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from datasets.procedural.scene import SDFScene
from datasets.procedural.spec import ObjectSpec
from nsr.cameras import camera_rays, split_cameras


@dataclass
class TracerConfig:
    max_steps: int = 96
    hit_epsilon: float = 2e-4     # object units; well below a pixel at 512² and radius 2 (~3e-3)
    step_scale: float = 0.9       # under-relaxation: the ellipsoid distance is only approximately a bound
    compact_every: int = 8
    box_margin: float = 0.01
    ambient: float = 0.5
    key_light: tuple[float, float, float] = (0.35, 0.25, 0.90)
    key_strength: float = 0.4
    fill_light: tuple[float, float, float] = (-0.40, -0.60, -0.20)
    fill_strength: float = 0.15


@dataclass
class RenderOutput:
    """Images with leading dims `(...)` = `(N,)` or `(B, V)`.

    rgb `(..., 3, R, R)` composited on white in [0, 1]; alpha `(..., 1, R, R)`; depth `(..., 1, R, R)` camera-space
    z, 0 for background; normal `(..., 3, R, R)` unit world normals, 0 for background; color `(..., 3, R, R)` the
    shaded colour before compositing (straight alpha, 1 where alpha is 0), what RGBA files store.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    color: torch.Tensor


def _gather(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        return torch.gather(x, 1, order)
    return torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))


def _pack(mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-row permutation putting True entries first, `(B, n)`, and the largest True count."""
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)
    return order, int(mask.sum(dim=1).max())


def _box_interval(origins, dirs, bounds, margin):
    """Entry and exit distances of rays `(B, n, 3)` through per-object boxes `(B, 2, 3)`, each `(B, n)`."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (bounds[:, None, 0] - margin - origins) / safe
    t1 = (bounds[:, None, 1] + margin - origins) / safe
    return torch.minimum(t0, t1).amax(dim=-1).clamp_min(1e-6), torch.maximum(t0, t1).amin(dim=-1)


def _march(scene: SDFScene, origins, dirs, t_start, t_end, config: TracerConfig):
    """Sphere tracing. Returns hit `(B, n)` bool, hit distance t, and the closest approach (angle, t) of misses."""
    active = t_end > t_start
    t = t_start.clone()
    hit = torch.zeros_like(active)
    closest = torch.full_like(t, float("inf"))
    closest_t = t_start.clone()
    steps = 0
    while steps < config.max_steps:
        order, count = _pack(active)
        if count == 0:
            break
        order = order[:, :count]
        o, d, te = _gather(origins, order), _gather(dirs, order), _gather(t_end, order)
        tw, act, hw = _gather(t, order), _gather(active, order), _gather(hit, order)
        cw, ctw = _gather(closest, order), _gather(closest_t, order)
        for _ in range(min(config.compact_every, config.max_steps - steps)):
            dist = scene.sdf(o + tw[..., None] * d)
            angle = dist / tw
            closer = act & (angle < cw)
            cw = torch.where(closer, angle, cw)
            ctw = torch.where(closer, tw, ctw)
            reached = act & (dist < config.hit_epsilon)
            hw = hw | reached
            # a hit still sits up to hit_epsilon in front of the surface: take that last step in full
            tw = torch.where(act, tw + torch.where(reached, dist, config.step_scale * dist), tw)
            act = act & ~reached
            act = act & (tw < te)
            steps += 1
        for full, part in ((t, tw), (active, act), (hit, hw), (closest, cw), (closest_t, ctw)):
            full.scatter_(1, order, part)
    return hit, t, closest, closest_t


def _shade(normal: torch.Tensor, albedo: torch.Tensor, config: TracerConfig) -> torch.Tensor:
    key = torch.nn.functional.normalize(torch.tensor(config.key_light, device=normal.device, dtype=normal.dtype), dim=0)
    fill = torch.nn.functional.normalize(torch.tensor(config.fill_light, device=normal.device, dtype=normal.dtype),
                                         dim=0)
    light = (config.ambient + config.key_strength * (normal @ key).clamp_min(0.0)
             + config.fill_strength * (normal @ fill).clamp_min(0.0))
    return (albedo * light[..., None]).clamp(0.0, 1.0)


@torch.no_grad()
def render_scene(scene: SDFScene, cameras: torch.Tensor, resolution: int,
                 config: TracerConfig | None = None) -> RenderOutput:
    """Render every object of `scene` from its own cameras `(B, V, 25)`; outputs are `(B, V, C, R, R)`."""
    config = config or TracerConfig()
    batch, views = cameras.shape[:2]
    if batch != len(scene):
        raise ValueError(f"cameras are for {batch} objects but the scene holds {len(scene)}")
    res = resolution
    cams = cameras.to(device=scene.device, dtype=scene.dtype).reshape(batch * views, 25)
    origins, dirs = camera_rays(cams.double(), res)  # float64: its matmul never runs in TF32
    origins = origins.to(scene.dtype).reshape(batch, -1, 3)
    dirs = dirs.to(scene.dtype).reshape(batch, -1, 3)
    c2w, K = split_cameras(cams)
    forward = c2w[:, :3, 2].repeat_interleave(res * res, dim=0).reshape(batch, -1, 3)
    pixel_angle = (1.0 / (K[:, 0, 0] * res)).repeat_interleave(res * res).reshape(batch, -1)

    t_start, t_end = _box_interval(origins, dirs, scene.bounds, config.box_margin)
    hit, t, closest, closest_t = _march(scene, origins, dirs, t_start, t_end, config)

    alpha = torch.where(hit, torch.ones_like(t), (0.5 - closest / pixel_angle).clamp(0.0, 1.0))
    visible = alpha > 0
    t_shade = torch.where(hit, t, closest_t)
    depth = torch.where(visible, t_shade * (dirs * forward).sum(-1), torch.zeros_like(t))

    normal = torch.zeros_like(origins)
    color = torch.ones_like(origins)
    order, count = _pack(visible)
    if count > 0:
        order = order[:, :count]
        points = _gather(origins, order) + _gather(t_shade, order)[..., None] * _gather(dirs, order)
        _, albedo = scene.sdf_albedo(points)
        n = scene.normals(points)
        keep = _gather(visible, order)[..., None]
        idx = order[..., None].expand(-1, -1, 3)
        normal.scatter_(1, idx, torch.where(keep, n, torch.zeros_like(n)))
        color.scatter_(1, idx, torch.where(keep, _shade(n, albedo, config), torch.ones_like(n)))
    rgb = color * alpha[..., None] + (1.0 - alpha[..., None])

    def image(x: torch.Tensor) -> torch.Tensor:  # (B, V·R·R, C) → (B, V, C, R, R)
        return x.reshape(batch, views, res, res, -1).permute(0, 1, 4, 2, 3).contiguous()

    return RenderOutput(rgb=image(rgb), alpha=image(alpha[..., None]), depth=image(depth[..., None]),
                        normal=image(normal), color=image(color))


def render_objects(specs: Sequence[ObjectSpec], cameras: torch.Tensor, resolution: int,
                   config: TracerConfig | None = None, device=None) -> RenderOutput:
    """Render objects, each from its own cameras `(B, V, 25)`; outputs `(B, V, C, R, R)` on `device`."""
    device = cameras.device if device is None else device
    return render_scene(SDFScene(specs, device=device), cameras, resolution, config)


def render(spec: ObjectSpec, cameras: torch.Tensor, resolution: int, config: TracerConfig | None = None,
           device=None) -> RenderOutput:
    """Render one object from cameras `(N, 25)`; outputs `(N, C, R, R)`."""
    out = render_objects([spec], cameras[None], resolution, config, device)
    return RenderOutput(*(x[0] for x in (out.rgb, out.alpha, out.depth, out.normal, out.color)))
