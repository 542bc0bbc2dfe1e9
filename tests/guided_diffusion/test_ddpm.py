"""DDPM schedules, parameterisations and the training loss."""
import numpy as np
import pytest
import torch

from guided_diffusion.ddpm import (
    DDPM,
    BetaSchedule,
    EpsMixing,
    Prediction,
    TimestepFormat,
    beta_schedule,
    convert_prediction,
    join_prediction,
    split_prediction,
)


def test_scaled_linear_schedule_closed_form():
    betas = beta_schedule(BetaSchedule.SCALED_LINEAR, 1000).numpy()
    np.testing.assert_allclose(betas, np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, rtol=1e-12)
    assert betas[0] == pytest.approx(0.00085) and betas[-1] == pytest.approx(0.012)
    process = DDPM(BetaSchedule.SCALED_LINEAR)
    ab = np.cumprod(1 - betas)
    np.testing.assert_allclose(process.alphas_cumprod.numpy(), ab, rtol=1e-12)
    np.testing.assert_allclose(process.sigmas.numpy(), np.sqrt((1 - ab) / ab), rtol=1e-6)
    assert process.sigmas[0] == pytest.approx(0.029168, abs=1e-5)
    assert process.sigmas[-1] == pytest.approx(14.6146, abs=1e-3)


def test_linear_schedule_closed_form_and_respacing_scale():
    np.testing.assert_allclose(beta_schedule(BetaSchedule.LINEAR, 1000).numpy(), np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(beta_schedule(BetaSchedule.LINEAR, 100).numpy(), np.linspace(1e-3, 0.2, 100))


@pytest.mark.parametrize("src", list(Prediction))
@pytest.mark.parametrize("dst", list(Prediction))
def test_parameterisations_round_trip(src, dst):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    ab = torch.tensor([0.9, 0.5, 0.01], dtype=torch.float64)[:, None]
    a, s = ab.sqrt(), (1 - ab).sqrt()
    x_t = a * x0 + s * eps
    out = join_prediction(src, x0, eps, a, s)
    converted = convert_prediction(out, src, dst, x_t, a, s)
    torch.testing.assert_close(converted, join_prediction(dst, x0, eps, a, s))
    torch.testing.assert_close(convert_prediction(converted, dst, src, x_t, a, s), out)
    x0_hat, eps_hat = split_prediction(src, out, x_t, a, s)
    torch.testing.assert_close((x0_hat, eps_hat), (x0, eps))


def test_v_is_the_rotation_of_eps_and_x0():
    x0, eps = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    a, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    torch.testing.assert_close(join_prediction(Prediction.V, x0, eps, a, s), a * eps - s * x0)


def test_q_sample_and_model_time_formats():
    process = DDPM(BetaSchedule.LINEAR, prediction=Prediction.V, timestep_format=TimestepFormat.FRACTION)
    x0, noise, t = torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([0, 999])
    torch.testing.assert_close(process.q_sample(x0, t, noise)[:, 0], process.alphas_cumprod[t].sqrt().float())
    torch.testing.assert_close(process.model_time(t), torch.tensor([0.0, 0.999]))
    index_time = DDPM().model_time(t)
    assert index_time.dtype == torch.int64 and index_time.tolist() == [0, 999]


@pytest.mark.parametrize("prediction", list(Prediction))
def test_loss_is_zero_for_the_oracle_and_positive_otherwise(prediction):
    process = DDPM(prediction=prediction)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 3, 2, 2, generator=g)
    t = torch.tensor([0, 1, 500, 999])

    def oracle(x_t, time, context):
        a, s = process.coefficients(time, x_t)
        return join_prediction(prediction, x0, noise, a, s)

    assert process.loss(oracle, x0, {}, t=t, noise=noise).abs().max() < 1e-10
    wrong = process.loss(lambda x_t, time, c: torch.zeros_like(x_t), x0, {}, t=t, noise=noise)
    assert wrong.shape == (4,) and torch.all(wrong > 0)


@pytest.mark.parametrize("prediction", list(Prediction))
def test_denoise_recovers_x0_from_an_exact_network_at_table_sigmas(prediction):
    process = DDPM(prediction=prediction)
    x0, eps = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([5, 300, 990])
    sigma = process.sigmas[t]

    def exact(x_t, time, context):
        assert time.dtype == torch.int64 and torch.equal(time, t)
        a, s = process.coefficients(time, x_t)
        return join_prediction(prediction, x0, eps, a, s)

    x_sigma = x0 + sigma.double()[:, None] * eps
    torch.testing.assert_close(process.denoise(exact, x_sigma, sigma * 1.0001, {}), x0, atol=1e-5, rtol=1e-5)


class _VNetwork(torch.nn.Module):
    """Returns a fixed v; holds a mixing logit like the ShapeNet UNet."""

    def __init__(self, v, logit):
        super().__init__()
        self.v = v
        self.mixing_logit = torch.nn.Parameter(torch.full((1, 3, 1, 1), float(logit)))

    def forward(self, x_t, time, context):
        return self.v


@pytest.mark.parametrize("logit", [-30.0, 0.0, 30.0])
def test_learned_eps_mixing_blends_the_network_eps_with_the_gaussian_eps(logit):
    process = DDPM(BetaSchedule.LINEAR, prediction=Prediction.V, timestep_format=TimestepFormat.FRACTION,
                   eps_mixing=EpsMixing.LEARNED)
    g = torch.Generator().manual_seed(2)
    x_t, v = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([100, 800])
    a, s = process.coefficients(t, x_t)
    eps_net = s * x_t + a * v
    coeff = torch.sigmoid(torch.tensor(logit))
    expected = (1 - coeff) * s * x_t + coeff * eps_net
    torch.testing.assert_close(process.network_eps(_VNetwork(v, logit), x_t, t, a, s, {}), expected)
    # training compares the mixed ε with the true noise
    x0, noise = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    x_t = process.q_sample(x0, t, noise)
    mixed = (1 - coeff) * s * x_t + coeff * (s * x_t + a * v)
    torch.testing.assert_close(process.loss(_VNetwork(v, logit), x0, {}, t=t, noise=noise),
                               (mixed - noise).pow(2).flatten(1).mean(1))
