"""A view bank resident in accelerator memory: every view of N objects as device tensors, batched on the device.

Why: once the training step runs at tens of steps per second, a CPU loader that decodes images and computes Plücker
rays per sample cannot keep up (docs/BENCHMARKS.md). The bank is filled once — procedural objects rendered straight
on the GPU, or a store read once — and a batch is then a few gathers plus the Plücker rays of the encoder cameras,
all on the device. Memory: 6 bytes per pixel (uint8 RGB on white and alpha, float16 depth), about 1.2 MB per object
at 12 views of 128², so 10,000 objects take 12 GB.

Batches have the layout of `datasets.multiview.MultiViewDataset` + `collate_samples` (enc_input, target_rgb,
target_depth, target_alpha, target_cameras, target_bbox, caption, category, object_id) and follow the same sampling
rules: fixed encoder views, `num_target_views` distinct random targets per sample (with replacement only when an
object has fewer views), drawn from the sample's own seed, so a batch depends only on (seed, batch index) and a
resumed run sees the batches an uninterrupted one would.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from datasets.multiview import IMAGENET_MEAN, IMAGENET_STD, MultiViewConfig
from datasets.stores.base import ObjectStore
from nsr.cameras import plucker_image
from utils import distributed
from utils.training import ResumableBatchSampler


def _resize(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """`(N, C, H, W)` → `(N, C, size, size)` with the dataset's filters; identity when already that size."""
    if images.shape[-1] == size:
        return images
    if mode == "nearest":
        return F.interpolate(images, size=(size, size), mode="nearest-exact")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def foreground_boxes(alpha: torch.Tensor) -> torch.Tensor:
    """Inclusive foreground boxes [top, left, bottom, right] of alpha `(N, H, W)` (alpha > 0), `(N, 4)` int64 on
    alpha's device; a view without foreground gets the whole image (as `datasets.record.foreground_bbox`)."""
    n, h, w = alpha.shape
    fg = alpha > 0
    rows, cols = fg.any(2), fg.any(1)
    ar_h = torch.arange(h, device=alpha.device)
    ar_w = torch.arange(w, device=alpha.device)
    top = torch.where(rows, ar_h, h).amin(1)
    bottom = torch.where(rows, ar_h, -1).amax(1)
    left = torch.where(cols, ar_w, w).amin(1)
    right = torch.where(cols, ar_w, -1).amax(1)
    boxes = torch.stack([top, left, bottom, right], 1)
    empty = ~rows.any(1)
    whole = torch.tensor([0, 0, h - 1, w - 1], device=alpha.device)
    return torch.where(empty[:, None], whole, boxes)


