"""Samplers driven by exact denoisers / velocity fields land on the data distribution; registry and CFG."""
import pytest
import torch

from guided_diffusion.ddpm import DDPM
from guided_diffusion.flow_matching import FlowMatching
from guided_diffusion.guidance import guided, null_context
from guided_diffusion.samplers import DDPM_SAMPLERS, Sampler, build_sampler, sample
from guided_diffusion.samplers.ddim import ddim_timesteps
from guided_diffusion.samplers.euler_edm import EulerEDM, released_timesteps

MEAN, STD = 0.7, 0.5


def gaussian_eps_network(process: DDPM, std: float = STD):
    """The exact ε-prediction network for data N(μ, std²) per element, μ = context["mean"] `(B, 1)`."""

    def network(x_t, t, context):
        assert t.dtype == torch.int64
        a, s = process.coefficients(t, x_t)
        sigma, x_sigma, mu = s / a, x_t / a, context["mean"]
        denoised = mu + std**2 / (std**2 + sigma**2) * (x_sigma - mu)
        return (x_sigma - denoised) / sigma

    return network


WEIGHTS = torch.tensor([0.3, 0.7])
CENTRES = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
SPREAD = 0.3


def mixture_velocity(x, t, context):
    """Exact linear-path velocity for the mixture Σ w_k N(c_k, SPREAD² I) (noise at t = 0)."""
    t = t[:, None, None].to(x.dtype)
    var = (1 - t) ** 2 + t**2 * SPREAD**2  # (B, 1, 1)
    diff = x[:, None] - t * CENTRES[None]  # (B, K, 2)
    posterior = torch.softmax(WEIGHTS.log() - diff.pow(2).sum(-1) / (2 * var[..., 0]), dim=1)
    per_mode = CENTRES[None] + (t * SPREAD**2 - (1 - t)) / var * diff
    return (posterior[..., None] * per_mode).sum(1)


def _ode_map(noise, mean, sigma_max, std=STD):
    """Where the exact probability-flow ODE takes the initial state noise·√(1 + σ_max²): x ↦ mean + (x − mean)·k,
    k = std/√(std² + σ_max²). The finite terminal SNR of the schedule means the start is N(0, 1 + σ_max²) rather
    than N(mean, std² + σ_max²), which leaves a mean shortfall of mean·k (≈ 0.024 for the release grid)."""
    k = std / (std**2 + sigma_max**2) ** 0.5
    return mean + (noise * (1 + sigma_max**2) ** 0.5 - mean) * k


def _population(mean, sigma_max, stochastic, std=STD):
    """Mean and std of the samples for N(0, I) noise. Stochastic (ancestral) sampling draws x0 from the exact
    posterior N(mean + k(x − mean), std²(1 − k)), k = std²/(std² + σ_max²), instead of following the ODE map."""
    if not stochastic:
        k = std / (std**2 + sigma_max**2) ** 0.5
        return mean * (1 - k), k * (1 + sigma_max**2) ** 0.5
    k = std**2 / (std**2 + sigma_max**2)
    return mean * (1 - k), (std**2 * (1 - k) + k**2 * (1 + sigma_max**2)) ** 0.5


def _assert_moments(x, mean, std, tol=0.02):
    """tol ≈ 5 standard errors for 16 000 values of std 0.5."""
    assert abs(x.mean().item() - mean) < tol and abs(x.std().item() - std) < tol


@pytest.mark.parametrize(("name", "steps", "options", "pointwise"), [
    ("euler_edm", 250, {}, 0.05),
    ("ddim", 250, {}, 0.05),
    ("ddim", 250, {"eta": 1.0}, None),
    ("dpm_solver_pp", 15, {}, 0.05),
])
def test_ddpm_samplers_recover_a_gaussian(name, steps, options, pointwise):
    process = DDPM()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    context = {"mean": torch.full((4000, 1), MEAN, dtype=torch.float64)}
    x = sample(gaussian_eps_network(process), process, noise, context, sampler=name, num_steps=steps,
               generator=g, **options)
    sigma_max = build_sampler(name, process, steps).sigmas[0].item()
    _assert_moments(x, *_population(MEAN, sigma_max, stochastic=pointwise is None))
    if pointwise is not None:
        assert (x - _ode_map(noise, MEAN, sigma_max)).abs().max() < pointwise


