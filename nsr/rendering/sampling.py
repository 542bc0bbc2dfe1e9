"""Depths along rays: stratified coarse samples and importance (inverse-CDF) fine samples (spec §2.6 steps 1, 5).

`deterministic=True` replaces the random jitter by none (coarse depths exactly evenly spaced) and the random CDF
positions by evenly spaced ones, as the golden fixture was generated; the released renderer is always random.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def stratified_depths(near: torch.Tensor, far: torch.Tensor, num: int, deterministic: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """`num` depths from near to far inclusive, each jittered forward by up to one bin unless deterministic.

    near, far `(..., 1)` → `(..., num, 1)`.
    """
    steps = torch.arange(num, dtype=torch.float32, device=near.device).to(near.dtype) / (num - 1)
    depths = near[..., None, :] + steps[:, None] * (far - near)[..., None, :]
    if not deterministic:
        bin_width = (far - near)[..., None, :] / (num - 1)
        noise = torch.rand(depths.shape, generator=generator, device=depths.device, dtype=depths.dtype)
        depths = depths + noise * bin_width
    return depths


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF samples of the piecewise-constant density `weights` over `bins`.

    bins `(N, K+1)`, weights `(N, K)` (K+1 or more bins may be passed; the ones past K+1 are never reached),
    u `(N, S)` in [0, 1] → samples `(N, S)`.
    """
    k = weights.shape[-1]
    weights = weights + eps
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    idx = torch.searchsorted(cdf, u.contiguous(), right=True)
    below = (idx - 1).clamp_min(0)
    above = idx.clamp_max(k)
    cdf_lo, cdf_hi = cdf.gather(1, below), cdf.gather(1, above)
    bin_lo, bin_hi = bins.gather(1, below), bins.gather(1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


@torch.no_grad()
def importance_depths(depths: torch.Tensor, weights: torch.Tensor, num: int, deterministic: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Fine depths drawn from the coarse compositing weights (no gradient), the released way: the weights are
    smoothed by a 2-tap max-pool then a 2-tap average (padding 1, so back to S − 1 values), lifted by 0.01, and
    sampled over the coarse mid-points with the two boundary weights dropped.

    depths `(B, R, S, 1)`, weights `(B, R, S−1, 1)` → `(B, R, num, 1)`.
    """
    b, r, s, _ = depths.shape
    z = depths.reshape(b * r, s)
    w = weights.reshape(b * r, 1, s - 1).float()
    w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1)[:, 0] + 0.01
    mids = 0.5 * (z[:, :-1] + z[:, 1:])
    if deterministic:
        u = torch.linspace(0, 1, num, device=z.device, dtype=z.dtype).expand(b * r, num)
    else:
        u = torch.rand(b * r, num, generator=generator, device=z.device, dtype=z.dtype)
    return sample_pdf(mids, w[:, 1:-1].to(z.dtype), u).reshape(b, r, num, 1)
