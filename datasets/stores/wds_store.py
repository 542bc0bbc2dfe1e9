"""WebDataset tar shards in the released VAE layout (spec §10.3), written with the `webdataset` package.

Shards are `<dir>/wds-%06d.tar`. Each sample is `<key>.sample.pyd`, a pickled dict:

    raw_img   list of RGBA PNG bytes, one per view (straight alpha)
    depth     list of zlib-compressed float32 (R, R) bytes, camera-space z, 0 for background
    c         float32 (V, 25) bytes;  bbox  float32 (V, 4) bytes, inclusive [top, left, bottom, right]
    views     int32 (V,) bytes, rig view ids
    caption, ins (object id), labels (JSON): str

Deviations: the release's PNGs are RGB and its depth raw float32 (its compression varies between versions); we keep
alpha and zlib the depth. Shards are written uncompressed with a fixed mtime, so equal inputs give equal bytes.

Reading is random access: opening the store scans the tar headers once into an index (shard, offset, size), so it
is a map-style store like the others and works with any number of DataLoader workers. Samples are pickles: only
open shards you trust.
"""
from __future__ import annotations

import json
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import webdataset as wds

from datasets.errors import BadSampleError
from datasets.record import ObjectRecord, foreground_bbox
from datasets.stores.base import ObjectStore, StoreWriter, ViewSelector, logger
from datasets.stores.codecs import array_bytes, bytes_array, decode_image, encode_png, rgba_uint8, split_rgba

SHARD_PATTERN = "wds-%06d.tar"
SAMPLE_SUFFIX = ".sample.pyd"


class WdsWriter(StoreWriter):
    """Writes shards of `max_count` objects each into a new folder."""

    def __init__(self, out_dir: str | os.PathLike, workers: int = 4, max_count: int = 1000):
        super().__init__(workers)
        self.out_dir = Path(out_dir)
        if list(self.out_dir.glob("*.tar")):
            raise FileExistsError(f"{self.out_dir} already holds .tar shards; remove them or choose another output")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.sink = wds.ShardWriter(str(self.out_dir / SHARD_PATTERN), maxcount=max_count, verbose=0, mtime=0.0)

    def _encode(self, record: ObjectRecord) -> dict:
        return {
            "raw_img": [encode_png(rgba_uint8(record.color[k], record.alpha[k])) for k in range(record.num_views)],
            "depth": [zlib.compress(array_bytes(d, np.float32), 1) for d in record.depth],
            "c": array_bytes(record.cameras, np.float32),
            "bbox": array_bytes(foreground_bbox(record.alpha), np.float32),
            "views": array_bytes(record.view_ids, np.int32),
            "caption": record.caption,
            "ins": record.object_id,
            "labels": json.dumps(record.labels),
        }

    def _commit(self, payload: dict) -> None:
        self.sink.write({"__key__": f"{self.count:08d}", "sample.pyd": payload})

    def _finish(self) -> None:
        self.sink.close()


def index_shard(path: Path) -> tuple[list[tuple[str, int, int]], str | None]:
    """(key, data offset, size) of every complete sample of a shard, and the damage found (None if intact)."""
    entries: list[tuple[str, int, int]] = []
    file_size = path.stat().st_size
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.offset_data + member.size > file_size:
                    return entries, f"truncated tar shard (member {member.name!r} ends past the end of the file)"
                if member.isfile() and member.name.endswith(SAMPLE_SUFFIX):
                    entries.append((member.name[:-len(SAMPLE_SUFFIX)], member.offset_data, member.size))
    except tarfile.TarError as error:
        return entries, f"corrupt or truncated tar shard ({error})"
    return entries, None


class WdsStore(ObjectStore):
    """Samples of the shards in a folder (sorted by name) or of an explicit shard list."""

    def __init__(self, shards: str | os.PathLike | list[str | os.PathLike], skip_bad: bool = False):
        if isinstance(shards, (str, os.PathLike)) and Path(shards).is_dir():
            self.location = str(shards)
            self.shards = sorted(Path(shards).glob("*.tar"))
        else:
            self.shards = [Path(s) for s in ([shards] if isinstance(shards, (str, os.PathLike)) else shards)]
            self.location = str(self.shards[0].parent) if self.shards else "<no shards>"
        if not self.shards:
            raise FileNotFoundError(f"no .tar shards in {shards}")
        self.index: list[tuple[int, str, int, int]] = []
        self.skipped = 0
        for shard_id, path in enumerate(self.shards):
            entries, damage = index_shard(path)
            if damage is not None:
                if not skip_bad:
                    raise BadSampleError(str(path), f"{damage} after {len(entries)} intact samples")
                self.skipped += 1
                logger.warning("skipping the damaged end of %s: %s after %d intact samples", path, damage,
                               len(entries))
            self.index.extend((shard_id, key, offset, size) for key, offset, size in entries)
        self._files: dict[int, object] = {}
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, None
        return state

    def __len__(self) -> int:
        return len(self.index)

    def _load(self, index: int) -> tuple[str, dict]:
        shard_id, key, offset, size = self.index[self._check_index(index)]
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if shard_id not in self._files:
            self._files[shard_id] = open(self.shards[shard_id], "rb")  # kept open: reads seek within it
        f = self._files[shard_id]
        f.seek(offset)
        where = f"{self.shards[shard_id]} sample {key!r}"
        try:
            sample = pickle.loads(f.read(size))
        except Exception as error:  # unpickling damaged bytes raises many types
            raise BadSampleError(where, f"not a readable sample.pyd ({type(error).__name__})") from None
        if not isinstance(sample, dict) or not {"raw_img", "depth", "c", "views"} <= set(sample):
            raise BadSampleError(where, "sample.pyd lacks the raw_img/depth/c/views entries")
        return where, sample

    def object_id(self, index: int) -> str:
        return self._load(index)[1]["ins"]

    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        where, sample = self._load(index)
        try:
            available = bytes_array(sample["views"], np.int32, (len(sample["raw_img"]),)).astype(np.int64)
            cameras = bytes_array(sample["c"], np.float32, (len(available), 25))
        except ValueError as error:
            raise BadSampleError(where, str(error)) from None
        wanted = self._check_views(where, available, select_views)
        position = {int(v): k for k, v in enumerate(available)}
        colors, alphas, depths = [], [], []
        for v in wanted:
            k = position[v]
            try:
                color, alpha = split_rgba(decode_image(sample["raw_img"][k]))
                depth = bytes_array(zlib.decompress(sample["depth"][k]), np.float32, alpha.shape)
            except (ValueError, zlib.error) as error:
                raise BadSampleError(where, f"view {v}: {error}") from None
            colors.append(color)
            alphas.append(alpha)
            depths.append(depth)
        try:
            labels = json.loads(sample.get("labels", "{}"))
        except ValueError as error:
            raise BadSampleError(where, f"labels are not valid JSON ({error})") from None
        idx = np.array([position[v] for v in wanted], dtype=np.int64)
        return ObjectRecord(sample.get("ins", where), np.array(wanted, dtype=np.int64), cameras[idx], np.stack(colors),
                            np.stack(alphas), np.stack(depths), None, sample.get("caption", ""), labels)
