"""LMDB store: the key scheme of the released `lmdb_create.py` (spec §10.5), extended to many views per object.

Keys (utf-8), i = object index, v = rig view id:

    length               number of objects (ascii integer)
    {i}-ins              object id
    {i}-caption          caption
    {i}-labels           labels (JSON)
    {i}-views            rig view ids, int32 little-endian
    {i}-{v}-raw_img      RGBA PNG (straight alpha)
    {i}-{v}-depth        zlib-compressed float32 (R, R) camera-space z, 0 for background
    {i}-{v}-c            float32 (25,) camera
    {i}-{v}-bbox         float32 (4,) inclusive [top, left, bottom, right]

Deviations from the release (one view per index, uncompressed float32 depth, RGB PNG): views are grouped per
object, the PNG keeps alpha, and depth is zlib-compressed (background zeros shrink to almost nothing).
"""
from __future__ import annotations

import json
import os
import zlib
from contextlib import contextmanager
from pathlib import Path

import lmdb
import numpy as np

from datasets.errors import BadSampleError
from datasets.record import ObjectRecord, foreground_bbox
from datasets.stores.base import ObjectStore, StoreWriter, ViewSelector
from datasets.stores.codecs import array_bytes, bytes_array, decode_image, encode_png, rgba_uint8, split_rgba

DEFAULT_MAP_SIZE = 1 << 40  # address space only: LMDB files grow with the data


class LmdbWriter(StoreWriter):
    """Writes a new LMDB environment (a folder holding data.mdb); refuses one that already holds objects."""

    def __init__(self, path: str | os.PathLike, workers: int = 4, map_size: int = DEFAULT_MAP_SIZE,
                 objects_per_txn: int = 64):
        super().__init__(workers)
        self.path = Path(path)
        if (self.path / "data.mdb").exists():
            raise FileExistsError(f"LMDB store {self.path} already exists; remove it or choose another output")
        self.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.path), map_size=map_size, subdir=True, meminit=False, map_async=True)
        self.objects_per_txn = objects_per_txn
        self._txn = None

    def _encode(self, record: ObjectRecord) -> dict[str, bytes]:
        boxes = foreground_bbox(record.alpha)
        items = {"ins": record.object_id.encode(), "caption": record.caption.encode(),
                 "labels": json.dumps(record.labels).encode(), "views": array_bytes(record.view_ids, np.int32)}
        for k, v in enumerate(record.view_ids):
            items[f"{v}-raw_img"] = encode_png(rgba_uint8(record.color[k], record.alpha[k]))
            items[f"{v}-depth"] = zlib.compress(array_bytes(record.depth[k], np.float32), 1)
            items[f"{v}-c"] = array_bytes(record.cameras[k], np.float32)
            items[f"{v}-bbox"] = array_bytes(boxes[k], np.float32)
        return items

    def _commit(self, payload: dict[str, bytes]) -> None:
        if self._txn is None:
            self._txn = self.env.begin(write=True)
        for suffix, value in payload.items():
            self._txn.put(f"{self.count}-{suffix}".encode(), value)
        if (self.count + 1) % self.objects_per_txn == 0:
            self._txn.commit()
            self._txn = None

    def _finish(self) -> None:
        txn = self._txn or self.env.begin(write=True)
        txn.put(b"length", str(self.count).encode())
        txn.commit()
        self._txn = None
        self.env.sync()
        self.env.close()


class LmdbStore(ObjectStore):
    """Objects of an LMDB store written by `LmdbWriter`.

    The environment is opened for each read and closed after it: py-lmdb refuses a second open of the same files
    in one process, and a forked DataLoader worker inherits that bookkeeping from its parent, so an environment
    left open by the parent (or by a second store on the same path) would make every worker's open fail.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.location = str(self.path)
        if not (self.path / "data.mdb").exists():
            raise FileNotFoundError(f"{self.path / 'data.mdb'} not found: not an LMDB store")
        with self._reader() as txn:
            raw = self._get(txn, "length")
        try:
            self.length = int(raw.decode())
        except ValueError:
            raise BadSampleError(self._where("length"), f"not an integer ({raw[:20]!r})") from None

    @contextmanager
    def _reader(self):
        env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False, subdir=True)
        try:
            with env.begin(write=False, buffers=False) as txn:
                yield txn
        finally:
            env.close()

    def _where(self, key: str) -> str:
        return f"{self.path} key {key!r}"

    def _get(self, txn, key: str) -> bytes:
        value = txn.get(key.encode())
        if value is None:
            raise BadSampleError(self._where(key), "entry is missing")
        return value

    def __len__(self) -> int:
        return self.length

    def object_id(self, index: int) -> str:
        with self._reader() as txn:
            return self._get(txn, f"{self._check_index(index)}-ins").decode()

    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        i = self._check_index(index)
        with self._reader() as txn:
            return self._read(txn, i, select_views)

    def _read(self, txn, i: int, select_views: ViewSelector | None) -> ObjectRecord:
        views_key = f"{i}-views"
        raw_views = self._get(txn, views_key)
        if len(raw_views) % 4:
            raise BadSampleError(self._where(views_key), f"{len(raw_views)} bytes is not a whole int32 array")
        available = bytes_array(raw_views, np.int32, (len(raw_views) // 4,)).astype(np.int64)
        wanted = self._check_views(self._where(views_key), available, select_views)
        colors, alphas, depths, cameras = [], [], [], []
        for v in wanted:
            key = f"{i}-{v}-raw_img"
            try:
                color, alpha = split_rgba(decode_image(self._get(txn, key)))
            except ValueError as error:
                raise BadSampleError(self._where(key), str(error)) from None
            key = f"{i}-{v}-depth"
            try:
                depth = bytes_array(zlib.decompress(self._get(txn, key)), np.float32, alpha.shape)
            except (zlib.error, ValueError) as error:
                raise BadSampleError(self._where(key), f"not a zlib float32 depth map ({error})") from None
            key = f"{i}-{v}-c"
            try:
                camera = bytes_array(self._get(txn, key), np.float32, (25,))
            except ValueError as error:
                raise BadSampleError(self._where(key), str(error)) from None
            colors.append(color)
            alphas.append(alpha)
            depths.append(depth)
            cameras.append(camera)
        key = f"{i}-labels"
        try:
            labels = json.loads(self._get(txn, key).decode())
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise BadSampleError(self._where(key), f"not valid JSON ({error})") from None
        return ObjectRecord(self._get(txn, f"{i}-ins").decode(), np.array(wanted, dtype=np.int64), np.stack(cameras),
                            np.stack(colors), np.stack(alphas), np.stack(depths), None,
                            self._get(txn, f"{i}-caption").decode(), labels)
