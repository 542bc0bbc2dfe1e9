"""Fused triplane lookup in Triton: bilinear features of the three planes at each point, averaged, in one kernel.

Why: `F.grid_sample`'s backward (`grid_sampler_2d_backward`) took 42 % of a small-preset training step on an H200
(docs/BENCHMARKS.md). Its kernel gives each thread one sample point and loops over channels of a channel-first
plane, so the 32 threads of a warp add into the same few texels at once and their atomics serialise; the per-plane
output then needs a transpose copy and a separate mean. Here a program handles a block of points × all channels of
a channel-last table: the lanes of a warp add into 32 *different*, contiguous channel addresses, the three planes
and the mean are fused, and the output is already `(B, M, C)`.

Semantics are exactly `sample_triplane(...).mean(1)`: bilinear, `align_corners=False`, zeros outside the plane, the
released plane projection (x, y), (y, z), (z, x). Gradients flow to the planes only (the renderer's sample points
carry no gradient); `nsr.rendering.planes.mean_plane_features` routes points that need one to the reference path.

Triton ships with CUDA builds of PyTorch; on a CPU the kernels run in Triton's interpreter (`TRITON_INTERPRET=1`),
which is how the tests check them against `grid_sample`.
"""
from __future__ import annotations

import torch
import torch._dynamo

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of torch come without Triton; callers fall back to grid_sample
    triton = None


