"""Per-image reconstruction metrics: PSNR, SSIM and (when its backbone weights are on disk) LPIPS.

All functions take images shaped (..., C, H, W); the leading dimensions (batch, views, ...) are kept in the
per-image output, so `reduction="none"` returns a tensor shaped like the leading dimensions and `"mean"` returns a
0-d tensor. The value range is never guessed: PSNR takes `data_range` (2.0 for images in [-1, 1], 1.0 for [0, 1]),
SSIM the (low, high) range (it is not shift-invariant), LPIPS expects [-1, 1].
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

import utils  # noqa: F401  (installs the torchvision shim before lpips imports torchvision)

if TYPE_CHECKING:
    import lpips

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# lpips builds its backbone through torchvision's pretrained constructors, which look for these files in the torch
# hub cache before trying to download; the linear heads on top ship inside the lpips wheel.
_LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def _flatten_images(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
    """(..., C, H, W) pair -> two (N, C, H, W) float tensors and the leading shape."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.dim() < 3:
        raise ValueError(f"expected images shaped (..., C, H, W), got {tuple(pred.shape)}")
    lead = pred.shape[:-3]
    return pred.reshape(-1, *pred.shape[-3:]).float(), target.reshape(-1, *target.shape[-3:]).float(), lead


def _reduce(per_image: torch.Tensor, lead: torch.Size, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_image.reshape(lead)
    if reduction == "mean":
        return per_image.mean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float, reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, computed per image then reduced.

    pred, target: (..., C, H, W). data_range: max - min of the value range (2.0 for [-1, 1]). A pixel-exact pair
    gives +inf, as the definition says; the "mean" of a batch holding one is +inf too.
    """
    p, t, lead = _flatten_images(pred, target)
    mse = (p - t).pow(2).flatten(1).mean(dim=1)
    return _reduce(10.0 * torch.log10(data_range**2 / mse), lead, reduction)


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    """Normalised 2-D Gaussian as a depthwise conv weight (channels, 1, size, size)."""
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, size, size).contiguous()


def ssim(
    pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float], reduction: str = "mean"
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03.

    pred, target: (..., C, H, W) with H, W >= 6. value_range: (low, high) of the pixel values. Unlike PSNR, SSIM is
    not shift-invariant (its luminance term weighs mean differences against the mean level itself), so images are
    first mapped to [0, 1], the intensity scale SSIM is defined on: [-1, 1] images score as their [0, 1] versions.

    Borders are reflect-padded by 5 pixels and the SSIM map is averaged over every pixel and channel — torchmetrics'
    convention, so numbers compare with it. (Wang et al.'s reference code and scikit-image average only where the
    window fits inside the image, which differs slightly near edges.)
    """
    p, t, lead = _flatten_images(pred, target)
    low, high = value_range
    p, t = (p - low) / (high - low), (t - low) / (high - low)
    channels = p.shape[1]
    pad = SSIM_WINDOW // 2
    if min(p.shape[-2:]) <= pad:
        raise ValueError(f"SSIM needs images larger than {pad}x{pad}, got {tuple(p.shape[-2:])}")
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, channels, p.device)
    p, t = F.pad(p, (pad,) * 4, mode="reflect"), F.pad(t, (pad,) * 4, mode="reflect")
    # One grouped conv over the five maps (x, y, x², y², xy) instead of five separate calls.
    stacked = torch.cat([p, t, p * p, t * t, p * t], dim=1)
    stats = F.conv2d(stacked, window.repeat(5, 1, 1, 1), groups=5 * channels)
    mu_p, mu_t, e_pp, e_tt, e_pt = stats.split(channels, dim=1)
    # E[x²] − E[x]² can dip below 0 by rounding on flat regions; a variance cannot.
    var_p = (e_pp - mu_p**2).clamp(min=0.0)
    var_t = (e_tt - mu_t**2).clamp(min=0.0)
    cov = e_pt - mu_p * mu_t
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K · data range)² with the data range now 1
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return _reduce(ssim_map.flatten(1).mean(dim=1), lead, reduction)


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where torchvision looks for the ImageNet backbone lpips builds for `net` ('alex', 'vgg' or 'squeeze')."""
    import torchvision.models as tvm

    if net not in _LPIPS_BACKBONES:
        raise ValueError(f"net must be one of {sorted(_LPIPS_BACKBONES)}, got {net!r}")
    url = getattr(tvm, _LPIPS_BACKBONES[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


@functools.cache
def load_lpips(net: str = "alex") -> lpips.LPIPS | None:
    """The lpips model for `net` in eval mode, or None (with one warning per net) when its backbone is not on disk.

    A randomly initialised backbone is never used: its distances would look like numbers but mean nothing.
    """
    path = lpips_backbone_path(net)
    if not path.is_file():
        warnings.warn(
            f"LPIPS skipped: the {net} backbone weights are not at {path} (no download is attempted); "
            "place the torchvision checkpoint there or set TORCH_HOME to a cache that has it",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    import lpips

    return lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False)


@torch.no_grad()
def lpips_distance(
    pred: torch.Tensor, target: torch.Tensor, net: str = "alex", reduction: str = "mean"
) -> torch.Tensor | None:
    """LPIPS perceptual distance for images in [-1, 1], shaped (..., 3, H, W); None when the backbone is absent."""
    model = load_lpips(net)
    if model is None:
        return None
    p, t, lead = _flatten_images(pred, target)
    model.to(p.device)  # the cached model follows the images (a no-op once it is there)
    per_image = model(p, t).flatten()
    return _reduce(per_image, lead, reduction)


def image_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
    lpips_net: str = "alex",
    batch_size: int = 64,
) -> dict[str, float | None]:
    """Mean PSNR, SSIM and LPIPS over all images of (..., C, H, W) tensors, `batch_size` images at a time.

    value_range: (low, high) of the pixel values; LPIPS sees the images mapped to [-1, 1] and is None when its
    backbone weights are not on disk.
    """
    p, t, _ = _flatten_images(pred, target)
    low, high = value_range
    data_range = high - low
    to_pm1 = lambda x: (x - low) / data_range * 2.0 - 1.0
    have_lpips = load_lpips(lpips_net) is not None
    sums = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0}
    for start in range(0, p.shape[0], batch_size):
        pb, tb = p[start : start + batch_size], t[start : start + batch_size]
        sums["psnr"] += psnr(pb, tb, data_range, reduction="none").sum().item()
        sums["ssim"] += ssim(pb, tb, value_range, reduction="none").sum().item()
        if have_lpips:
            sums["lpips"] += lpips_distance(to_pm1(pb), to_pm1(tb), lpips_net, reduction="none").sum().item()
    n = p.shape[0]
    return {"psnr": sums["psnr"] / n, "ssim": sums["ssim"] / n, "lpips": sums["lpips"] / n if have_lpips else None}
