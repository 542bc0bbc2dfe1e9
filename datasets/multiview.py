"""Stage-1 Dataset: encoder views and target views of one object per sample, from any store.

A sample (docs/ARCHITECTURE.md, "Stage-1 batch", without the batch dimension):

    enc_input       (V, 10, He, He)  RGB on white ImageNet-normalised (3), Plücker o×d, d (6), camera-z depth (1)
    enc_cameras     (V, 25)
    target_rgb      (T, 3, R, R)     [-1, 1] on white
    target_depth    (T, 1, R, R)     camera-z, 0 for background
    target_alpha    (T, 1, R, R)     [0, 1]
    target_cameras  (T, 25)
    target_bbox     (T, 4)           inclusive foreground box [top, left, bottom, right] at R (alpha > 0)
    caption, category, object_id     str

Views are named by G-Objaverse rig index. Random choices (random encoder views, random targets) come from a
generator seeded by (seed, epoch, index), so a sample is reproducible in any worker; call `set_epoch` to vary them.
Images are resized from the store resolution with antialiased bilinear filtering (depth with nearest, as the
release does), and not at all when the resolutions agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from datasets.collate import collate_samples
from datasets.errors import SkippingDataset
from datasets.record import ObjectRecord, foreground_boxes
from datasets.rig import ENCODER_VIEWS
from datasets.stores.base import ObjectStore
from nsr.cameras import plucker_image

__all__ = ["MultiViewConfig", "MultiViewDataset", "collate_samples", "encoder_channels", "encoder_input",
           "record_views", "resize_images", "target_channels", "target_tensors"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MultiViewConfig:
    encoder_views: tuple[int, ...] = ENCODER_VIEWS   # rig ids, used unless random_encoder_views
    random_encoder_views: bool = False               # training: len(encoder_views) random distinct views instead
    encoder_resolution: int = 256
    render_resolution: int = 128
    num_target_views: int = 4
    target_views: tuple[int, ...] | None = None      # fixed target rig ids; None: random distinct views
    encoder_rgb: str = "signed"  # [-1, 1] as the golden fixture (it overrides spec §2.2); "imagenet" as spec §2.2
    seed: int = 0
    skip_bad: bool = False                           # unreadable samples are logged, counted and replaced

    def __post_init__(self):
        if self.encoder_rgb not in ("imagenet", "signed"):
            raise ValueError(f"encoder_rgb must be 'imagenet' or 'signed', got {self.encoder_rgb!r}")
        if self.target_views is not None and len(self.target_views) != self.num_target_views:
            raise ValueError(f"target_views lists {len(self.target_views)} views but num_target_views is "
                             f"{self.num_target_views}")


def resize_images(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """`(N, C, H, W)` → `(N, C, size, size)` with antialiased bilinear filtering (`mode` "nearest": nearest-exact,
    for depth); identity when already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if mode == "nearest":
        return F.interpolate(images, size=(size, size), mode="nearest-exact")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def encoder_channels(rgb: torch.Tensor, depth: torch.Tensor, cameras: torch.Tensor, resolution: int,
                     rgb_mode: str = "imagenet") -> torch.Tensor:
    """The 10-channel encoder input `(V, 10, He, He)` from views on any device: RGB on white `(V, 3, H, W)` in
    [0, 1], camera-z depth `(V, 1, H, W)`, cameras `(V, 25)` (Plücker rays from them in float64)."""
    rgb = resize_images(rgb, resolution, "bilinear")
    if rgb_mode == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=rgb.device)[:, None, None]
        rgb = (rgb - mean) / torch.tensor(IMAGENET_STD, device=rgb.device)[:, None, None]
    else:
        rgb = rgb * 2.0 - 1.0
    depth = resize_images(depth, resolution, "nearest")
    plucker = plucker_image(cameras.double(), resolution).float()
    return torch.cat([rgb, plucker, depth], dim=1)


def target_channels(rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor,
                    resolution: int) -> dict[str, torch.Tensor]:
    """Target images at `resolution` from views on any device (RGB on white in [0, 1] `(T, 3, H, W)`, alpha and
    depth `(T, 1, H, W)`): target_rgb in [-1, 1], target_depth, target_alpha, target_bbox (from the resized alpha)."""
    alpha = resize_images(alpha, resolution, "bilinear").clamp(0.0, 1.0)
    return {"target_rgb": resize_images(rgb, resolution, "bilinear") * 2.0 - 1.0,
            "target_depth": resize_images(depth, resolution, "nearest"), "target_alpha": alpha,
            "target_bbox": foreground_boxes(alpha[:, 0])}


def record_views(record: ObjectRecord) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB on white `(V, 3, H, W)`, alpha and depth `(V, 1, H, W)` of a record, float32."""
    return (torch.from_numpy(record.rgb_on_white()).permute(0, 3, 1, 2).float(),
            torch.from_numpy(record.alpha)[:, None].float(), torch.from_numpy(record.depth)[:, None].float())


def encoder_input(record: ObjectRecord, resolution: int, rgb_mode: str = "imagenet") -> torch.Tensor:
    """The 10-channel encoder input of every view of `record`, `(V, 10, He, He)`."""
    rgb, _, depth = record_views(record)
    return encoder_channels(rgb, depth, torch.from_numpy(record.cameras), resolution, rgb_mode)


def target_tensors(record: ObjectRecord, resolution: int) -> dict[str, torch.Tensor]:
    """Target images of every view of `record` at `resolution` (keys as in the module docstring)."""
    return {**target_channels(*record_views(record), resolution),
            "target_cameras": torch.from_numpy(record.cameras).float()}


class MultiViewDataset(SkippingDataset):
    """Stage-1 samples from an `ObjectStore` (see the module docstring for the sample layout)."""

    def __init__(self, store: ObjectStore, config: MultiViewConfig | None = None):
        super().__init__()
        self.store = store
        self.config = config or MultiViewConfig()
        self.location = store.location

    def __len__(self) -> int:
        return len(self.store)

    def _choose_views(self, available: np.ndarray, rng: np.random.Generator) -> list[int]:
        cfg = self.config
        available = np.sort(available)  # stores list views in different orders; draws must not depend on it
        if cfg.random_encoder_views:
            if len(available) < len(cfg.encoder_views):
                raise ValueError(f"{len(cfg.encoder_views)} random encoder views requested, object has "
                                 f"{len(available)}")
            enc = [int(v) for v in rng.choice(available, size=len(cfg.encoder_views), replace=False)]
        else:
            enc = list(cfg.encoder_views)
        if cfg.target_views is not None:
            targets = list(cfg.target_views)
        else:
            replace = len(available) < cfg.num_target_views
            targets = [int(v) for v in rng.choice(available, size=cfg.num_target_views, replace=replace)]
        return enc + targets

    def _sample(self, index: int) -> dict:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.epoch, index])
        record = self.store.read(index, lambda available: self._choose_views(available, rng))
        num_enc = len(cfg.encoder_views)
        # views may repeat between the encoder and target groups; the store returns each requested position
        enc = record.select(record.view_ids[:num_enc])
        targets = record.select(record.view_ids[num_enc:])
        sample = {"enc_input": encoder_input(enc, cfg.encoder_resolution, cfg.encoder_rgb),
                  "enc_cameras": torch.from_numpy(enc.cameras).float()}
        sample.update(target_tensors(targets, cfg.render_resolution))
        sample.update(caption=record.caption, category=record.category, object_id=record.object_id)
        return sample


