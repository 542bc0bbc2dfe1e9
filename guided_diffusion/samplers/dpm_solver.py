"""DPM-Solver++(2M): second-order multistep solver on the data prediction, for 10–25 steps.

In σ-space with λ = −log σ and h = λ_{i+1} − λ_i: x_{i+1} = (σ_{i+1}/σ_i)·x_i − expm1(−h)·D̃, where D̃ = D_i on the
first step and (1 + 1/2r)·D_i − (1/2r)·D_{i−1} after it (r = h_{i−1}/h_i); the step to σ = 0 returns D.
"""
from __future__ import annotations

import torch

from guided_diffusion.ddpm import DDPM
from guided_diffusion.samplers.base import Guided, SigmaGridSampler, batch_time


def log_sigma_timesteps(sigmas: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Descending indices whose table σ is nearest to a log-uniform grid from σ_max to σ_min (uniform in λ, the
    spacing DPM-Solver's error analysis assumes). Index-uniform spacing crowds the steps at high σ and leaves only
    one or two for the low-σ end, where the data prediction changes fastest."""
    targets = torch.linspace(sigmas[-1].log().item(), sigmas[0].log().item(), num_steps, dtype=torch.float64)
    indices = (sigmas.log().double()[None] - targets[:, None]).abs().argmin(dim=1)
    if len(torch.unique(indices)) != num_steps:
        raise ValueError(f"{num_steps} steps are too many for a log-σ grid over {len(sigmas)} timesteps")
    return indices


class DPMSolverPP2M(SigmaGridSampler):
    def __init__(self, process: DDPM, num_steps: int = 20):
        super().__init__(process, log_sigma_timesteps(process.sigmas, num_steps))
        self._previous: torch.Tensor | None = None

    def init(self, noise: torch.Tensor) -> torch.Tensor:
        self._previous = None
        return super().init(noise)

    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        sigmas = self.table_on("sigmas", x.device)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = fn(x, batch_time(sigma, x))
        previous, self._previous = self._previous, denoised
        if self.sigmas[i + 1] == 0:  # the CPU grid: no device sync
            return denoised
        h = torch.log(sigma) - torch.log(sigma_next)
        if previous is not None:
            r = (torch.log(sigmas[i - 1]) - torch.log(sigma)) / h
            denoised = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        return (sigma_next / sigma) * x - torch.expm1(-h) * denoised
