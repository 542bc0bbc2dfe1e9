"""Square patch layouts for patch rendering during training (spec §2.9 "Forward" steps 3–5).

A layout holds one P×P window per rendered view; the renderer casts rays only through its pixels, and `crop` cuts the
same window out of the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PatchLayout:
    """Top-left pixel of each view's window, `top`/`left` `(B, N)` integer tensors, and the window side `size`."""

    top: torch.Tensor
    left: torch.Tensor
    size: int

    def uv(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixel-centre coordinates of every window pixel, u and v each `(B·N, P·P)`, row-major."""
        offsets = torch.arange(self.size, device=self.top.device)
        rows = self.top.reshape(-1, 1, 1) + offsets[None, :, None]
        cols = self.left.reshape(-1, 1, 1) + offsets[None, None, :]
        rows, cols = torch.broadcast_tensors(rows, cols)
        # the same arithmetic as `nsr.cameras.pixel_centres`, so a full-image window casts identical rays
        return (cols.flatten(1) * (1.0 / resolution) + 0.5 / resolution,
                rows.flatten(1) * (1.0 / resolution) + 0.5 / resolution)

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """images `(B, N, C, R, R)` → the windows `(B, N, C, P, P)`."""
        b, n, c = images.shape[:3]
        flat = images.flatten(0, 1)
        offsets = torch.arange(self.size, device=images.device)
        rows = self.top.to(images.device).reshape(-1, 1) + offsets  # (B·N, P)
        cols = self.left.to(images.device).reshape(-1, 1) + offsets
        idx = torch.arange(b * n, device=images.device)[:, None, None]
        out = flat.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]  # (B·N, P, P, C)
        return out.permute(0, 3, 1, 2).reshape(b, n, c, self.size, self.size)

    @classmethod
    def full(cls, batch: int, views: int, resolution: int, device=None) -> PatchLayout:
        zeros = torch.zeros(batch, views, dtype=torch.long, device=device)
        return cls(zeros, zeros.clone(), resolution)


def _window_end(lo: int, hi: int, size: int, resolution: int, generator) -> int:
    """End (exclusive) of a window drawn with the released boundary oversampling: uniform in [lo, hi], then
    clipped to [size, resolution], so windows flush with the far border are drawn more often."""
    end = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    return min(max(end, size), resolution)


def sample_patch_layout(batch: int, views: int, resolution: int, size: int, bbox: torch.Tensor | None = None,
                        foreground_prob: float = 0.875, generator: torch.Generator | None = None) -> PatchLayout:
    """One window per view. With probability `foreground_prob` (when `bbox` `(B, N, 4)` = [top, left, bottom, right]
    in pixels at `resolution` is given) the window is placed to overlap that view's foreground box; otherwise
    anywhere in the image. Uses `generator` (CPU) for every draw."""
    if size > resolution:
        raise ValueError(f"patch size {size} exceeds the render resolution {resolution}")
    top = torch.empty(batch, views, dtype=torch.long)
    left = torch.empty(batch, views, dtype=torch.long)
    for i in range(batch):
        for j in range(views):
            use_box = bbox is not None and float(torch.rand((), generator=generator)) < foreground_prob
            if use_box:
                t, lft, btm, rgt = (int(round(float(v))) for v in bbox[i, j])
                ends = []
                for start, stop in ((t, btm), (lft, rgt)):
                    if start + size < stop:
                        ends.append(_window_end(start + size, stop, size, resolution, generator))
                    else:
                        ends.append(min(max(stop, size), resolution))
            else:
                ends = [_window_end(size, resolution + size, size, resolution, generator) for _ in range(2)]
            top[i, j], left[i, j] = ends[0] - size, ends[1] - size
    return PatchLayout(top, left, size)
