"""The fixed-grid sampler loop all samplers share (dopri5 overrides `run`, its grid is only for output), and the
σ grid of the DDPM samplers."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from guided_diffusion.ddpm import DDPM

# (x (B, ...), time (B,)) -> guided prediction: D for DDPM samplers (time = σ), velocity for flow (time = t).
Guided = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Receives (k, x_k): the state at grid point k = 1..num_steps (grid point 0 is the initial state).
Callback = Callable[[int, torch.Tensor], None]


class FixedStepSampler(ABC):
    """`init(noise)` gives the state at grid point 0; `step(fn, i, x)` moves it from grid point i to i + 1."""

    num_steps: int

    def init(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def table_on(self, name: str, device: torch.device) -> torch.Tensor:
        """The CPU table attribute `name` (a σ or time grid) on `device`, copied there once. Steps branch on the CPU
        copy freely, but read their values from this one: a host-to-device copy per step stalls the host every step,
        which CUDA-graph replays expose (the H100 benchmark counted ~1,000 synchronisations per 250-step run)."""
        copies = self.__dict__.setdefault("_device_tables", {})
        table = copies.get(name)
        if table is None or table.device != device:
            table = copies[name] = getattr(self, name).to(device)
        return table

    @abstractmethod
    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        ...

    def run(self, fn: Guided, noise: torch.Tensor, callback: Callback | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.init(noise)
        for i in range(self.num_steps):
            x = self.step(fn, i, x, generator)
            if callback is not None:
                callback(i + 1, x)
        return x


class SigmaGridSampler(FixedStepSampler):
    """A DDPM sampler on the σ-space state. `sigmas` `(num_steps + 1,)`: the table σ at `timesteps` (descending DDPM
    indices), then 0. init: x_T ~ N(0, I) in VP space, i.e. noise·√(1 + σ₀²)."""

    def __init__(self, process: DDPM, timesteps: torch.Tensor):
        self.num_steps = len(timesteps)
        self.timesteps = timesteps
        self.sigmas = torch.cat([process.sigmas[timesteps], torch.zeros(1)])

    def init(self, noise: torch.Tensor) -> torch.Tensor:
        return noise * torch.sqrt(1.0 + self.table_on("sigmas", noise.device)[0] ** 2)


def batch_time(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar time/σ broadcast to `(B,)` on x's device."""
    return value.to(device=x.device, dtype=torch.float32).expand(x.shape[0])
