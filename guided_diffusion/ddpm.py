"""Discrete DDPM process: β schedules, ᾱ, σ, parameterisations, q_sample, training loss.

Notation: t ∈ {0..N−1} is the integer index, a_t = √ᾱ_t, s_t = √(1−ᾱ_t). The VP state is x_t = a_t·x0 + s_t·ε; the
EDM ("σ-space") state is x_t / a_t = x0 + σ_t·ε with σ_t = s_t / a_t. Samplers work in σ-space (as the released
T23D sampler does), the network always sees the VP state x_t.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch

Model = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]


class BetaSchedule(str, Enum):
    SCALED_LINEAR = "scaled_linear"  # β = linspace(√0.00085, √0.012, N)²: Stable Diffusion, the T23D release
    LINEAR = "linear"  # β = linspace(1e-4, 0.02, N)·1000/N: ADM, ShapeNet/FFHQ sampling


class Prediction(str, Enum):
    EPS = "eps"  # the noise ε (T23D release)
    V = "v"  # v = a_t·ε − s_t·x0 (ShapeNet/FFHQ UNet)
    X0 = "x0"  # the clean sample


class TimestepFormat(str, Enum):
    INDEX = "index"  # the integer index t, as int64 (T23D release)
    FRACTION = "fraction"  # t / N in [0, 1): the ShapeNet/FFHQ UNet was trained on continuous VP-SDE time


class EpsMixing(str, Enum):
    NONE = "none"
    # LSGM mixed prediction (ShapeNet/FFHQ UNet): ε = (1 − σ(l))·s_t·x_t + σ(l)·ε_net with l = model.mixing_logit,
    # i.e. a learned blend with the ε that is exact when the data are N(0, I).
    LEARNED = "learned"


def beta_schedule(kind: BetaSchedule, num_timesteps: int) -> torch.Tensor:
    """β_t `(N,)` in float64."""
    kind = BetaSchedule(kind)
    if kind is BetaSchedule.SCALED_LINEAR:
        return torch.linspace(0.00085**0.5, 0.012**0.5, num_timesteps, dtype=torch.float64) ** 2
    scale = 1000 / num_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)


def split_prediction(prediction: Prediction, out: torch.Tensor, x_t: torch.Tensor, a: torch.Tensor,
                     s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network output in `prediction` form at VP state x_t → (x0, ε). a, s broadcast against x_t."""
    if prediction is Prediction.EPS:
        return (x_t - s * out) / a, out
    if prediction is Prediction.V:
        return a * x_t - s * out, s * x_t + a * out
    return out, (x_t - a * out) / s


def join_prediction(prediction: Prediction, x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor,
                    s: torch.Tensor) -> torch.Tensor:
    """(x0, ε) → the quantity `prediction` names (the training target)."""
    if prediction is Prediction.EPS:
        return eps
    if prediction is Prediction.V:
        return a * eps - s * x0
    return x0


