"""Released samplers, step by step, against trajectories computed here from the spec's formulas (§5.2, §5.3).

The references are written in numpy, independently of `guided_diffusion`, and driven by the same fixed analytic
networks. Both runs use classifier-free guidance so that the doubled-batch combination is checked as well.
"""
import numpy as np
import pytest
import torch

from guided_diffusion.config import build_process, preset
from guided_diffusion.samplers import sample

pytestmark = pytest.mark.parity

T23D_SCALE, I23D_SCALE = 6.5, 4.0


# ---- T23D: ε-prediction DDPM, scaled-linear β, 250-step Euler EDM, CFG on the denoised estimate -------------------

def _eps_network_np(x_in, t, mean):
    return np.tanh(0.5 * x_in + 0.001 * t) - 0.3 * mean


def _eps_network_torch(x_in, t, context):
    assert t.dtype == torch.int64
    t = t.to(x_in.dtype).reshape(-1, 1)
    return torch.tanh(0.5 * x_in + 0.001 * t) - 0.3 * context["mean"]


def _euler_edm_reference(noise, mean, scale, steps=250):
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    table = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
    timesteps = np.linspace(999, 0, steps, endpoint=False).astype(int)[::-1]
    sigmas = np.append(table[timesteps][::-1], 0.0)
    x = noise * np.sqrt(1.0 + sigmas[0] ** 2)
    trajectory = []
    for i in range(steps):
        sigma = sigmas[i]
        t = int(np.abs(table - sigma).argmin())
        x_in = x / np.sqrt(sigma**2 + 1.0)
        d_cond = x - sigma * _eps_network_np(x_in, t, mean)
        d_uncond = x - sigma * _eps_network_np(x_in, t, 0.0)
        denoised = d_uncond + scale * (d_cond - d_uncond)
        x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
        trajectory.append(x)
    return trajectory


def test_euler_edm_follows_the_released_sampler_step_by_step():
    cfg = preset("t23d").diffusion
    assert (cfg.sampler.value, cfg.num_steps, cfg.guidance_scale) == ("euler_edm", 250, T23D_SCALE)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3, 8))
    mean = rng.standard_normal((3, 1))
    reference = _euler_edm_reference(noise, mean, T23D_SCALE)

    states = []
    out = sample(_eps_network_torch, build_process(cfg), torch.from_numpy(noise).float(),
                 {"mean": torch.from_numpy(mean).float()}, sampler=cfg.sampler, num_steps=cfg.num_steps,
                 guidance_scale=cfg.guidance_scale, callback=lambda k, x: states.append((k, x.double().numpy())))
    assert [k for k, _ in states] == list(range(1, 251))
    for (k, ours), ref in zip(states, reference):
        np.testing.assert_allclose(ours, ref, atol=1e-4 * max(1.0, np.abs(ref).max()), rtol=0, err_msg=f"step {k}")
    np.testing.assert_allclose(out.double().numpy(), reference[-1], atol=1e-4, rtol=0)


# ---- I23D: linear-path flow, dopri5 (atol 1e-6, rtol 1e-3) over linspace(0, 1, 250), CFG on the velocity --------

DATA_STD = 0.5


def _gaussian_velocity_torch(x, t, context):
    """Exact velocity of the linear path to data N(μ, DATA_STD² I), μ = context["mean"] (zeros: μ = 0)."""
    t = t.to(x.dtype).reshape(-1, 1)
    var = (1 - t) ** 2 + t**2 * DATA_STD**2
    mu = context["mean"]
    return mu + (t * DATA_STD**2 - (1 - t)) / var * (x - t * mu)


def _flow_reference(noise, mean, scale, times):
    """The ODE is linear in μ, so v_u + s(v_c − v_u) is the exact field for mean s·μ, whose solution from x0 is
    x_t = t·s·μ + √((1 − t)² + t²·DATA_STD²)·x0."""
    return [t * scale * mean + np.sqrt((1 - t) ** 2 + t**2 * DATA_STD**2) * noise for t in times]


def test_dopri5_follows_the_exact_flow_at_every_output_time():
    cfg = preset("i23d").diffusion
    assert (cfg.sampler.value, cfg.num_steps, cfg.guidance_scale) == ("dopri5", 250, I23D_SCALE)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((4, 6))
    mean = rng.standard_normal((4, 6))
    times = np.linspace(0.0, 1.0, cfg.num_steps)
    reference = _flow_reference(noise, mean, I23D_SCALE, times)

    states = []
    out = sample(_gaussian_velocity_torch, build_process(cfg), torch.from_numpy(noise).float(),
                 {"mean": torch.from_numpy(mean).float()}, sampler=cfg.sampler, num_steps=cfg.num_steps,
                 guidance_scale=cfg.guidance_scale, callback=lambda k, x: states.append((k, x.double().numpy())))
    assert [k for k, _ in states] == list(range(1, 250))
    # dopri5 controls the local error at rtol 1e-3 (on a smooth field it takes only a few steps and interpolates the
    # output times), so the match is to within a few times that, relative to the state's magnitude.
    for (k, ours), ref in zip(states, reference[1:]):
        np.testing.assert_allclose(ours, ref, atol=5e-3 * max(1.0, np.abs(ref).max()), rtol=0,
                                   err_msg=f"output time {times[k]:.4f}")
    np.testing.assert_allclose(out.double().numpy(), reference[-1], atol=5e-3 * np.abs(reference[-1]).max(), rtol=0)
