"""The multi-view chunk format of VAE training (spec §10.2), read and written.

    <root>/dataset.json                 {category: ["<dict_id>/<ins_id>", ...]}: the chunk folders
    <root>/<dict_id>/<ins_id>/raw_img.png       R × (V·R) RGB on white, views side by side
                             /depth_alpha.jpg   2R × (V·R) gray: top 8-bit normalised inverse depth, bottom alpha
                             /d_near_far.npy    (2, V) float64: inverse depth = d/255 · (far − near) + near
                             /c.npy             (V, 25) float32 cameras
                             /bbox.npy          (V, 4) inclusive [top, left, bottom, right] (uint8, uint16 if R > 256)
                             /caption.txt, /ins.txt
                             /view_ids.npy      (V,) int64 rig view ids (ours; without it a 12-view chunk is
                                                assumed to hold rig.CHUNK_VIEWS, other sizes 0..V−1)
                             /labels.json       structured labels (ours)

The released chunks hold V = 12 views at R = 256; this writer keeps whatever views and resolution it is given.
Depth coding follows the release: `near` = 1/3 for every view, so the background code d = 0 decodes to depth
3 > 2.9 and is dropped by the released loader too; `far` = the view's largest foreground inverse depth; foreground
codes are clamped to 1..255. Like the release, the reader keeps depth only where an alpha ≥ 250/255 mask eroded by
a 3×3 cross survives (the release tests alpha == 255, which JPEG rounding breaks), so anti-aliased and JPEG-ringing
edges carry no depth. Alpha codes within 3 of 0 or 255 are snapped to them (JPEG ringing). The straight colour the
reader returns is un-composited from the white background.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from datasets.errors import BadSampleError
from datasets.record import ObjectRecord, foreground_bbox
from datasets.rig import CHUNK_VIEWS
from datasets.stores.base import ObjectStore, StoreWriter, ViewSelector
from datasets.stores.codecs import decode_image, encode_jpeg, encode_png, to_uint8

INDEX_FILE = "dataset.json"
NEAR_INVERSE_DEPTH = 1.0 / 3.0
BACKGROUND_DEPTH = 2.9
ALPHA_SOLID = 250
JPEG_SNAP = 3
CHUNK_FILES = ("raw_img.png", "depth_alpha.jpg", "d_near_far.npy", "c.npy", "bbox.npy", "caption.txt", "ins.txt")


def encode_inverse_depth(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth `(V, H, W)` (0 = background) → uint8 codes `(V, H, W)` and near/far `(2, V)` float64."""
    views = depth.shape[0]
    near_far = np.zeros((2, views), dtype=np.float64)
    codes = np.zeros(depth.shape, dtype=np.uint8)
    for k in range(views):
        fg = depth[k] > 0
        inverse = np.where(fg, 1.0 / np.where(fg, depth[k], 1.0), 0.0)
        far = float(inverse.max()) if fg.any() else 1.0
        far = max(far, NEAR_INVERSE_DEPTH + 1e-3)
        near_far[:, k] = NEAR_INVERSE_DEPTH, far
        scaled = np.rint((inverse - NEAR_INVERSE_DEPTH) / (far - NEAR_INVERSE_DEPTH) * 255.0)
        codes[k] = np.where(fg, np.clip(scaled, 1, 255), 0).astype(np.uint8)
    return codes, near_far


def decode_inverse_depth(codes: np.ndarray, near_far: np.ndarray) -> np.ndarray:
    """uint8 codes `(V, H, W)` and near/far `(2, V)` → depth `(V, H, W)` float32, 0 where it decodes beyond 2.9."""
    near, far = near_far[0][:, None, None], near_far[1][:, None, None]
    depth = 1.0 / (codes.astype(np.float64) / 255.0 * (far - near) + near)
    return np.where(depth > BACKGROUND_DEPTH, 0.0, depth).astype(np.float32)


def erode_cross(mask: np.ndarray) -> np.ndarray:
    """Binary erosion of `(..., H, W)` masks by a 3×3 cross (outside the image counts as background)."""
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)], constant_values=False)
    return (padded[..., 1:-1, 1:-1] & padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1]
            & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:])


def _strip(images: np.ndarray) -> np.ndarray:
    """`(V, H, W, ...)` → `(H, V·W, ...)`, views side by side."""
    return np.concatenate(list(images), axis=1)


def _unstrip(strip: np.ndarray, views: int) -> np.ndarray:
    """`(H, V·W, ...)` → `(V, H, W, ...)`."""
    return np.stack(np.split(strip, views, axis=1))


def _chunk_path(object_id: str) -> tuple[str, str]:
    parts = object_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"object id {object_id!r} is not of the form <category>/<dict_id>/<ins_id>")
    return parts[0], f"{parts[1]}/{parts[2]}"