def convert_prediction(out: torch.Tensor, src: Prediction, dst: Prediction, x_t: torch.Tensor, a: torch.Tensor,
                       s: torch.Tensor) -> torch.Tensor:
    """Re-express a prediction made in `src` form in `dst` form."""
    return join_prediction(dst, *split_prediction(src, out, x_t, a, s), a, s)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class DDPM:
    """The discrete process and what training and the σ-space samplers need from it.

    `sigmas` `(N,)` float32 ascending: σ_t = sqrt(float32((1−ᾱ)/ᾱ)), the table the released sampler snaps to.
    """

    def __init__(self, schedule: BetaSchedule = BetaSchedule.SCALED_LINEAR, num_timesteps: int = 1000,
                 prediction: Prediction = Prediction.EPS, timestep_format: TimestepFormat = TimestepFormat.INDEX,
                 eps_mixing: EpsMixing = EpsMixing.NONE):
        self.schedule = BetaSchedule(schedule)
        self.eps_mixing = EpsMixing(eps_mixing)
        self.num_timesteps = num_timesteps
        self.prediction = Prediction(prediction)
        self.timestep_format = TimestepFormat(timestep_format)
        self.betas = beta_schedule(self.schedule, num_timesteps)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).float().sqrt()
        self._device_tables: dict[tuple[str, torch.device], torch.Tensor] = {}

    def table_on(self, name: str, device: torch.device) -> torch.Tensor:
        """`sigmas` or `alphas_cumprod` on `device`, copied once per device (a copy per call syncs the host)."""
        key = (name, torch.device(device))
        if key not in self._device_tables:
            self._device_tables[key] = getattr(self, name).to(device)
        return self._device_tables[key]

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) for indices t `(B,)`, shaped to broadcast against `like` `(B, ...)`."""
        ab = self.table_on("alphas_cumprod", t.device)[t]
        return _expand(ab.sqrt(), like), _expand((1 - ab).sqrt(), like)

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network receives for indices t `(B,)`."""
        if self.timestep_format is TimestepFormat.INDEX:
            return t.long()
        return t.float() / self.num_timesteps

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a, s = self.coefficients(t, x0)
        return a * x0 + s * noise

    def network_eps(self, model: Model, x_t: torch.Tensor, t: torch.Tensor, a: torch.Tensor, s: torch.Tensor,
                    context: dict) -> torch.Tensor:
        """ε̂ at VP state x_t, index t `(B,)`, from whatever the network predicts (and mixed, with `eps_mixing`)."""
        out = model(x_t, self.model_time(t), context)
        eps = out if self.prediction is Prediction.EPS else split_prediction(self.prediction, out, x_t, a, s)[1]
        if self.eps_mixing is EpsMixing.LEARNED:
            coeff = torch.sigmoid(model.mixing_logit)
            eps = (1 - coeff) * s * x_t + coeff * eps
        return eps

    def sigma_to_index(self, sigma: torch.Tensor) -> torch.Tensor:
        """Nearest table index for each σ `(B,)` (ties go to the lower index)."""
        table = self.table_on("sigmas", sigma.device)
        sigma = sigma.float()
        upper = torch.searchsorted(table, sigma.contiguous()).clamp(1, len(table) - 1)
        lower = upper - 1
        return torch.where((sigma - table[lower]).abs() <= (table[upper] - sigma).abs(), lower, upper)

    def denoise(self, model: Model, x: torch.Tensor, sigma: torch.Tensor, context: dict) -> torch.Tensor:
        """D(x, σ): the x0 estimate at σ-space state x `(B, ...)`, σ `(B,)` (sgm `DiscreteDenoiser`).

        σ is snapped to the nearest table σ_t; the network sees x·c_in, c_in = 1/√(σ_t²+1) (= the VP state) and t;
        D = x − σ_t·ε̂, with ε̂ derived from whatever the network predicts.
        """
        t = self.sigma_to_index(sigma)
        sigma_t = _expand(self.table_on("sigmas", x.device)[t], x)
        c_in = 1 / (sigma_t**2 + 1.0) ** 0.5
        return x - sigma_t * self.network_eps(model, x * c_in, t, c_in, sigma_t * c_in, context)

    def loss(self, model: Model, x0: torch.Tensor, context: dict, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample MSE `(B,)` between the network output and its `prediction` target, t ~ U{0..N−1}; with
        `eps_mixing` the mixed ε̂ against ε (LSGM trains the mixed ε; its importance weighting is not used).

        With ε-prediction this is the released T23D loss (sgm's σ⁻²-weighted denoiser MSE equals ‖ε̂ − ε‖²).
        """
        if t is None:
            t = torch.randint(0, self.num_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        a, s = self.coefficients(t, x0)
        x_t = a * x0 + s * noise
        if self.eps_mixing is EpsMixing.LEARNED:
            out, target = self.network_eps(model, x_t, t, a, s, context), noise
        else:
            out, target = model(x_t, self.model_time(t), context), join_prediction(self.prediction, x0, noise, a, s)
        return (out.float() - target.float()).pow(2).flatten(1).mean(1)
