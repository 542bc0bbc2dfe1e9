"""Camera conventions shared by the renderer, the datasets and the rigs.

A camera is a 25-vector (spec §1.1):
  c[0:16]  camera-to-world 4×4, row-major, OpenCV camera axes (+x right, +y down, +z forward);
  c[16:25] 3×3 intrinsics, row-major, normalised by the image size: [[fx, sk, cx], [0, fy, cy], [0, 0, k22]].
The world is z-up and objects live in [-0.45, 0.45]³. k22 is ignored by every consumer; the released pose files
store 1/256 there and so do the rigs below, so their cameras compare equal to the released ones.

Pixel (row i, col j) of an R×R image looks along the ray through u = (j + 0.5) / R, v = (i + 0.5) / R (pixel
centres), with camera-space direction ((u - cx - sk·(v - cy)/fy) / fx, (v - cy) / fy, 1), rotated to world and
normalised.
"""
from __future__ import annotations

import math

import torch

OBJAVERSE_FOCAL = 1422.222 / 1024  # G-Objaverse x_fov 0.69115 rad; 1.38889 in the released pose files
SHAPENET_FOCAL = 525.0 / 512.0
FFHQ_FOCAL = 4.2634
K22 = 1.0 / 256.0


def intrinsics(focal: float, cx: float = 0.5, cy: float = 0.5, k22: float = K22, dtype=torch.float32) -> torch.Tensor:
    """Normalised 3×3 intrinsics with equal focal lengths, `(3, 3)`."""
    return torch.tensor([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, k22]], dtype=dtype)


