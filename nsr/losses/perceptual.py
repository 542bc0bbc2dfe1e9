"""LPIPS perceptual loss through the `lpips` package, with its ImageNet backbone read from a local file.

The `lpips` wheel ships only the small linear heads; the AlexNet/VGG backbone comes from torchvision's download
cache. Offline there may be no backbone, and LPIPS with a random backbone is meaningless, so `build_lpips` then
warns once and returns None: the caller turns the term off instead of training against noise.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

import utils  # noqa: F401  makes torchvision (imported by lpips) importable next to a CPU-only torch

# torchvision's file names for the ImageNet weights lpips uses (`<hub dir>/checkpoints/<name>`)
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}

_warned: set[str] = set()


def default_backbone_path(net: str) -> Path:
    """Where torchvision caches the backbone: `$TORCH_HOME/hub/checkpoints/<file>` (~/.cache/torch by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def missing_backbone_message(net: str, path: Path) -> str:
    return (f"LPIPS is OFF: the {net} backbone weights are not at {path}; copy torchvision's "
            f"{BACKBONE_FILES[net]} there or pass --lpips-backbone PATH (set --lpips-weight 0 to silence this)")


class LPIPSLoss(nn.Module):
    """Mean LPIPS distance of images `(N, 3, H, W)` in [-1, 1]. Frozen and always in eval mode."""

    def __init__(self, net: str = "alex", backbone_path: str | os.PathLike | None = None):
        super().__init__()
        if net not in BACKBONE_FILES:
            raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(BACKBONE_FILES)}")
        import lpips

        path = Path(backbone_path) if backbone_path is not None else default_backbone_path(net)
        with warnings.catch_warnings():
            # lpips builds torchvision models with the deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            # pnet_rand=True: build the backbone without downloading, then load the local weights below
            self.model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        try:
            backbone = torch.load(path, map_location="cpu", weights_only=True)
            # lpips regroups torchvision's `features.<i>` layers into `slice<k>.<i>`, keeping the layer index i
            ours = self.model.net.state_dict()
            self.model.net.load_state_dict({name: backbone[f"features.{name.split('.', 1)[1]}"] for name in ours})
        except Exception as e:
            reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            raise RuntimeError(f"LPIPS backbone {path} is not a readable torchvision {net} state dict ({reason}); "
                               f"replace it with torchvision's {BACKBONE_FILES[net]}") from e
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # dropout in the linear heads must stay off
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model(pred, target, normalize=False).mean()


def build_lpips(net: str = "alex", backbone_path: str | os.PathLike | None = None) -> LPIPSLoss | None:
    """LPIPSLoss when the backbone file exists, else None after one warning (per backbone file) naming the fix."""
    path = Path(backbone_path) if backbone_path is not None else default_backbone_path(net)
    if not path.is_file():
        key = str(path)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(missing_backbone_message(net, path), stacklevel=2)
        return None
    return LPIPSLoss(net, path)