@dataclass
class DeviceViewBank:
    """Views of N objects on one device.

    rgb `(N, V, 3, R, R)` uint8 on white; alpha `(N, V, 1, R, R)` uint8; depth `(N, V, 1, R, R)` float16 camera-z
    (0 for background); cameras `(N, V, 25)` float32; bbox `(N, V, 4)` int64 at R; view_ids `(V,)` rig indices
    (shared by every object); captions, categories, object_ids: one per object.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    cameras: torch.Tensor
    bbox: torch.Tensor
    view_ids: tuple[int, ...]
    captions: list[str]
    categories: list[str]
    object_ids: list[str]

    def __len__(self) -> int:
        return self.rgb.shape[0]

    @property
    def device(self) -> torch.device:
        return self.rgb.device

    @property
    def resolution(self) -> int:
        return self.rgb.shape[-1]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.rgb, self.alpha, self.depth, self.cameras, self.bbox))

    # -- filling -------------------------------------------------------------------------------------------------

    @classmethod
    def _from_parts(cls, parts: list[dict], view_ids: Sequence[int]) -> DeviceViewBank:
        cat = {k: torch.cat([p[k] for p in parts]) for k in ("rgb", "alpha", "depth", "cameras")}
        n, v, _, r, _ = cat["alpha"].shape
        bbox = foreground_boxes(cat["alpha"].reshape(n * v, r, r)).reshape(n, v, 4)
        meta = {k: [x for p in parts for x in p[k]] for k in ("captions", "categories", "object_ids")}
        return cls(bbox=bbox, view_ids=tuple(int(i) for i in view_ids), **cat, **meta)

    @staticmethod
    def _quantise(rgb_on_white: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor) -> dict:
        """Float images `(B, V, C, R, R)` in [0, 1] (depth in scene units) → the bank's storage types."""
        return {"rgb": (rgb_on_white.clamp(0, 1) * 255).round().to(torch.uint8),
                "alpha": (alpha.clamp(0, 1) * 255).round().to(torch.uint8), "depth": depth.to(torch.float16)}

    @classmethod
    def from_procedural(cls, num_objects: int, seed: int = 0, resolution: int = 128,
                        view_ids: Sequence[int] | None = None, device: str | torch.device = "cuda",
                        batch_objects: int = 64, start_index: int = 0, progress: bool = True) -> DeviceViewBank:
        """Render procedural objects `start_index … start_index + num_objects − 1` of dataset `seed` on `device`."""
        from datasets.procedural.pipeline import GenerationConfig, procedural_object_id, render_outputs
        from datasets.rig import CHUNK_VIEWS

        view_ids = tuple(view_ids or CHUNK_VIEWS)
        config = GenerationConfig(seed=seed, resolution=resolution, view_ids=view_ids, device=str(device),
                                  batch_objects=batch_objects)
        indices = range(start_index, start_index + num_objects)
        parts = []
        bar = tqdm(total=num_objects, desc="rendering objects onto the device", unit="obj", disable=not progress)
        for specs, cameras, out in render_outputs(indices, config):
            part = cls._quantise(out.rgb, out.alpha, out.depth)
            part.update(cameras=cameras.to(device=device, dtype=torch.float32),
                        captions=[s.labels["captions"][0] for s in specs],
                        categories=[s.category for s in specs],
                        object_ids=[procedural_object_id(s) for s in specs])
            parts.append(part)
            bar.update(len(specs))
        bar.close()
        bank = cls._from_parts(parts, view_ids)
        # render_outputs groups objects by category; put them back in index order
        order = sorted(range(len(bank)), key=lambda k: int(bank.object_ids[k].rsplit("/", 1)[1]))
        return bank.subset(order)

    @classmethod
    def from_store(cls, store: ObjectStore, resolution: int, device: str | torch.device = "cuda",
                   progress: bool = True) -> DeviceViewBank:
        """Read every object of `store` once (all its views; every object must have the same view ids)."""
        parts, view_ids = [], None
        for index in tqdm(range(len(store)), desc="loading the store onto the device", unit="obj",
                          disable=not progress):
            record = store.read(index)
            if view_ids is None:
                view_ids = tuple(int(v) for v in record.view_ids)
            elif tuple(int(v) for v in record.view_ids) != view_ids:
                raise ValueError(f"object {record.object_id} has views {record.view_ids.tolist()}, the first object "
                                 f"{list(view_ids)}; a device bank needs the same views for every object")
            rgb = torch.from_numpy(record.rgb_on_white()).permute(0, 3, 1, 2).float()
            alpha = torch.from_numpy(record.alpha)[:, None].float()
            depth = torch.from_numpy(record.depth)[:, None].float()
            rgb, alpha = _resize(rgb, resolution, "bilinear"), _resize(alpha, resolution, "bilinear")
            depth = _resize(depth, resolution, "nearest")
            part = cls._quantise(rgb[None].to(device), alpha[None].to(device), depth[None].to(device))
            part.update(cameras=torch.from_numpy(record.cameras).float()[None].to(device),
                        captions=[record.caption], categories=[record.category], object_ids=[record.object_id])
            parts.append(part)
        if not parts:
            raise ValueError(f"{store.location} holds no objects; check --data")
        return cls._from_parts(parts, view_ids)

    def subset(self, indices: Sequence[int]) -> DeviceViewBank:
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        pick = lambda xs: [xs[int(i)] for i in indices]  # noqa: E731
        return DeviceViewBank(self.rgb[idx], self.alpha[idx], self.depth[idx], self.cameras[idx], self.bbox[idx],
                              self.view_ids, pick(self.captions), pick(self.categories), pick(self.object_ids))

    # -- batching ------------------------------------------------------------------------------------------------

    def _positions(self, views: Sequence[int]) -> list[int]:
        where = {v: k for k, v in enumerate(self.view_ids)}
        missing = [v for v in views if v not in where]
        if missing:
            raise KeyError(f"the bank holds views {list(self.view_ids)}, not {missing}")
        return [where[v] for v in views]

    def batch(self, indices: Sequence[int], seeds: Sequence[int], config: MultiViewConfig) -> dict:
        """The stage-1 batch of objects `indices`, each sample's random target views drawn from its seed."""
        if config.random_encoder_views:
            raise ValueError("the device bank draws fixed encoder views; drop --random-encoder-views")
        enc_pos = self._positions(config.encoder_views)
        v = len(self.view_ids)
        if config.target_views is not None:
            tgt = [self._positions(config.target_views)] * len(indices)
        else:
            tgt = []
            for s in seeds:
                g = torch.Generator().manual_seed(int(s))
                if v >= config.num_target_views:
                    tgt.append(torch.randperm(v, generator=g)[:config.num_target_views].tolist())
                else:
                    tgt.append(torch.randint(0, v, (config.num_target_views,), generator=g).tolist())
        dev = self.device
        obj = torch.as_tensor(list(indices), dtype=torch.long, device=dev)
        enc_idx = torch.as_tensor(enc_pos, dtype=torch.long, device=dev)
        tgt_idx = torch.as_tensor(tgt, dtype=torch.long, device=dev)  # (B, T)
        b, ne, nt = len(indices), len(enc_pos), config.num_target_views

        def take(x: torch.Tensor, views: torch.Tensor) -> torch.Tensor:  # views (E,) or (B, T)
            if views.dim() == 1:
                return x[obj][:, views]
            return x[obj[:, None], views]

        # encoder input: RGB on white, Plücker rays of the encoder cameras (float64, as the CPU dataset), depth
        res_e = config.encoder_resolution
        enc_cams = take(self.cameras, enc_idx)
        rgb = take(self.rgb, enc_idx).flatten(0, 1).float() / 255
        rgb = _resize(rgb, res_e, "bilinear")
        if config.encoder_rgb == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=dev)[:, None, None]
            rgb = (rgb - mean) / torch.tensor(IMAGENET_STD, device=dev)[:, None, None]
        else:
            rgb = rgb * 2 - 1
        depth = _resize(take(self.depth, enc_idx).flatten(0, 1).float(), res_e, "nearest")
        rays = plucker_image(enc_cams.flatten(0, 1).double(), res_e).float()
        enc_input = torch.cat([rgb, rays, depth], 1).unflatten(0, (b, ne))

        res_t = config.render_resolution
        t_rgb = take(self.rgb, tgt_idx).flatten(0, 1).float() / 255
        t_alpha = take(self.alpha, tgt_idx).flatten(0, 1).float() / 255
        t_depth = take(self.depth, tgt_idx).flatten(0, 1).float()
        bbox = take(self.bbox, tgt_idx)
        if res_t != self.resolution:
            t_rgb, t_alpha = _resize(t_rgb, res_t, "bilinear"), _resize(t_alpha, res_t, "bilinear").clamp(0, 1)
            t_depth = _resize(t_depth, res_t, "nearest")
            bbox = foreground_boxes(t_alpha[:, 0]).reshape(b, nt, 4)
        unflat = lambda x: x.unflatten(0, (b, nt))  # noqa: E731
        return {"enc_input": enc_input, "enc_cameras": enc_cams,
                "target_rgb": unflat(t_rgb * 2 - 1), "target_depth": unflat(t_depth), "target_alpha": unflat(t_alpha),
                "target_cameras": take(self.cameras, tgt_idx), "target_bbox": bbox,
                "caption": [self.captions[i] for i in indices], "category": [self.categories[i] for i in indices],
                "object_id": [self.object_ids[i] for i in indices]}

    def batches(self, batch_size: int, seed: int, config: MultiViewConfig, start_batch: int = 0) -> Iterator[dict]:
        """This rank's endless batches after `start_batch` global batches, in `ResumableBatchSampler`'s order."""
        sampler = ResumableBatchSampler(len(self), batch_size, seed, rank=distributed.rank(),
                                        world_size=distributed.world_size(), start_batch=start_batch)
        for keys in sampler:
            yield self.batch([k.index for k in keys], [k.seed for k in keys], config)


def bank_summary(bank: DeviceViewBank) -> str:
    counts = dict(zip(*np.unique(bank.categories, return_counts=True)))
    return (f"{len(bank)} objects × {len(bank.view_ids)} views at {bank.resolution}² on {bank.device} "
            f"({bank.nbytes / 2**30:.2f} GiB; {len(counts)} categories)")
