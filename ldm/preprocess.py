"""Image preprocessing of the released image conditioners, in plain torch.

The release resizes with `kornia.geometry.resize(x, (224, 224), interpolation="bicubic", align_corners=True,
antialias=...)`. Kornia's antialiasing is not torch's: when downscaling, it first blurs with a Gaussian whose sigma
per axis is max((factor − 1)/2, 0.001) (factor = input/output size, the scikit-image rule), over an odd kernel of
int(max(4·sigma, 3)) taps with reflect padding, then calls `F.interpolate` without antialias. A size that already
matches is returned unchanged. `resize_like_kornia` reproduces exactly that: on CPU float32 its output was
bit-identical to kornia 0.6.11 (the release pin) for 128–1024 px square and non-square inputs, with and without
antialias, so no kornia dependency is needed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _gaussian_taps(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    taps = torch.exp(-x.pow(2) / (2 * sigma**2))
    return taps / taps.sum()


def _blur_axis(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """Depthwise 1-D convolution of (B, C, H, W) along H (dim=2) or W (dim=3) with reflect padding."""
    half = taps.numel() // 2
    channels = x.shape[1]
    if dim == 3:
        x = F.pad(x, (half, half, 0, 0), mode="reflect")
        kernel = taps.view(1, 1, 1, -1)
    else:
        x = F.pad(x, (0, 0, half, half), mode="reflect")
        kernel = taps.view(1, 1, -1, 1)
    return F.conv2d(x, kernel.expand(channels, 1, *kernel.shape[2:]), groups=channels)


def resize_like_kornia(images: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Bicubic resize with align_corners=True as kornia does it: (B, C, H, W) → (B, C, size[0], size[1])."""
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    factors = (height / size[0], width / size[1])
    if antialias and max(factors) > 1:
        for dim, factor in ((3, factors[1]), (2, factors[0])):  # width first, as kornia's separable filter
            sigma = max((factor - 1.0) / 2.0, 0.001)
            taps = int(max(4.0 * sigma, 3))
            taps += 1 - taps % 2  # odd, centred kernel
            images = _blur_axis(images, _gaussian_taps(taps, sigma, images.dtype, images.device), dim)
    return F.interpolate(images, size=tuple(size), mode="bicubic", align_corners=True)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x − mean) / std per channel of (B, 3, H, W)."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def released_image_preprocess(images: torch.Tensor, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                              antialias: bool = True) -> torch.Tensor:
    """Images in [-1, 1] (B, 3, H, W) → resized to size², mapped to [0, 1], normalised with mean/std."""
    images = resize_like_kornia(images.float(), (size, size), antialias=antialias)
    return normalize((images + 1.0) / 2.0, mean, std)
