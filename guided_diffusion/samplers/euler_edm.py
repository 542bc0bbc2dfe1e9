"""The released T23D sampler: Euler on the EDM probability-flow ODE in σ-space (sgm `EulerEDMSampler`, churn 0)."""
from __future__ import annotations

import torch

from guided_diffusion.ddpm import DDPM
from guided_diffusion.samplers.base import Guided, SigmaGridSampler, batch_time


def released_timesteps(num_timesteps: int, num_steps: int) -> torch.Tensor:
    """Ascending indices reverse(floor(linspace(N−1, 0, n, endpoint=False))) (sgm `LegacyDDPMDiscretization`):
    for 1000 → 250 these are 3, 7, …, 995, 999."""
    step = -(num_timesteps - 1) / num_steps
    points = torch.arange(num_steps, dtype=torch.float64) * step + (num_timesteps - 1)
    return points.floor().long().flip(0)


class EulerEDM(SigmaGridSampler):
    """σ grid `sigmas` `(num_steps + 1,)`: the table σ at `released_timesteps`, descending, then 0.

    init: x = noise·√(1 + σ₀²); step: d = (x − D(x, σ_i))/σ_i, x ← x + d·(σ_{i+1} − σ_i). The last step lands
    exactly on D.
    """

    def __init__(self, process: DDPM, num_steps: int = 250):
        super().__init__(process, released_timesteps(process.num_timesteps, num_steps).flip(0))

    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        sigmas = self.table_on("sigmas", x.device)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = fn(x, batch_time(sigma, x))
        d = (x - denoised) / sigma
        return x + d * (sigma_next - sigma)