@pytest.mark.parametrize(("name", "steps"), [("dopri5", 3), ("euler", 100), ("heun", 30), ("euler_maruyama", 200)])
def test_flow_samplers_land_on_the_mixture(name, steps):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(3000, 2, generator=g)
    x = sample(mixture_velocity, FlowMatching(), noise, {}, sampler=name, num_steps=steps, generator=g)
    mode = (x[:, None] - CENTRES[None]).norm(dim=-1).argmin(1)
    fractions = torch.bincount(mode, minlength=2).float() / len(x)
    torch.testing.assert_close(fractions, WEIGHTS, atol=0.03, rtol=0)
    for k in range(2):
        members = x[mode == k]
        torch.testing.assert_close(members.mean(0), CENTRES[k], atol=0.05, rtol=0)
        assert abs(members.std(0).mean().item() - SPREAD) < 0.04


def test_release_grids():
    assert released_timesteps(1000, 250)[:3].tolist() == [3, 7, 11] and released_timesteps(1000, 250)[-1] == 999
    assert len(set(released_timesteps(1000, 250).tolist())) == 250
    assert torch.equal(ddim_timesteps(1000, 250), torch.arange(0, 1000, 4))
    sampler = EulerEDM(DDPM(), 250)
    assert sampler.sigmas.shape == (251,) and sampler.sigmas[-1] == 0 and torch.all(sampler.sigmas.diff() < 0)
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 999)


def test_registry_by_name_and_process_check():
    assert set(Sampler) == {Sampler(s.value) for s in Sampler}
    for s in Sampler:
        process = DDPM() if s in DDPM_SAMPLERS else FlowMatching()
        other = FlowMatching() if s in DDPM_SAMPLERS else DDPM()
        assert build_sampler(s.value, process, num_steps=10).num_steps == 10
        with pytest.raises(ValueError):
            build_sampler(s, other)
    with pytest.raises(ValueError):
        build_sampler("plms", DDPM())


def test_callback_sees_every_grid_point_and_the_last_is_the_result():
    seen = []
    noise = torch.randn(8, 2)
    out = sample(mixture_velocity, FlowMatching(), noise, {}, sampler="heun", num_steps=7,
                 callback=lambda k, x: seen.append((k, x.clone())))
    assert [k for k, _ in seen] == list(range(1, 8)) and torch.equal(seen[-1][1], out)


def test_cfg_at_scale_one_is_the_conditional_prediction_without_an_unconditional_pass():
    calls = []

    def fn(x, time, context):
        calls.append(x.shape[0])
        return x * context["c"] + time[:, None]

    context = {"c": torch.randn(4, 3)}
    x, time = torch.randn(4, 3), torch.rand(4)
    torch.testing.assert_close(guided(fn, context, 1.0)(x, time), fn(x, time, context), rtol=0, atol=0)
    assert calls == [4, 4]


def test_cfg_combines_a_doubled_batch_uncond_first():
    batches = []

    def fn(x, time, context):
        batches.append(context["c"].clone())
        return x * context["c"] + time[:, None]

    context = {"c": torch.randn(4, 3)}
    x, time = torch.randn(4, 3), torch.rand(4)
    out = guided(fn, context, 6.5)(x, time)
    cond, uncond = x * context["c"] + time[:, None], time[:, None].expand(4, 3)
    torch.testing.assert_close(out, uncond + 6.5 * (cond - uncond))
    assert torch.equal(batches[0][:4], torch.zeros(4, 3)) and torch.equal(batches[0][4:], context["c"])
    assert torch.equal(null_context(context)["c"], torch.zeros(4, 3))


def test_guided_gaussian_sampling_moves_the_mean_by_the_scale():
    """CFG on D with a null mean of 0: D_u + s(D_c − D_u) is the exact denoiser for mean s·μ (same variance)."""
    process = DDPM()
    noise = torch.randn(3000, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    context = {"mean": torch.full((3000, 1), 0.2, dtype=torch.float64)}
    x = sample(gaussian_eps_network(process), process, noise, context, sampler="dpm_solver_pp", num_steps=20,
               guidance_scale=3.0)
    assert (x - _ode_map(noise, 0.6, process.sigmas[-1].item())).abs().max() < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", [s for s in Sampler if s is not Sampler.DOPRI5])
def test_fixed_step_samplers_never_block_the_host_on_cuda(name):
    """Every step reads its σ / time values from a device copy of the grid: with CUDA graphs a per-step host-to-device
    copy would stall the host at every replay. Sync debug mode turns any blocking operation into an error."""
    process = DDPM() if Sampler(name) in DDPM_SAMPLERS else FlowMatching()
    sampler = build_sampler(name, process, num_steps=8)
    noise = torch.randn(2, 4, 8, 8, device="cuda")
    sampler.run(lambda x, t: 0.5 * x, noise)  # warm-up: the one-time grid copies
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = sampler.run(lambda x, t: 0.5 * x + t[:, None, None, None], noise)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out).all()
