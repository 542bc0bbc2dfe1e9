"""Samplers by name, and the single `sample(...)` entry point.

DDPM samplers (`euler_edm` = released T23D, `ddim`, `dpm_solver_pp`) integrate the σ-space state with the
guided denoiser D(x, σ); flow samplers (`dopri5` = released I23D, `euler`, `heun`, `euler_maruyama`) integrate the
guided velocity from t = 0 to 1. Every sampler class also exposes a step API: `init(noise)` and
`step(fn, i, x)` (all but dopri5), with `fn(x, time (B,))` the guided prediction.
"""
from __future__ import annotations

from enum import Enum
from functools import partial

import torch

from guided_diffusion.ddpm import DDPM, Model
from guided_diffusion.flow_matching import FlowMatching
from guided_diffusion.guidance import guided
from guided_diffusion.samplers.base import Callback, FixedStepSampler
from guided_diffusion.samplers.ddim import DDIM
from guided_diffusion.samplers.dpm_solver import DPMSolverPP2M
from guided_diffusion.samplers.euler_edm import EulerEDM
from guided_diffusion.samplers.flow_ode import Dopri5, FlowEuler, FlowHeun
from guided_diffusion.samplers.flow_sde import FlowEulerMaruyama

DiffusionProcess = DDPM | FlowMatching
AnySampler = FixedStepSampler | Dopri5


class Sampler(str, Enum):
    EULER_EDM = "euler_edm"
    DDIM = "ddim"
    DPM_SOLVER_PP = "dpm_solver_pp"
    DOPRI5 = "dopri5"
    EULER = "euler"
    HEUN = "heun"
    EULER_MARUYAMA = "euler_maruyama"


SAMPLERS: dict[Sampler, type] = {
    Sampler.EULER_EDM: EulerEDM,
    Sampler.DDIM: DDIM,
    Sampler.DPM_SOLVER_PP: DPMSolverPP2M,
    Sampler.DOPRI5: Dopri5,
    Sampler.EULER: FlowEuler,
    Sampler.HEUN: FlowHeun,
    Sampler.EULER_MARUYAMA: FlowEulerMaruyama,
}
DDPM_SAMPLERS = frozenset({Sampler.EULER_EDM, Sampler.DDIM, Sampler.DPM_SOLVER_PP})
DEFAULT_SAMPLER = {DDPM: Sampler.EULER_EDM, FlowMatching: Sampler.DOPRI5}


def build_sampler(name: Sampler | str, process: DiffusionProcess, num_steps: int | None = None,
                  **options) -> AnySampler:
    """Instantiate a sampler for `process`; `options` are the sampler's own keywords (eta, atol, diffusion, ...)."""
    sampler = Sampler(name)
    if (sampler in DDPM_SAMPLERS) != isinstance(process, DDPM):
        raise ValueError(f"sampler {sampler.value!r} does not apply to {type(process).__name__}")
    if num_steps is not None:
        options["num_steps"] = num_steps
    return SAMPLERS[sampler](process, **options)


@torch.no_grad()
def sample(model: Model, process: DiffusionProcess, noise: torch.Tensor, context: dict[str, torch.Tensor], *,
           sampler: Sampler | str | None = None, num_steps: int | None = None, guidance_scale: float = 1.0,
           uncond: dict[str, torch.Tensor] | None = None, callback: Callback | None = None,
           generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Draw samples `(B, ...)` from `noise` `(B, ...)` ~ N(0, I) under `context` (batch B).

    Classifier-free guidance with `guidance_scale` (1: none); `uncond` defaults to zeros like `context`.
    `callback(k, x_k)` sees the state at every grid point. The result is the diffusion latent (still divided
    by the latent divider).
    """
    chosen = build_sampler(sampler or DEFAULT_SAMPLER[type(process)], process, num_steps, **options)
    if isinstance(process, DDPM):
        prediction = partial(process.denoise, model)
    else:
        prediction = partial(process.velocity, model)
    return chosen.run(guided(prediction, context, guidance_scale, uncond), noise, callback, generator)
