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
from tqdm import tqdm

from datasets.multiview import MultiViewConfig, encoder_channels, record_views, resize_images, target_channels
from datasets.stores.base import ObjectStore
from utils import distributed
from utils.training import ResumableBatchSampler


@dataclass
class DeviceViewBank:
    """Views of N objects on one device.

    rgb `(N, V, 3, R, R)` uint8 on white; alpha `(N, V, 1, R, R)` uint8; depth `(N, V, 1, R, R)` float16 camera-z
    (0 for background); cameras `(N, V, 25)` float32; view_ids `(V,)` rig indices (shared by every object);
    captions, categories, object_ids: one per object. Foreground boxes are computed per batch, on the device.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    cameras: torch.Tensor
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
        return sum(t.numel() * t.element_size() for t in (self.rgb, self.alpha, self.depth, self.cameras))

    # -- filling -------------------------------------------------------------------------------------------------

    @classmethod
    def _from_parts(cls, parts: list[dict], view_ids: Sequence[int]) -> DeviceViewBank:
        cat = {k: torch.cat([p[k] for p in parts]) for k in ("rgb", "alpha", "depth", "cameras")}
        meta = {k: [x for p in parts for x in p[k]] for k in ("captions", "categories", "object_ids")}
        return cls(view_ids=tuple(int(i) for i in view_ids), **cat, **meta)

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
        parts, rendered = [], []
        bar = tqdm(total=num_objects, desc="rendering objects onto the device", unit="obj", disable=not progress)
        for specs, cameras, out in render_outputs(indices, config):
            rendered += [s.index for s in specs]
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
        return bank.subset(sorted(range(len(bank)), key=rendered.__getitem__))

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
            rgb, alpha, depth = (resize_images(x, resolution, mode)[None].to(device)
                                 for x, mode in zip(record_views(record), ("bilinear", "bilinear", "nearest")))
            part = cls._quantise(rgb, alpha, depth)
            part.update(cameras=torch.from_numpy(record.cameras).float()[None].to(device),
                        captions=[record.caption], categories=[record.category], object_ids=[record.object_id])
            parts.append(part)
        if not parts:
            raise ValueError(f"{store.location} holds no objects; check --data")
        return cls._from_parts(parts, view_ids)

    def subset(self, indices: Sequence[int]) -> DeviceViewBank:
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        pick = lambda xs: [xs[int(i)] for i in indices]  # noqa: E731
        return DeviceViewBank(self.rgb[idx], self.alpha[idx], self.depth[idx], self.cameras[idx], self.view_ids,
                              pick(self.captions), pick(self.categories), pick(self.object_ids))

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
        b = len(indices)
        obj = torch.as_tensor(list(indices), dtype=torch.long, device=dev)[:, None]
        enc_idx = torch.as_tensor([enc_pos] * b, dtype=torch.long, device=dev)  # (B, E)
        tgt_idx = torch.as_tensor(tgt, dtype=torch.long, device=dev)  # (B, T)

        def views(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            """`(N, V, …)` bank tensor → the chosen views of the batch's objects, flattened to `(B·k, …)`."""
            return x[obj, idx].flatten(0, 1)

        enc_cams = self.cameras[obj, enc_idx]
        enc_input = encoder_channels(views(self.rgb, enc_idx).float() / 255, views(self.depth, enc_idx).float(),
                                     enc_cams.flatten(0, 1), config.encoder_resolution, config.encoder_rgb)
        targets = target_channels(views(self.rgb, tgt_idx).float() / 255, views(self.alpha, tgt_idx).float() / 255,
                                  views(self.depth, tgt_idx).float(), config.render_resolution)
        return {"enc_input": enc_input.unflatten(0, (b, -1)), "enc_cameras": enc_cams,
                **{k: t.unflatten(0, (b, -1)) for k, t in targets.items()},
                "target_cameras": self.cameras[obj, tgt_idx],
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
