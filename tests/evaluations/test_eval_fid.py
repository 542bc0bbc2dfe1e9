"""FID/KID: the offline skip path, and the statistics through an injected stand-in feature extractor."""

import importlib.util

import pytest
import torch
from torch import nn

from evaluations import fid


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))


def test_skips_with_a_reason_when_weights_are_missing(no_weights, tmp_path):
    images = torch.zeros(4, 3, 8, 8)
    result, reason = fid.compute_fid_kid(images, images)
    assert result is None
    assert fid.WEIGHTS_ENV in reason and str(tmp_path / "hub" / "checkpoints" / fid.FIDELITY_WEIGHTS_FILE) in reason


def test_env_var_pointing_nowhere_is_reported(no_weights, monkeypatch, tmp_path):
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    path, reason = fid.find_inception_weights()
    assert path is None and "missing.pth is not a file" in reason


def test_weights_found_through_env_or_hub_cache(no_weights, monkeypatch, tmp_path):
    cached = tmp_path / "hub" / "checkpoints" / fid.FIDELITY_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stand-in")
    assert fid.find_inception_weights() == (cached, None)
    explicit = tmp_path / "inception.pth"
    explicit.write_bytes(b"stand-in")
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(explicit))
    assert fid.find_inception_weights() == (explicit, None)
    if importlib.util.find_spec("torch_fidelity") is None:
        extractor, reason = fid.inception_feature_extractor()
        assert extractor is None and "torch-fidelity is not installed" in reason


class Flatten(nn.Module):
    """Stand-in extractor: the pixels themselves are the features."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def unbiased_poly_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """KID's estimator on whole sets: kernel (x·y/d + 1)³, unbiased within-set terms, all cross pairs."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    within = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1))
    return (within - 2 * kxy.mean()).item()


def test_fid_and_kid_match_closed_forms():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 3, 1, 1, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    fake = real + shift[None, :, None, None]  # same covariance exactly, so FID = ‖shift‖²
    same, reason = fid.compute_fid_kid(real, real.clone(), feature_extractor=Flatten(), batch_size=64, kid_subsets=3)
    assert reason is None
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    shifted, _ = fid.compute_fid_kid(real, fake, feature_extractor=Flatten(), batch_size=64, kid_subsets=3)
    assert shifted["fid"] == pytest.approx(shift.pow(2).sum().item(), rel=1e-6)
    # Subset size = set size, so every KID subset is the whole set: mean = the whole-set estimate, std = 0.
    x, y = real.flatten(1), fake.flatten(1)
    assert shifted["kid_mean"] == pytest.approx(unbiased_poly_mmd(x, y), rel=1e-6)
    assert shifted["kid_std"] == pytest.approx(0.0, abs=1e-9)
    assert (shifted["num_real"], shifted["num_fake"]) == (400, 400)


def test_batches_from_an_iterable_and_too_few_images():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(30, 3, 2, 2, generator=g)
    fake = torch.randn(30, 3, 2, 2, generator=g) * 1.5
    whole, _ = fid.compute_fid_kid(real, fake, feature_extractor=Flatten(), kid_subset_size=10, seed=3)
    chunked, _ = fid.compute_fid_kid(
        iter(real.split(7)), iter(fake.split(11)), feature_extractor=Flatten(), kid_subset_size=10, seed=3
    )
    assert chunked == pytest.approx(whole)
    assert whole["fid"] > 1.0
    result, reason = fid.compute_fid_kid(real[:1], fake, feature_extractor=Flatten())
    assert result is None and "at least 2" in reason
