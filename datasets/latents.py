"""The stage-2 latent store: one folder per object, written after VAE latent extraction, read for diffusion training.

    <root>/<object_id>/latent.npy        float32 (12, 32, 32) posterior sample, channel-major (k = c·3 + plane)
                      /latent_mean.npy   float32 (12, 32, 32) posterior mean
                      /cond_00.png …     RGB condition images on white (uint8)
                      /cond_cameras.npy  float32 (K, 25) their cameras
                      /meta.json         {"object_id", "caption", "labels"}; written last, marks the folder complete

Mirrors the release's `{mv_latent_dir}/{ins}/latent.npy` (spec §10.3), with the condition views stored next to the
latent instead of in a second WebDataset. Every file is written to a temporary name and renamed, so a crash never
leaves a half-written file behind a meta.json.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.collate import collate_samples
from datasets.errors import BadSampleError, SkippingDataset
from datasets.stores.codecs import decode_image, encode_png

__all__ = ["LatentDataset", "LatentDatasetConfig", "LatentStoreWriter", "collate_samples"]

META_FILE = "meta.json"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class LatentStoreWriter:
    """Adds objects to a latent store (an existing store is extended; re-adding an object replaces it)."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def add(self, object_id: str, latent, latent_mean, caption: str, labels: dict | None = None,
            cond_images=None, cond_cameras=None) -> None:
        """latent, latent_mean `(3C, h, w)` (release: (12, 32, 32)); cond_images `(K, 3, H, W)` uint8;
        cond_cameras `(K, 25)`."""
        latent = _as_numpy(latent).astype(np.float32)
        latent_mean = _as_numpy(latent_mean).astype(np.float32)
        if latent.ndim != 3 or latent.shape[0] % 3:
            raise ValueError(f"latent of {object_id} has shape {latent.shape}, expected (3·C, h, w)")
        if latent_mean.shape != latent.shape:
            raise ValueError(f"latent_mean of {object_id} has shape {latent_mean.shape}, expected {latent.shape}")
        folder = self.root / object_id
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "latent.npy", _npy_bytes(latent))
        _atomic_write(folder / "latent_mean.npy", _npy_bytes(latent_mean))
        if cond_images is not None:
            images = _as_numpy(cond_images)
            cameras = _as_numpy(cond_cameras).astype(np.float32)
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"cond_images of {object_id} must be uint8 (K, 3, H, W), got {images.dtype} "
                                 f"{images.shape}")
            if cameras.shape != (len(images), 25):
                raise ValueError(f"cond_cameras of {object_id} must be ({len(images)}, 25), got {cameras.shape}")
            for k, image in enumerate(images):
                _atomic_write(folder / f"cond_{k:02d}.png", encode_png(np.ascontiguousarray(image.transpose(1, 2, 0))))
            _atomic_write(folder / "cond_cameras.npy", _npy_bytes(cameras))
        meta = {"object_id": object_id, "caption": caption, "labels": labels or {}}
        _atomic_write(folder / META_FILE, json.dumps(meta).encode())
        self.count += 1

    def close(self) -> None:
        """Nothing is buffered; kept so the writer reads like the store writers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class LatentDatasetConfig:
    train: bool = True          # random condition view and caption phrasing; eval: eval_view and canonical caption
    use_mean: bool = False      # the posterior mean instead of the stored sample
    eval_view: int = 0
    seed: int = 0
    skip_bad: bool = False


class LatentDataset(SkippingDataset):
    """Samples dict(latent (12, 32, 32), caption, cond_image (3, H, W) in [-1, 1], cond_camera (25,), labels,
    object_id). Objects without condition images yield no cond_image/cond_camera keys."""

    sample_name = "latent sample"
    store_name = "latent store"

    def __init__(self, root: str | os.PathLike, config: LatentDatasetConfig | None = None):
        super().__init__()
        self.root = Path(root)
        self.location = str(self.root)
        self.config = config or LatentDatasetConfig()
        if not self.root.is_dir():
            raise FileNotFoundError(f"latent store {self.root} does not exist")
        self.objects = sorted(p.parent for p in self.root.rglob(META_FILE))
        if not self.objects:
            raise FileNotFoundError(f"no */{META_FILE} under {self.root}: not a latent store")

    def __len__(self) -> int:
        return len(self.objects)

    def _load_npy(self, path: Path) -> np.ndarray:
        if not path.exists():
            raise BadSampleError(str(path), "latent store file is missing")
        try:
            return np.load(path)
        except (ValueError, OSError, EOFError) as error:
            raise BadSampleError(str(path), f"not a readable .npy file ({error})") from None

    def _sample(self, index: int) -> dict:
        folder = self.objects[index]
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.epoch, index])
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except ValueError as error:
            raise BadSampleError(str(folder / META_FILE), f"not valid JSON ({error})") from None
        latent_path = folder / ("latent_mean.npy" if cfg.use_mean else "latent.npy")
        latent = self._load_npy(latent_path).astype(np.float32)
        if latent.ndim != 3 or latent.shape[0] % 3:
            raise BadSampleError(str(latent_path), f"latent has shape {latent.shape}, expected (3·C, h, w)")
        labels = meta.get("labels", {})
        captions = labels.get("captions") or [meta.get("caption", "")]
        caption = captions[int(rng.integers(len(captions)))] if cfg.train else meta.get("caption", captions[0])
        sample = {"latent": torch.from_numpy(latent), "caption": caption, "labels": labels,
                  "object_id": meta.get("object_id", folder.relative_to(self.root).as_posix())}
        if (folder / "cond_cameras.npy").exists():
            cameras = self._load_npy(folder / "cond_cameras.npy").astype(np.float32)
            view = int(rng.integers(len(cameras))) if cfg.train else min(cfg.eval_view, len(cameras) - 1)
            image_path = folder / f"cond_{view:02d}.png"
            if not image_path.exists():
                raise BadSampleError(str(image_path), "condition image is missing")
            try:
                image = decode_image(image_path.read_bytes())
            except ValueError as error:
                raise BadSampleError(str(image_path), str(error)) from None
            sample["cond_image"] = torch.from_numpy(image[..., :3].copy()).permute(2, 0, 1).float() / 127.5 - 1.0
            sample["cond_camera"] = torch.from_numpy(cameras[view])
        return sample

