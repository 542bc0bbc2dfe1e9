"""The G-Objaverse raw render layout (spec §10.1), read and written.

    <root>/<category>/<dict_id>/<ins_id>/campos_512_v4/<view:05d>/<view:05d>.png      RGBA, straight alpha
                                                                 /<view:05d>.json     camera (below)
                                                                 /<view:05d>_nd.npz   float16 (H, W, 4)
    <root>/<category>/<dict_id>/<ins_id>/meta.json     labels and captions (ours; absent in G-Objaverse)
    <root>/text_captions_cap3d.json                    Cap3D captions keyed "<dict_id>/<ins_id>"

Camera JSON: `origin`, `x`, `y`, `z` (cam2world columns, OpenCV axes), `x_fov`, `y_fov` (radians; the normalised
focal is 0.5 / tan(fov / 2), principal point at the centre), `bbox`, `scale`, `offset`, `max_depth`.

Deviation: G-Objaverse stores normal and depth as `_nd.exr` (normal in RGB, depth in A). EXR needs libraries
outside our dependencies, so we write the same 4 channels, float16 like a half EXR, as array `nd` of a compressed
`.npz` (depth = camera-space z, 0 for background; the zero background compresses ~20x). A real `_nd.exr` is
reported as unsupported: imageio has no EXR backend without extra packages. (Converting one: its alpha channel is
depth; the released loader treats depth below camera distance − 0.867 as background.)
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from datasets.errors import BadSampleError
from datasets.record import ObjectRecord
from datasets.stores.base import ObjectStore, StoreWriter, ViewSelector
from datasets.stores.cap3d import CAPTION_FILE, caption_key, read_captions, write_captions
from datasets.stores.codecs import decode_image, encode_png, rgba_uint8, split_rgba
from nsr.cameras import K22

VIEW_FOLDER = "campos_512_v4"
META_FILE = "meta.json"


def camera_json(camera: np.ndarray, max_depth: float = 5.0) -> dict:
    """A 25-vector → the G-Objaverse camera dictionary."""
    c2w = camera[:16].reshape(4, 4).astype(np.float64)
    K = camera[16:].reshape(3, 3).astype(np.float64)
    return {
        "origin": c2w[:3, 3].tolist(), "x": c2w[:3, 0].tolist(), "y": c2w[:3, 1].tolist(), "z": c2w[:3, 2].tolist(),
        "x_fov": 2.0 * math.atan(0.5 / K[0, 0]), "y_fov": 2.0 * math.atan(0.5 / K[1, 1]),
        "bbox": [[-0.45, -0.45, -0.45], [0.45, 0.45, 0.45]], "scale": 1.0, "offset": [0.0, 0.0, 0.0],
        "max_depth": max_depth,
    }


def camera_from_json(data: dict) -> np.ndarray:
    """The G-Objaverse camera dictionary → a float32 25-vector (cx = cy = 0.5, k22 = 1/256)."""
    c2w = np.eye(4)
    for column, key in enumerate(("x", "y", "z", "origin")):
        c2w[:3, column] = data[key]
    fx, fy = 0.5 / math.tan(data["x_fov"] / 2.0), 0.5 / math.tan(data["y_fov"] / 2.0)
    K = np.array([[fx, 0.0, 0.5], [0.0, fy, 0.5], [0.0, 0.0, K22]])
    return np.concatenate([c2w.reshape(-1), K.reshape(-1)]).astype(np.float32)


def _split_id(object_id: str) -> tuple[str, str, str]:
    parts = object_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"object id {object_id!r} is not of the form <category>/<dict_id>/<ins_id>")
    return parts[0], parts[1], parts[2]


class GObjaverseWriter(StoreWriter):
    """Writes records into a G-Objaverse tree; an existing tree is extended (captions merged)."""

    def __init__(self, root: str | os.PathLike, workers: int = 4):
        super().__init__(workers)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.captions: dict[str, str] = {}

    def _encode(self, record: ObjectRecord) -> tuple[str, str]:
        instance = self.root.joinpath(*_split_id(record.object_id))
        for k, view in enumerate(record.view_ids):
            folder = instance / VIEW_FOLDER / f"{int(view):05d}"
            folder.mkdir(parents=True, exist_ok=True)
            stem = folder / f"{int(view):05d}"
            (stem.parent / f"{stem.name}.png").write_bytes(encode_png(rgba_uint8(record.color[k], record.alpha[k])))
            with open(stem.parent / f"{stem.name}.json", "w") as f:
                json.dump(camera_json(record.cameras[k]), f)
            normal = record.normal[k] if record.normal is not None else np.zeros(record.color[k].shape, np.float32)
            nd = np.concatenate([normal, record.depth[k][..., None]], axis=-1).astype(np.float16)
            np.savez_compressed(stem.parent / f"{stem.name}_nd.npz", nd=nd)
        with open(instance / META_FILE, "w", encoding="utf-8") as f:
            json.dump({"object_id": record.object_id, "caption": record.caption, "labels": record.labels}, f)
        return caption_key(record.object_id), record.caption

    def _commit(self, payload: tuple[str, str]) -> None:
        key, caption = payload
        self.captions[key] = caption

    def _finish(self) -> None:
        write_captions(self.root / CAPTION_FILE, self.captions)


class GObjaverseStore(ObjectStore):
    """Objects of a G-Objaverse tree, sorted by path."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.location = str(self.root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"G-Objaverse root {self.root} does not exist")
        self.instances = sorted(p.parent for p in self.root.glob(f"*/*/*/{VIEW_FOLDER}"))
        if not self.instances:
            raise FileNotFoundError(f"no <category>/<dict_id>/<ins_id>/{VIEW_FOLDER} folders under {self.root}")
        self.captions = read_captions(self.root / CAPTION_FILE)

    def __len__(self) -> int:
        return len(self.instances)

    def object_id(self, index: int) -> str:
        return self.instances[self._check_index(index)].relative_to(self.root).as_posix()

    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        instance = self.instances[self._check_index(index)]
        object_id = self.object_id(index)
        views_dir = instance / VIEW_FOLDER
        available = np.array(sorted(int(p.name) for p in views_dir.iterdir() if p.name.isdigit()), dtype=np.int64)
        wanted = self._check_views(str(views_dir), available, select_views)
        meta = {}
        if (instance / META_FILE).exists():
            try:
                meta = json.loads((instance / META_FILE).read_text(encoding="utf-8"))
            except ValueError as error:
                raise BadSampleError(str(instance / META_FILE), f"not valid JSON ({error})") from None
        caption = self.captions.get(caption_key(object_id), meta.get("caption", ""))
        labels = meta.get("labels", {"category": object_id.split("/")[0]})
        views = [self._read_view(views_dir / f"{v:05d}", v) for v in wanted]
        color, alpha, depth, normal, cameras = (np.stack(x) for x in zip(*views))
        return ObjectRecord(object_id, np.array(wanted, dtype=np.int64), cameras, color, alpha, depth, normal,
                            caption, labels)

    def _read_view(self, folder: Path, view: int):
        stem = f"{view:05d}"
        png = folder / f"{stem}.png"
        camera_file = folder / f"{stem}.json"
        for path in (png, camera_file):
            if not path.exists():
                raise BadSampleError(str(path), "view file is missing")
        try:
            rgba = decode_image(png.read_bytes())
            color, alpha = split_rgba(rgba)
        except ValueError as error:
            raise BadSampleError(str(png), str(error)) from None
        try:
            with open(camera_file) as f:
                camera = camera_from_json(json.load(f))
        except (ValueError, KeyError) as error:
            raise BadSampleError(str(camera_file), f"not a valid camera JSON ({error!r})") from None
        depth, normal = self._read_depth_normal(folder, stem, alpha.shape)
        return color, alpha, depth, normal, camera

    @staticmethod
    def _read_depth_normal(folder: Path, stem: str, shape) -> tuple[np.ndarray, np.ndarray]:
        npz, exr = folder / f"{stem}_nd.npz", folder / f"{stem}_nd.exr"
        if not npz.exists():
            if exr.exists():
                raise BadSampleError(str(exr), "EXR is not supported (it needs libraries outside our dependencies); "
                                     "convert it to _nd.npz holding array 'nd', float16 (H, W, 4)")
            raise BadSampleError(str(npz), "view file is missing")
        try:
            with np.load(npz) as archive:
                nd = archive["nd"].astype(np.float32)
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise BadSampleError(str(npz), f"not a readable normal+depth .npz ({type(error).__name__})") from None
        if nd.shape != (*shape, 4):
            raise BadSampleError(str(npz), f"normal+depth has shape {nd.shape}, expected {(*shape, 4)}")
        return nd[..., 3], nd[..., :3]
