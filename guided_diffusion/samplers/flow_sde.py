"""Stochastic sampler for flow matching: Euler–Maruyama with the score derived from the velocity.

For any w(t) ≥ 0, dx = [v + ½·w(t)·∇log p_t(x)] dt + √w(t) dW has the same marginals p_t as the ODE dx = v dt
(Fokker–Planck). With the linear path the score is (t·v − x)/(1 − t); w(t) = diffusion·(1 − t) keeps the drift
finite up to t = 1 and fades the noise out towards the data end. The last step adds no noise.
"""
from __future__ import annotations

import torch

from guided_diffusion.flow_matching import FlowMatching
from guided_diffusion.samplers.base import FixedStepSampler, Guided, batch_time


class FlowEulerMaruyama(FixedStepSampler):
    def __init__(self, process: FlowMatching, num_steps: int = 250, diffusion: float = 1.0):
        self.process = process
        self.num_steps = num_steps
        self.diffusion = diffusion
        self.times = torch.linspace(0, 1, num_steps + 1)

    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        times = self.table_on("times", x.device)
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        time = batch_time(t, x)
        v = fn(x, time)
        w = self.diffusion * (1 - t)
        x = x + h * (v + 0.5 * w * self.process.score(x, time, v))
        if i == self.num_steps - 1:
            return x
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + torch.sqrt(w * h) * noise
