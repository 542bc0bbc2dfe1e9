"""DDIM with timestep respacing (guided-diffusion "ddimN"), written on the σ-space state.

With η = 0 a DDIM step is exactly an Euler step of the probability-flow ODE in σ-space; η > 0 adds the DDIM
posterior noise, computed in VP space and mapped back.
"""
from __future__ import annotations

import torch

from guided_diffusion.ddpm import DDPM
from guided_diffusion.samplers.base import Guided, SigmaGridSampler, batch_time


def ddim_timesteps(num_timesteps: int, num_steps: int) -> torch.Tensor:
    """Ascending range(0, N, stride) with the stride that gives exactly `num_steps` indices (0, 4, …, 996 for
    1000 → 250)."""
    for stride in range(1, num_timesteps + 1):
        if len(range(0, num_timesteps, stride)) == num_steps:
            return torch.arange(0, num_timesteps, stride)
    raise ValueError(f"no integer stride gives {num_steps} DDIM steps out of {num_timesteps}")


class DDIM(SigmaGridSampler):
    """init: x_T ~ N(0, I) in VP space, i.e. noise·√(1 + σ₀²) in σ-space; the final step returns D at t = 0."""

    def __init__(self, process: DDPM, num_steps: int = 250, eta: float = 0.0):
        super().__init__(process, ddim_timesteps(process.num_timesteps, num_steps).flip(0))
        self.eta = eta

    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        sigmas = self.table_on("sigmas", x.device)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = fn(x, batch_time(sigma, x))
        eps = (x - denoised) / sigma
        if self.eta == 0 or self.sigmas[i + 1] == 0:  # the CPU grid: no device sync
            return denoised + sigma_next * eps
        ab, ab_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        std = self.eta * torch.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return denoised + (torch.sqrt(1 - ab_next - std**2) * eps + std * noise) / torch.sqrt(ab_next)
