"""FID and KID between rendered and reference images, through torchmetrics, when Inception weights are on disk.

The weights are never downloaded. They are looked for at `$LN3DIFF_INCEPTION_WEIGHTS`, then in the torch hub cache
under the file name torch-fidelity downloads them to (`<torch hub dir>/checkpoints/weights-inception-2015-12-05-
6726825d.pth`). The Inception wrapper itself (`NoTrainInceptionV3`, pool3 features) comes from torchmetrics and needs
the `torch-fidelity` package. When either is missing, `compute_fid_kid` returns (None, reason) and the caller
records the reason instead of a number.

Features are extracted once per image and then fed to torchmetrics' FID and KID through an identity extractor, so
both metrics share one Inception pass; a stand-in extractor can be injected the same way (tests do).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

import utils  # noqa: F401  (installs the torchvision shim before torchmetrics imports torchvision)

WEIGHTS_ENV = "LN3DIFF_INCEPTION_WEIGHTS"
FIDELITY_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def find_inception_weights() -> tuple[Path | None, str | None]:
    """(path, None) when the FID Inception weights are on disk, else (None, why not)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        return (path, None) if path.is_file() else (None, f"${WEIGHTS_ENV}={env} is not a file")
    path = Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_WEIGHTS_FILE
    if path.is_file():
        return path, None
    return None, f"Inception weights not found: set ${WEIGHTS_ENV} or place {FIDELITY_WEIGHTS_FILE} at {path}"


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features (B, 2048) of images (B, 3, H, W) in [-1, 1] (quantised to uint8 first, as the
    reference FID implementations see images)."""

    num_features = 2048

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(weights_path)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(((images.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8))


def inception_feature_extractor() -> tuple[InceptionFeatures | None, str | None]:
    """(extractor, None) when weights and torch-fidelity are available, else (None, why not)."""
    path, reason = find_inception_weights()
    if path is None:
        return None, reason
    if importlib.util.find_spec("torch_fidelity") is None:
        return None, f"torch-fidelity is not installed (needed for the Inception network; weights found at {path})"
    return InceptionFeatures(path), None


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    return images.split(batch_size) if isinstance(images, torch.Tensor) else images


@torch.no_grad()
def extract_features(
    extractor: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int, device: torch.device
) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1], or an iterable of such batches → features (N, D) float64 on the CPU."""
    return torch.cat([extractor(batch.to(device)).double().cpu() for batch in _batches(images, batch_size)])


def fid_kid_from_features(
    real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """FID and KID (mean, std over subsets) from features real (N, D) and fake (M, D), N, M >= 2.

    The KID subset size is capped at min(N, M) so small evaluations still get a value. KID's random subsets are
    drawn from `seed` without touching the caller's global RNG state.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    identity = nn.Identity()
    identity.num_features = real.shape[1]  # tells torchmetrics the feature size without a dummy forward
    fid = FrechetInceptionDistance(feature=identity)
    subset_size = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        # Its "keeps all features in memory" warning is moot: the features are already in memory here.
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=identity, subsets=kid_subsets, subset_size=subset_size)
    for metric in (fid, kid):
        metric.update(real.double(), real=True)
        metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": fid.compute().item(),
        "kid_mean": kid_mean.item(),
        "kid_std": kid_std.item(),
        "num_real": len(real),
        "num_fake": len(fake),
    }


def compute_fid_kid(
    real: torch.Tensor | Iterable[torch.Tensor],
    fake: torch.Tensor | Iterable[torch.Tensor],
    feature_extractor: nn.Module | None = None,
    batch_size: int = 50,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[dict[str, float] | None, str | None]:
    """FID/KID of fake images against real ones → (metrics, None), or (None, reason) when they cannot be computed.

    real, fake: (N, 3, H, W) in [-1, 1], or iterables of such batches (for sets that do not fit in memory).
    feature_extractor: maps a batch to (B, D) features; None uses Inception-v3 pool3 when available.
    seed: for KID's random subsets. device: where the extractor runs; None picks CUDA when available.
    """
    if feature_extractor is None:
        feature_extractor, reason = inception_feature_extractor()
        if feature_extractor is None:
            return None, reason
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    feature_extractor = feature_extractor.to(device).eval()
    real_features = extract_features(feature_extractor, real, batch_size, device)
    fake_features = extract_features(feature_extractor, fake, batch_size, device)
    if min(len(real_features), len(fake_features)) < 2:
        return None, f"FID needs at least 2 images per set, got {len(real_features)} real and {len(fake_features)} fake"
    return fid_kid_from_features(real_features, fake_features, kid_subsets, kid_subset_size, seed), None
