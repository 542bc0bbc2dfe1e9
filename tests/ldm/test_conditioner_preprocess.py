"""The released image resize: kornia's bicubic (align_corners=True) with Gaussian-blur antialiasing, in torch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ldm.preprocess import CLIP_MEAN, CLIP_STD, released_image_preprocess, resize_like_kornia


def _blur_reference(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable blur as shifted weighted sums over a reflect-padded image (width first, then height)."""
    half = len(taps) // 2
    padded = F.pad(x, (half, half, 0, 0), mode="reflect")
    x = sum(w * padded[..., :, j:j + x.shape[-1]] for j, w in enumerate(taps))
    padded = F.pad(x, (0, 0, half, half), mode="reflect")
    return sum(w * padded[..., j:j + x.shape[-2], :] for j, w in enumerate(taps))


def _gaussian(n: int, sigma: float) -> list[float]:
    raw = [math.exp(-((i - n // 2) ** 2) / (2 * sigma**2)) for i in range(n)]
    return [r / sum(raw) for r in raw]


def test_matching_size_is_returned_unchanged():
    x = torch.rand(1, 3, 224, 224)
    assert resize_like_kornia(x, (224, 224)) is x


def test_upscaling_is_plain_bicubic_align_corners():
    x = torch.rand(2, 3, 128, 128)
    expected = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)
    assert torch.equal(resize_like_kornia(x, (224, 224)), expected)


def test_downscaling_blurs_with_the_skimage_sigma_first():
    torch.manual_seed(0)
    # 448 → 224: factor 2, sigma (2-1)/2 = 0.5, int(max(4·0.5, 3)) = 3 taps
    x = torch.rand(1, 3, 448, 448)
    expected = F.interpolate(_blur_reference(x, _gaussian(3, 0.5)), size=(224, 224), mode="bicubic",
                             align_corners=True)
    torch.testing.assert_close(resize_like_kornia(x, (224, 224)), expected, rtol=0, atol=1e-6)
    # 672 → 224: factor 3, sigma 1, int(4.0) = 4 taps, made odd → 5
    x = torch.rand(1, 3, 672, 672)
    expected = F.interpolate(_blur_reference(x, _gaussian(5, 1.0)), size=(224, 224), mode="bicubic",
                             align_corners=True)
    torch.testing.assert_close(resize_like_kornia(x, (224, 224)), expected, rtol=0, atol=1e-6)
    # without antialias: no blur at all
    expected = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)
    assert torch.equal(resize_like_kornia(x, (224, 224), antialias=False), expected)


def test_256_input_blur_is_negligible_and_range_maps_to_unit_then_clip_stats():
    # the I23D renders are 256²: sigma 0.071 makes the 3-tap kernel [~0, 1, ~0]
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    plain = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)
    torch.testing.assert_close(resize_like_kornia(x, (224, 224)), plain, rtol=0, atol=1e-6)
    out = released_image_preprocess(torch.full((1, 3, 224, 224), -1.0), 224, CLIP_MEAN, CLIP_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD))