def available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _corner_offsets(plane, u, v, H, W, C: tl.constexpr, channels, channel_ok, row_ok, dx: tl.constexpr,
                        dy: tl.constexpr):
        """Offsets `(BLOCK, C_PAD)` into the channel-last table, bilinear weights `(BLOCK,)` and the load mask of one
        of the four corners around the points' plane coordinates (u, v) ∈ [-1, 1] (align_corners=False)."""
        # clamping keeps far-away points' indices in int32 range; anything past the border has weight 0 anyway
        ix = tl.minimum(tl.maximum(((u + 1.0) * W - 1.0) * 0.5, -2.0), W + 1.0)
        iy = tl.minimum(tl.maximum(((v + 1.0) * H - 1.0) * 0.5, -2.0), H + 1.0)
        x0 = tl.floor(ix)
        y0 = tl.floor(iy)
        fx = ix - x0
        fy = iy - y0
        xi = x0.to(tl.int32) + dx
        yi = y0.to(tl.int32) + dy
        wx = fx if dx == 1 else 1.0 - fx
        wy = fy if dy == 1 else 1.0 - fy
        inside = row_ok & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        texel = (plane * H + yi.to(tl.int64)) * W + xi.to(tl.int64)
        offsets = texel[:, None] * C + channels[None, :]
        return offsets, wx * wy, inside[:, None] & channel_ok[None, :]

    @triton.jit
    def _point_block(points, M, scale, C: tl.constexpr, C_PAD: tl.constexpr, BLOCK: tl.constexpr):
        """This program's block of points of batch item `program_id(1)`: item, flat rows `(BLOCK,)` and their mask,
        channel lanes `(C_PAD,)` and their mask, and the points' coordinates scaled into the planes' [-1, 1]."""
        b = tl.program_id(1).to(tl.int64)
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        row_ok = idx < M
        rows = b * M + idx
        channels = tl.arange(0, C_PAD)
        x = tl.load(points + rows * 3 + 0, mask=row_ok, other=0.0) * scale
        y = tl.load(points + rows * 3 + 1, mask=row_ok, other=0.0) * scale
        z = tl.load(points + rows * 3 + 2, mask=row_ok, other=0.0) * scale
        return b, rows, row_ok, channels, channels < C, x, y, z

    @triton.jit
    def _plane_uv(p: tl.constexpr, x, y, z):
        """The released projection: plane 0 (x, y), plane 1 (y, z), plane 2 (z, x)."""
        u = x if p == 0 else (y if p == 1 else z)
        v = y if p == 0 else (z if p == 1 else x)
        return u, v

    @triton.jit
    def _lookup_forward(table, points, out, M, H, W, scale, C: tl.constexpr, C_PAD: tl.constexpr,
                        BLOCK: tl.constexpr):
        b, rows, row_ok, channels, channel_ok, x, y, z = _point_block(points, M, scale, C, C_PAD, BLOCK)
        acc = tl.zeros((BLOCK, C_PAD), dtype=tl.float32)
        for p in tl.static_range(3):
            u, v = _plane_uv(p, x, y, z)
            for corner in tl.static_range(4):
                offsets, weight, mask = _corner_offsets(b * 3 + p, u, v, H, W, C, channels, channel_ok, row_ok,
                                                        corner % 2, corner // 2)
                acc += tl.load(table + offsets, mask=mask, other=0.0).to(tl.float32) * weight[:, None]
        out_mask = row_ok[:, None] & channel_ok[None, :]
        tl.store(out + rows[:, None] * C + channels[None, :], acc * (1.0 / 3.0), mask=out_mask)

    @triton.jit
    def _lookup_backward(grad_table, points, grad_out, M, H, W, scale, C: tl.constexpr, C_PAD: tl.constexpr,
                         BLOCK: tl.constexpr):
        b, rows, row_ok, channels, channel_ok, x, y, z = _point_block(points, M, scale, C, C_PAD, BLOCK)
        g = tl.load(grad_out + rows[:, None] * C + channels[None, :], mask=row_ok[:, None] & channel_ok[None, :],
                    other=0.0).to(tl.float32) * (1.0 / 3.0)
        # points whose gradient is exactly zero add nothing: samples the box filter dropped and samples behind an
        # opaque surface (their transmittance underflows to 0) issue no atomics. A sum, not a max, so NaN and inf
        # rows still go through and reach the non-finite guard
        row_ok = row_ok & (tl.sum(tl.abs(g), axis=1) != 0.0)
        for p in tl.static_range(3):
            u, v = _plane_uv(p, x, y, z)
            for corner in tl.static_range(4):
                offsets, weight, mask = _corner_offsets(b * 3 + p, u, v, H, W, C, channels, channel_ok, row_ok,
                                                        corner % 2, corner // 2)
                tl.atomic_add(grad_table + offsets, g * weight[:, None], mask=mask)


_BLOCK = 64


def _launch(kernel, table, points, tensor, m, h, w, scale, c):
    grid = (triton.cdiv(m, _BLOCK), points.shape[0])
    kernel[grid](table, points, tensor, m, h, w, scale, C=c, C_PAD=triton.next_power_of_2(c), BLOCK=_BLOCK)


class _MeanTriplaneLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, planes: torch.Tensor, points: torch.Tensor, scale: float) -> torch.Tensor:
        b, _, c, h, w = planes.shape
        m = points.shape[1]
        table = planes.detach().permute(0, 1, 3, 4, 2).contiguous()  # (B, 3, H, W, C)
        points = points.detach().contiguous()
        out = torch.empty(b, m, c, device=planes.device, dtype=torch.float32)
        if m:
            _launch(_lookup_forward, table, points, out, m, h, w, scale, c)
        ctx.save_for_backward(points)
        ctx.dims = (b, c, h, w, scale)
        return out.to(planes.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (points,) = ctx.saved_tensors
        b, c, h, w, scale = ctx.dims
        m = points.shape[1]
        grad_table = torch.zeros(b, 3, h, w, c, device=points.device, dtype=torch.float32)
        if m:
            _launch(_lookup_backward, grad_table, points, grad_out.contiguous(), m, h, w, scale, c)
        return grad_table.permute(0, 1, 4, 2, 3), None, None


# opaque to torch.compile: the Function runs eagerly inside a compiled region (a graph break), so its hand-written
# backward is the one used (a compiled training march that traced into it did not learn on the H200)
@torch._dynamo.disable
def mean_triplane_lookup(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """planes `(B, 3, C, H, W)` float32, points `(B, M, 3)` float32 without gradient → mean plane features
    `(B, M, C)` (differentiable in `planes`)."""
    if triton is None:
        raise RuntimeError("the Triton triplane lookup needs Triton (it ships with CUDA builds of PyTorch); use "
                           "nsr.rendering.planes.sample_triplane instead")
    return _MeanTriplaneLookup.apply(planes, points.float(), 2.0 / box_warp)
