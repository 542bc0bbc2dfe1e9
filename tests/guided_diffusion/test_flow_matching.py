"""Linear-path flow matching: path, target, time sampling, score, loss."""
import pytest
import torch

from guided_diffusion.flow_matching import FlowMatching, TimeSampling


def test_path_runs_from_noise_at_zero_to_data_at_one():
    noise, data = torch.randn(2, 3), torch.randn(2, 3)
    fm = FlowMatching()
    torch.testing.assert_close(fm.interpolate(noise, data, torch.zeros(2)), noise)
    torch.testing.assert_close(fm.interpolate(noise, data, torch.ones(2)), data)
    t = torch.tensor([0.25, 0.5])
    torch.testing.assert_close(fm.interpolate(noise, data, t), t[:, None] * data + (1 - t[:, None]) * noise)
    torch.testing.assert_close(fm.velocity_target(noise, data), data - noise)


def test_lognormal_time_is_sigmoid_of_a_standard_normal():
    g = torch.Generator().manual_seed(0)
    t = FlowMatching(TimeSampling.LOGNORMAL).sample_time(200_000, g)
    logit = torch.logit(t.double())
    assert logit.mean().abs() < 0.01 and (logit.std() - 1).abs() < 0.01
    u = FlowMatching(TimeSampling.UNIFORM).sample_time(200_000, g)
    assert 0 <= u.min() and u.max() < 1 and (u.mean() - 0.5).abs() < 0.005


def test_score_from_velocity_matches_the_gaussian_score():
    """Data N(m, s²): p_t = N(t·m, (1−t)² + t²s²) and the exact velocity is known in closed form."""
    m, s = 1.5, 0.4
    t = torch.tensor([0.0, 0.3, 0.9], dtype=torch.float64)
    x = torch.tensor([[0.2], [-1.0], [2.0]], dtype=torch.float64)
    var = (1 - t) ** 2 + t**2 * s**2
    velocity = m + ((t * s**2 - (1 - t)) / var)[:, None] * (x - (t * m)[:, None])
    expected = -(x - (t * m)[:, None]) / var[:, None]
    torch.testing.assert_close(FlowMatching.score(x, t, velocity), expected)


def test_loss_is_zero_for_the_oracle_and_matches_the_mse():
    fm = FlowMatching()
    data, noise, t = torch.randn(3, 2, 4), torch.randn(3, 2, 4), torch.tensor([0.1, 0.5, 0.9])
    assert fm.loss(lambda x, time, c: data - noise, data, {}, t=t, noise=noise).abs().max() == 0
    loss = fm.loss(lambda x, time, c: torch.zeros_like(x), data, {}, t=t, noise=noise)
    torch.testing.assert_close(loss, (data - noise).pow(2).flatten(1).mean(1))


def test_loss_passes_continuous_time_to_the_network():
    seen = {}

    def model(x, time, context):
        seen["t"] = time
        return torch.zeros_like(x)

    FlowMatching().loss(model, torch.randn(5, 3), {}, generator=torch.Generator().manual_seed(0))
    assert seen["t"].dtype == torch.float32 and seen["t"].shape == (5,)
    assert torch.all((seen["t"] > 0) & (seen["t"] < 1))


@pytest.mark.parametrize("bad", ["logit_normal", 3])
def test_unknown_time_sampling_is_rejected(bad):
    with pytest.raises(ValueError):
        FlowMatching(bad)
