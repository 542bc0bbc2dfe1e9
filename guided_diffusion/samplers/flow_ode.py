"""Flow-matching ODE samplers dx/dt = v(x, t), integrated from noise (t = 0) to data (t = 1)."""
from __future__ import annotations

import torch
from torchdiffeq import odeint

from guided_diffusion.flow_matching import FlowMatching
from guided_diffusion.samplers.base import Callback, FixedStepSampler, Guided, batch_time


class Dopri5:
    """The released I23D sampler (SiT `sample_ode`): torchdiffeq dopri5, atol 1e-6, rtol 1e-3, one adaptive solve
    reporting the states at `num_steps` output times linspace(0, 1, num_steps); the last is the sample."""

    def __init__(self, process: FlowMatching, num_steps: int = 250, atol: float = 1e-6, rtol: float = 1e-3):
        self.num_steps = num_steps
        self.atol, self.rtol = atol, rtol
        self.times = torch.linspace(0, 1, num_steps)

    def run(self, fn: Guided, noise: torch.Tensor, callback: Callback | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
        states = odeint(lambda t, x: fn(x, batch_time(t, x)), noise, self.times.to(noise.device), method="dopri5",
                        atol=self.atol, rtol=self.rtol)
        if callback is not None:
            for k in range(1, len(states)):
                callback(k, states[k])
        return states[-1]


class FlowEuler(FixedStepSampler):
    """Explicit Euler on the uniform grid linspace(0, 1, num_steps + 1): one network call per step."""

    def __init__(self, process: FlowMatching, num_steps: int = 50):
        self.num_steps = num_steps
        self.times = torch.linspace(0, 1, num_steps + 1)

    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        times = self.table_on("times", x.device)
        t, t_next = times[i], times[i + 1]
        return x + (t_next - t) * fn(x, batch_time(t, x))


class FlowHeun(FixedStepSampler):
    """Heun (explicit trapezoid) on linspace(0, 1, num_steps + 1): two network calls per step."""

    def __init__(self, process: FlowMatching, num_steps: int = 25):
        self.num_steps = num_steps
        self.times = torch.linspace(0, 1, num_steps + 1)

    def step(self, fn: Guided, i: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        times = self.table_on("times", x.device)
        t, t_next = times[i], times[i + 1]
        h = t_next - t
        v = fn(x, batch_time(t, x))
        v_next = fn(x + h * v, batch_time(t_next, x))
        return x + 0.5 * h * (v + v_next)
