"""Flow matching on the linear path (the I23D release, SiT `transport` with the "Linear" plan).

x_t = t·x1 + (1 − t)·x0, with x0 ~ N(0, I) the noise at t = 0 and x1 the data at t = 1. The network receives the
continuous t ∈ [0, 1] as is and predicts the velocity u = x1 − x0.
"""
from __future__ import annotations

from enum import Enum

import torch

from guided_diffusion.ddpm import Model


class TimeSampling(str, Enum):
    LOGNORMAL = "lognormal"  # t = sigmoid(u), u ~ N(0, 1) (release, SiT "lognorm")
    UNIFORM = "uniform"  # t ~ U[0, 1)


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class FlowMatching:
    """The linear probability path, its training loss, and the velocity ↔ score relation samplers use."""

    def __init__(self, time_sampling: TimeSampling = TimeSampling.LOGNORMAL):
        self.time_sampling = TimeSampling(time_sampling)

    @staticmethod
    def interpolate(noise: torch.Tensor, data: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for t `(B,)`."""
        t = _expand(t, data)
        return t * data + (1 - t) * noise

    @staticmethod
    def velocity_target(noise: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        return data - noise

    @staticmethod
    def score(x: torch.Tensor, t: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        """∇log p_t(x) from the velocity: E[x0 | x_t] = x_t − t·v, so the score is (t·v − x_t)/(1 − t); t < 1."""
        t = _expand(t, x)
        return (t * velocity - x) / (1 - t)

    def sample_time(self, n: int, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
        if self.time_sampling is TimeSampling.LOGNORMAL:
            return torch.sigmoid(torch.randn(n, generator=generator, device=device))
        return torch.rand(n, generator=generator, device=device)

    def velocity(self, model: Model, x: torch.Tensor, t: torch.Tensor, context: dict) -> torch.Tensor:
        """The network's velocity at state x `(B, ...)`, time t `(B,)`."""
        return model(x, t.float(), context)

    def loss(self, model: Model, data: torch.Tensor, context: dict, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample velocity MSE `(B,)`, unweighted (release)."""
        if t is None:
            t = self.sample_time(data.shape[0], generator, data.device)
        if noise is None:
            noise = torch.randn(data.shape, generator=generator, device=data.device, dtype=data.dtype)
        out = model(self.interpolate(noise, data, t), t.float(), context)
        return (out.float() - self.velocity_target(noise, data).float()).pow(2).flatten(1).mean(1)