def make_cameras(c2w: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pack `(..., 4, 4)` cam2world and `(..., 3, 3)` or `(3, 3)` intrinsics into `(..., 25)` camera vectors."""
    K = K.to(c2w.dtype).expand(*c2w.shape[:-2], 3, 3)
    return torch.cat([c2w.flatten(-2), K.flatten(-2)], dim=-1)


def split_cameras(cameras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(..., 25)` → cam2world `(..., 4, 4)` and normalised intrinsics `(..., 3, 3)`."""
    if cameras.shape[-1] != 25:
        raise ValueError(f"camera vectors must have 25 entries in the last dimension, got shape {tuple(cameras.shape)}")
    return cameras[..., :16].unflatten(-1, (4, 4)), cameras[..., 16:25].unflatten(-1, (3, 3))


def look_at(position: torch.Tensor, target: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """OpenCV cam2world `(..., 4, 4)` for cameras at `position (..., 3)` looking at `target` (origin), z-up world.

    For a camera looking straight along ±up (top and bottom views) the up hint is replaced by world -x, so that
    image-up points along -x (for the top view this continues the azimuth-0 ring over the pole).
    """
    dtype = position.dtype
    if target is None:
        target = torch.zeros(3, dtype=dtype)
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)
    forward = torch.nn.functional.normalize(target.to(dtype) - position, dim=-1)
    up = up.to(dtype).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-8
    alt_up = torch.tensor([-1.0, 0.0, 0.0], dtype=dtype).expand_as(forward)
    right = torch.where(degenerate, torch.linalg.cross(forward, alt_up, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    c2w = torch.zeros(*position.shape[:-1], 4, 4, dtype=dtype)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, down, forward, position
    c2w[..., 3, 3] = 1.0
    return c2w


def spherical_position(azimuth_deg, elevation_deg, radius, dtype=torch.float64) -> torch.Tensor:
    """Points on spheres around the origin, `(N, 3)`; azimuth from +x towards +y, elevation above the xy-plane."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=dtype))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=dtype))
    az, el, r = torch.broadcast_tensors(az, el, torch.as_tensor(radius, dtype=dtype))
    return torch.stack([r * el.cos() * az.cos(), r * el.cos() * az.sin(), r * el.sin()], dim=-1).reshape(-1, 3)


def orbit_cameras(azimuth_deg, elevation_deg, radius, focal: float, dtype=torch.float32) -> torch.Tensor:
    """Cameras on spheres looking at the origin, `(N, 25)`. Computed in float64, cast at the end."""
    c2w = look_at(spherical_position(azimuth_deg, elevation_deg, radius))
    return make_cameras(c2w, intrinsics(focal, dtype=torch.float64)).to(dtype)


def turntable(num_views: int, radius: float = 1.7719, elevation_deg: float = 13.73,
              focal: float = OBJAVERSE_FOCAL, dtype=torch.float32) -> torch.Tensor:
    """`num_views` cameras at evenly spaced azimuths starting at 0°, `(num_views, 25)`."""
    if num_views < 1:
        raise ValueError(f"a turntable needs at least one view, got {num_views}")
    azimuths = torch.arange(num_views, dtype=torch.float64) * (360.0 / num_views)
    return orbit_cameras(azimuths, elevation_deg, radius, focal, dtype)


def gobjaverse_rig(radius: float = 1.7719, elevation_deg: float = 13.73, lower_radius: float | None = None,
                   lower_elevation_deg: float = -3.99, focal: float = OBJAVERSE_FOCAL,
                   dtype=torch.float32) -> torch.Tensor:
    """The 40-view G-Objaverse capture layout (spec §10.1), `(40, 25)`.

    0–23: ring at `elevation_deg`, 15° steps; 24: copy of 0; 25: top; 26: bottom; 27–38: lower ring, 30° steps;
    39: copy of 27. Top and bottom cameras sit at `radius` on the z-axis.
    """
    lower_radius = radius if lower_radius is None else lower_radius
    ring = torch.arange(24, dtype=torch.float64) * 15.0
    lower = torch.arange(12, dtype=torch.float64) * 30.0
    pos = torch.cat([
        spherical_position(ring, elevation_deg, radius),
        spherical_position(0.0, elevation_deg, radius),
        spherical_position(0.0, 90.0, radius),
        spherical_position(0.0, -90.0, radius),
        spherical_position(lower, lower_elevation_deg, lower_radius),
        spherical_position(0.0, lower_elevation_deg, lower_radius),
    ])
    # sin/cos round-off leaves the poles a hair off the axis; snap them so look_at sees the exact degenerate case
    pos[25, :2] = 0.0
    pos[26, :2] = 0.0
    return make_cameras(look_at(pos), intrinsics(focal, dtype=torch.float64)).to(dtype)


def objv_eval_pose(dtype=torch.float32) -> torch.Tensor:
    """The released evaluation rig `assets/objv_eval_pose.pt` (spec §1.4), `(40, 25)`."""
    return gobjaverse_rig(radius=1.7719, elevation_deg=13.73, lower_radius=1.6945, lower_elevation_deg=-3.99,
                          dtype=dtype)


def shapenet_rig(num_views: int = 50, radius: float = 1.2, dtype=torch.float32) -> torch.Tensor:
    """ShapeNet-style evaluation views: an Archimedean spiral over the upper hemisphere, `(num_views, 25)`."""
    k = torch.arange(num_views, dtype=torch.float64) + 0.5
    elevation = torch.rad2deg(torch.asin(k / num_views))
    azimuth = torch.rad2deg(torch.sqrt(num_views * math.pi * k / num_views) * 2.0) % 360.0
    return orbit_cameras(azimuth, elevation, radius, SHAPENET_FOCAL, dtype)


def ffhq_rig(num_views: int = 36, radius: float = 2.7, elevation_deg: float = 7.31, start_azimuth_deg: float = 135.0,
             step_deg: float = 2.53, dtype=torch.float32) -> torch.Tensor:
    """The FFHQ evaluation arc (spec §1.4): azimuths start_azimuth − k·step, `(num_views, 25)`."""
    azimuth = start_azimuth_deg - step_deg * torch.arange(num_views, dtype=torch.float64)
    return orbit_cameras(azimuth, elevation_deg, radius, FFHQ_FOCAL, dtype)


def pixel_centres(resolution: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel-centre coordinates (u, v), each `(R*R,)` in row-major pixel order."""
    # j·(1/R) + 0.5/R as EG3D's ray sampler forms it; (j + 0.5)/R rounds differently unless R is a power of two
    coords = torch.arange(resolution, device=device, dtype=dtype) * (1.0 / resolution) + (0.5 / resolution)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    return u.reshape(-1), v.reshape(-1)


def rays_from_uv(cameras: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays through normalised image coordinates.

    cameras `(N, 25)`; u, v `(P,)` shared by all cameras or `(N, P)` per camera.
    Returns origins and unit directions, each `(N, P, 3)`.
    """
    c2w, K = split_cameras(cameras)
    fx, fy, cx, cy, sk = (K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None], K[:, 0, 1, None])
    u = u.to(cameras.dtype).expand(cameras.shape[0], -1)
    v = v.to(cameras.dtype).expand(cameras.shape[0], -1)
    y_cam = (v - cy) / fy
    x_cam = (u - cx - sk * y_cam) / fx
    # EG3D's arithmetic, kept to the last bit: the pixel's camera point at z = 1 goes through the whole 4×4
    # cam2world, the camera centre is subtracted, then the difference is normalised. Rotating the camera-space
    # direction instead is the same maths but rounds differently in ~10 % of components, and that rounding decides
    # whether a ray's first and last samples (exactly on the box faces) pass the box filter (COMPATIBILITY.md)
    ones = torch.ones_like(x_cam)
    world = torch.bmm(c2w, torch.stack([x_cam, y_cam, ones, ones], dim=1))[:, :3].transpose(1, 2)
    origins = c2w[:, None, :3, 3].expand_as(world)
    directions = torch.nn.functional.normalize(world - origins, dim=-1)
    return origins, directions


def camera_rays(cameras: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre: origins and unit directions, each `(N, R*R, 3)`, row-major pixels."""
    u, v = pixel_centres(resolution, cameras.device, cameras.dtype)
    return rays_from_uv(cameras, u, v)


def plucker(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Plücker coordinates (o × d, d), `(..., 6)`; the moment is independent of where o sits on the ray."""
    return torch.cat([torch.linalg.cross(origins, directions, dim=-1), directions], dim=-1)


def plucker_image(cameras: torch.Tensor, resolution: int) -> torch.Tensor:
    """Per-pixel Plücker embedding as images, `(N, 6, R, R)`: channels moment (3) then direction (3)."""
    origins, directions = camera_rays(cameras, resolution)
    emb = plucker(origins, directions)
    return emb.transpose(1, 2).reshape(cameras.shape[0], 6, resolution, resolution)


def project(points: torch.Tensor, cameras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points `(N, P, 3)` into cameras `(N, 25)`.

    Returns normalised image coordinates (u, v) `(N, P, 2)` (pixel = u·R − 0.5) and camera-space depth `(N, P)`.
    """
    c2w, K = split_cameras(cameras)
    w2c = torch.linalg.inv(c2w)
    p_cam = points @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
    z = p_cam[..., 2]
    x, y = p_cam[..., 0] / z, p_cam[..., 1] / z
    fx, fy, cx, cy, sk = (K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None], K[:, 0, 1, None])
    u = fx * x + sk * y + cx
    v = fy * y + cy
    return torch.stack([u, v], dim=-1), z


def camera_depth(points: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """Camera-space z (the depth the datasets store) of world points `(N, P, 3)`, `(N, P)`."""
    return project(points, cameras)[1]