class ChunkWriter(StoreWriter):
    """Writes one chunk per record; an existing root is extended (dataset.json merged)."""

    def __init__(self, root: str | os.PathLike, workers: int = 4):
        super().__init__(workers)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, list[str]] = {}

    def _encode(self, record: ObjectRecord) -> tuple[str, str]:
        category, rel = _chunk_path(record.object_id)
        folder = self.root / rel
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "raw_img.png").write_bytes(encode_png(_strip(to_uint8(record.rgb_on_white()))))
        codes, near_far = encode_inverse_depth(record.depth)
        depth_alpha = np.concatenate([_strip(codes), _strip(to_uint8(record.alpha))], axis=0)
        (folder / "depth_alpha.jpg").write_bytes(encode_jpeg(depth_alpha))
        np.save(folder / "d_near_far.npy", near_far)
        np.save(folder / "c.npy", record.cameras.astype(np.float32))
        bbox_dtype = np.uint8 if record.resolution <= 256 else np.uint16
        np.save(folder / "bbox.npy", foreground_bbox(record.alpha).astype(bbox_dtype))
        np.save(folder / "view_ids.npy", record.view_ids.astype(np.int64))
        (folder / "caption.txt").write_text(record.caption, encoding="utf-8")
        (folder / "ins.txt").write_text(record.object_id, encoding="utf-8")
        with open(folder / "labels.json", "w", encoding="utf-8") as f:
            json.dump(record.labels, f)
        return category, rel

    def _commit(self, payload: tuple[str, str]) -> None:
        category, rel = payload
        self.index.setdefault(category, []).append(rel)

    def _finish(self) -> None:
        path = self.root / INDEX_FILE
        merged: dict[str, list[str]] = {}
        if path.exists():
            with open(path, encoding="utf-8") as f:
                merged = json.load(f)
        for category, rels in self.index.items():
            known = merged.setdefault(category, [])
            seen = set(known)
            known.extend(r for r in rels if r not in seen)
        tmp = path.with_name(f"{INDEX_FILE}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(merged, f, indent=0)
        os.replace(tmp, path)


class ChunkStore(ObjectStore):
    """Chunks listed in `<root>/dataset.json`, in its order (categories, then chunks)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.location = str(self.root)
        index_path = self.root / INDEX_FILE
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path} not found: not a chunk store (write one with "
                                    "scripts/make_dataset.py --format chunks)")
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        self.chunks = [(category, rel) for category, rels in index.items() for rel in rels]

    def __len__(self) -> int:
        return len(self.chunks)

    def object_id(self, index: int) -> str:
        category, rel = self.chunks[self._check_index(index)]
        return f"{category}/{rel}"

    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        category, rel = self.chunks[self._check_index(index)]
        folder = self.root / rel
        for name in CHUNK_FILES:
            if not (folder / name).exists():
                raise BadSampleError(str(folder / name), "chunk file is missing")
        cameras = self._load_npy(folder / "c.npy").astype(np.float32)
        views = len(cameras)
        if (folder / "view_ids.npy").exists():
            view_ids = self._load_npy(folder / "view_ids.npy").astype(np.int64)
        else:
            view_ids = np.array(CHUNK_VIEWS if views == len(CHUNK_VIEWS) else range(views), dtype=np.int64)
        wanted = self._check_views(str(folder), view_ids, select_views)
        position = {int(v): k for k, v in enumerate(view_ids)}
        idx = np.array([position[v] for v in wanted], dtype=np.int64)

        rgb = _unstrip(self._load_image(folder / "raw_img.png"), views)[idx].astype(np.float32) / 255.0
        depth_alpha = self._load_image(folder / "depth_alpha.jpg")
        if depth_alpha.ndim != 2 or depth_alpha.shape[0] % 2:
            raise BadSampleError(str(folder / "depth_alpha.jpg"), f"expected a 2R × (V·R) gray image, got "
                                 f"shape {depth_alpha.shape}")
        half = depth_alpha.shape[0] // 2
        codes = _unstrip(depth_alpha[:half], views)[idx]
        alpha_u8 = _unstrip(depth_alpha[half:], views)[idx]
        # JPEG rounding leaves ±3 codes of ringing around flat 0/255 regions: snap them back
        alpha_u8 = np.where(alpha_u8 <= JPEG_SNAP, 0, np.where(alpha_u8 >= 255 - JPEG_SNAP, 255, alpha_u8))
        near_far = self._load_npy(folder / "d_near_far.npy")[:, idx]
        depth = decode_inverse_depth(codes, near_far) * erode_cross(alpha_u8 >= ALPHA_SOLID)
        alpha = alpha_u8.astype(np.float32) / 255.0
        safe = np.where(alpha > 0, alpha, 1.0)[..., None]
        color = np.where(alpha[..., None] > 0, np.clip((rgb - 1.0 + alpha[..., None]) / safe, 0.0, 1.0), 1.0)

        caption = (folder / "caption.txt").read_text(encoding="utf-8")
        object_id = (folder / "ins.txt").read_text(encoding="utf-8").strip() or f"{category}/{rel}"
        labels = {"category": category}
        if (folder / "labels.json").exists():
            try:
                labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
            except ValueError as error:
                raise BadSampleError(str(folder / "labels.json"), f"not valid JSON ({error})") from None
        return ObjectRecord(object_id, view_ids[idx], cameras[idx], color.astype(np.float32), alpha, depth, None,
                            caption, labels)

    @staticmethod
    def _load_npy(path: Path) -> np.ndarray:
        try:
            return np.load(path)
        except (ValueError, OSError, EOFError) as error:
            raise BadSampleError(str(path), f"not a readable .npy file ({error})") from None

    @staticmethod
    def _load_image(path: Path) -> np.ndarray:
        try:
            return decode_image(path.read_bytes())
        except ValueError as error:
            raise BadSampleError(str(path), str(error)) from None
