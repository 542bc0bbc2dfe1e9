"""EG3D-style triplane volume renderer (spec §2.6): rays → near/far → coarse samples → field MLP → importance
samples → compositing, on a white background.

Everything runs in float32 with autocast off (depth sorting, cumulative products and the near/far statistics are
precision-sensitive). Two statistics of the release couple all rays of one call: the near/far assigned to rays that
miss the box and the depth clamp range. `render_rays` computes both over the whole call, so chunked rendering equals
unchunked rendering exactly in deterministic mode.
"""
from __future__ import annotations

import torch
from torch import nn

from nsr.cameras import rays_from_uv
from nsr.config import RendererConfig
from nsr.rendering.field_mlp import FieldMLP
from nsr.rendering.patches import PatchLayout
from nsr.rendering.planes import mean_plane_features
from nsr.rendering.ray_box import auto_ray_range
from nsr.rendering.ray_marcher import composite, finish
from nsr.rendering.sampling import importance_depths, stratified_depths

# Density given to samples outside the sampling box: the most negative float32 divided by 3, so that averaging two
# of them at an interval mid-point cannot overflow; softplus(σ − 1) of it is exactly 0.
_EMPTY_DENSITY = torch.finfo(torch.float32).min / 3


class TriplaneRenderer(nn.Module):
    def __init__(self, cfg: RendererConfig, plane_channels: int):
        super().__init__()
        self.cfg = cfg
        self.plane_channels = plane_channels
        self.field = FieldMLP(plane_channels, cfg.field_hidden, cfg.field_features)
        # the plane lookup's implementation, not a model setting: None picks the fused Triton kernel where it runs
        # (CUDA, points without gradient), False forces grid_sample (`nsr.rendering.planes.mean_plane_features`)
        self.fused_lookup: bool | None = None

    def _planes(self, triplane: torch.Tensor) -> torch.Tensor:
        """`(B, 3·C, H, W)` plane-major → `(B, 3, C, H, W)` float32."""
        return triplane.float().unflatten(1, (3, -1))

    def _field(self, planes: torch.Tensor, points: torch.Tensor, filter_box: bool):
        sigma, color = self.field(mean_plane_features(planes, points, self.cfg.box_warp, self.fused_lookup))
        if filter_box and self.cfg.sample_bbox is not None:
            inside = (points.abs() <= self.cfg.sample_bbox).all(-1, keepdim=True)
            sigma = torch.where(inside, sigma, torch.full_like(sigma, _EMPTY_DENSITY))
            color = torch.where(inside, color, torch.zeros_like(color))
        return sigma, color

    def query(self, triplane: torch.Tensor, points: torch.Tensor, chunk: int | None = None) -> dict:
        """Raw field at world points: triplane `(B, 3·C, H, W)`, points `(B, P, 3)` →
        dict(sigma (B, P, 1) before the softplus(σ − 1) activation, rgb (B, P, F) in (−0.001, 1.001)).
        No box filtering. `chunk` bounds the points evaluated at once."""
        with torch.autocast(device_type=points.device.type, enabled=False):
            planes = self._planes(triplane)
            points = points.float()
            step = chunk or points.shape[1]
            outs = [self._field(planes, points[:, i:i + step], filter_box=False)
                    for i in range(0, points.shape[1], step)]
        return {"sigma": torch.cat([o[0] for o in outs], 1), "rgb": torch.cat([o[1] for o in outs], 1)}

    def near_far(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """origins, directions `(B, R, 3)` → near, far `(B, R, 1)`: the 'auto' box rule over all given rays, or the
        configured fixed range."""
        if self.cfg.ray_start is None:
            return auto_ray_range(origins, directions, self.cfg.box_warp)
        near = torch.full_like(origins[..., :1], self.cfg.ray_start)
        return near, torch.full_like(near, self.cfg.ray_end)

    def _march_chunk(self, planes, origins, directions, near, far, deterministic, generator) -> dict:
        cfg = self.cfg
        b, r, _ = origins.shape

        def shade(depths):
            points = (origins[:, :, None] + depths * directions[:, :, None]).reshape(b, -1, 3)
            sigma, color = self._field(planes, points, filter_box=True)
            return sigma.reshape(b, r, -1, 1), color.reshape(b, r, depths.shape[2], -1)

        depths = stratified_depths(near, far, cfg.depth_samples, deterministic, generator)
        sigma, color = shade(depths)
        if cfg.importance_samples > 0:
            coarse_weights = composite(color, sigma, depths)["weights"]
            fine = importance_depths(depths, coarse_weights, cfg.importance_samples, deterministic, generator)
            fine_sigma, fine_color = shade(fine)
            depths, order = torch.sort(torch.cat([depths, fine], dim=2), dim=2)
            sigma = torch.cat([sigma, fine_sigma], dim=2).gather(2, order)
            color = torch.cat([color, fine_color], dim=2)
            color = color.gather(2, order.expand(-1, -1, -1, color.shape[-1]))
        out = composite(color, sigma, depths)
        out["depths"] = depths
        return out

    def render_rays(self, triplane: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor,
                    deterministic: bool = False, generator: torch.Generator | None = None,
                    chunk: int | None = None, return_samples: bool = False) -> dict:
        """Volume-render rays through one triplane per batch item.

        triplane `(B, 3·C, H, W)`; origins, directions `(B, R, 3)` (unit directions); `chunk` bounds the rays of
        each item processed at once. Returns dict(features (B, R, F) in [-1, 1] on the background, depth (B, R, 1),
        weight_sum (B, R, 1)); with `return_samples` also the sorted sample points (B, R, S, 3) and their
        compositing weights (B, R, S−1, 1).
        """
        with torch.autocast(device_type=origins.device.type, enabled=False):
            planes = self._planes(triplane)
            origins, directions = origins.float(), directions.float()
            near, far = self.near_far(origins, directions)
            step = chunk or origins.shape[1]
            parts = []
            for i in range(0, origins.shape[1], step):
                sl = slice(i, i + step)
                parts.append(self._march_chunk(planes, origins[:, sl], directions[:, sl], near[:, sl], far[:, sl],
                                               deterministic, generator))
            depth_min = torch.stack([p["depths"].min() for p in parts]).min()
            depth_max = torch.stack([p["depths"].max() for p in parts]).max()
            cat = {k: torch.cat([p[k] for p in parts], dim=1) for k in ("color", "depth", "weight_sum")}
            features, depth = finish(cat["color"], cat["depth"], cat["weight_sum"], depth_min, depth_max,
                                     self.cfg.white_background)
            out = {"features": features, "depth": depth, "weight_sum": cat["weight_sum"]}
            if return_samples:
                depths = torch.cat([p["depths"] for p in parts], dim=1)
                out["points"] = origins[:, :, None] + depths * directions[:, :, None]
                out["weights"] = torch.cat([p["weights"] for p in parts], dim=1)
        return out

    def render(self, triplane: torch.Tensor, cameras: torch.Tensor, resolution: int,
               patch: PatchLayout | None = None, deterministic: bool = False,
               generator: torch.Generator | None = None, chunk: int | None = None) -> dict:
        """Render N views of each triplane.

        triplane `(B, 3·C, H, W)`, cameras `(B, N, 25)`; `patch` renders only each view's window of the
        resolution × resolution image (P = patch.size, otherwise P = resolution). All B·N views form one render
        call (see the module docstring). Returns dict(rgb (B, N, 3, P, P) in [-1, 1], depth (B, N, 1, P, P),
        alpha (B, N, 1, P, P) = Σw·1.002 − 0.001 (the released mask), weights (B, N, 1, P, P) = Σw, and
        features (B, N, F, P, P) when the field predicts more than 3 channels).
        """
        b, n = cameras.shape[:2]
        if patch is None:
            patch = PatchLayout.full(b, n, resolution, device=cameras.device)
        u, v = patch.uv(resolution)
        with torch.autocast(device_type=cameras.device.type, enabled=False):
            flat = cameras.reshape(b * n, 25).float()
            origins, directions = rays_from_uv(flat, u.to(flat), v.to(flat))
        size = patch.size
        out = self.render_rays(triplane, origins.reshape(b, -1, 3), directions.reshape(b, -1, 3),
                               deterministic=deterministic, generator=generator, chunk=chunk)

        def image(x):
            return x.reshape(b, n, size, size, -1).permute(0, 1, 4, 2, 3)

        weights = image(out["weight_sum"])
        result = {"rgb": image(out["features"][..., :3]), "depth": image(out["depth"]),
                  "alpha": weights * 1.002 - 0.001, "weights": weights}
        if out["features"].shape[-1] > 3:
            result["features"] = image(out["features"])
        return result
