"""PSNR / SSIM against closed forms and torchmetrics; LPIPS only with backbone weights on disk."""

import math
import warnings

import pytest
import torch

import utils  # noqa: F401  (torchvision shim before torchmetrics / torchvision)
from evaluations import image_metrics as im


def test_psnr_closed_form_in_both_value_ranges():
    target = torch.zeros(2, 4, 3, 8, 8)  # (B, V, C, H, W), images in [-1, 1]
    pred = target + 0.1  # MSE 0.01 over a range of 2 → 10·log10(4 / 0.01)
    expected = 10 * math.log10(400.0)
    per_image = im.psnr(pred, target, data_range=2.0, reduction="none")
    assert per_image.shape == (2, 4)
    torch.testing.assert_close(per_image, torch.full((2, 4), expected))
    # The same images in [0, 1] with data_range 1 give the same PSNR.
    torch.testing.assert_close(im.psnr((pred + 1) / 2, (target + 1) / 2, data_range=1.0), torch.tensor(expected))
    assert im.psnr(target, target, data_range=2.0).item() == math.inf


def test_ssim_matches_torchmetrics():
    from torchmetrics.functional import structural_similarity_index_measure as tm_ssim

    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 32, 32, generator=g)
    pred = (target + 0.15 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    ours = im.ssim(pred, target, value_range=(0.0, 1.0), reduction="none")
    theirs = tm_ssim(pred, target, data_range=1.0, reduction="none")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert 0.2 < ours.mean() < 0.9  # a real, partial similarity, not a degenerate 0 or 1
    torch.testing.assert_close(im.ssim(target, target, value_range=(0.0, 1.0)), torch.tensor(1.0))
    # [-1, 1] images are scored as their [0, 1] versions.
    torch.testing.assert_close(im.ssim(pred * 2 - 1, target * 2 - 1, value_range=(-1.0, 1.0)), theirs.mean())


def test_lpips_missing_backbone_returns_none_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    im.load_lpips.cache_clear()
    x = torch.zeros(2, 3, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert im.lpips_distance(x, x) is None
        assert im.lpips_distance(x, x) is None
        metrics = im.image_metrics(x, x + 0.1)
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "alexnet" in str(caught[0].message)
    assert metrics["lpips"] is None
    assert metrics["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-5)
    im.load_lpips.cache_clear()


def test_lpips_uses_backbone_found_in_hub_cache(tmp_path, monkeypatch):
    """A stand-in SqueezeNet checkpoint (small) at the cache path is picked up without any download."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = im.lpips_backbone_path("squeeze")
    assert path.parent == tmp_path / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    im.load_lpips.cache_clear()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    same = im.lpips_distance(x, x, net="squeeze", reduction="none")
    different = im.lpips_distance(x, y, net="squeeze", reduction="none")
    im.load_lpips.cache_clear()
    assert same.shape == (2,)
    torch.testing.assert_close(same, torch.zeros(2))
    assert (different > 0).all()


def test_image_metrics_batches_and_value_range(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no LPIPS backbone here
    im.load_lpips.cache_clear()
    g = torch.Generator().manual_seed(1)
    target = torch.rand(5, 3, 16, 16, generator=g)
    pred = (target + 0.05 * torch.randn(5, 3, 16, 16, generator=g)).clamp(0, 1)
    with pytest.warns(RuntimeWarning, match="LPIPS skipped"):
        in_01 = im.image_metrics(pred, target, value_range=(0.0, 1.0), batch_size=2)
    in_pm1 = im.image_metrics(pred * 2 - 1, target * 2 - 1, value_range=(-1.0, 1.0), batch_size=5)
    im.load_lpips.cache_clear()
    assert in_01["lpips"] is None and in_pm1["lpips"] is None
    assert in_01["psnr"] == pytest.approx(im.psnr(pred, target, 1.0).item(), rel=1e-6)
    assert in_01["ssim"] == pytest.approx(im.ssim(pred, target, (0.0, 1.0)).item(), rel=1e-6)
    assert in_01["psnr"] == pytest.approx(in_pm1["psnr"], rel=1e-5)
    assert in_01["ssim"] == pytest.approx(in_pm1["ssim"], rel=1e-5)
