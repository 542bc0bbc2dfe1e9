"""On-disk object stores: G-Objaverse tree, multi-view chunks, LMDB and WebDataset shards (docs/DATA.md).

`open_store(path)` recognises the format from what is on disk; `make_writer(format, path)` creates a writer.
Format modules are imported on use, so importing this package stays cheap.
"""
from __future__ import annotations

import os
from pathlib import Path

from datasets.stores.base import InMemoryStore, ObjectStore, StoreWriter

FORMATS = ("gobjaverse", "chunks", "lmdb", "wds")

__all__ = ["FORMATS", "InMemoryStore", "ObjectStore", "StoreWriter", "detect_format", "make_writer", "open_store"]


def detect_format(path: str | os.PathLike) -> str:
    """The store format of a folder, from its marker files."""
    path = Path(path)
    if (path / "data.mdb").exists():
        return "lmdb"
    if (path / "dataset.json").exists():
        return "chunks"
    if path.is_dir() and any(path.glob("*.tar")):
        return "wds"
    if path.is_dir() and (any(path.glob("*/*/*/campos_512_v4")) or (path / "text_captions_cap3d.json").exists()):
        return "gobjaverse"
    raise ValueError(f"{path} is not a store: expected data.mdb (lmdb), dataset.json (chunks), *.tar (wds) or "
                     "<category>/<dict_id>/<ins_id>/campos_512_v4 folders (gobjaverse)")


def open_store(path: str | os.PathLike, format: str | None = None, skip_bad: bool = False) -> ObjectStore:
    """A reader for the store at `path` (format detected unless given). `skip_bad` drops damaged WDS shard ends."""
    format = format or detect_format(path)
    if format == "gobjaverse":
        from datasets.stores.gobjaverse import GObjaverseStore
        return GObjaverseStore(path)
    if format == "chunks":
        from datasets.stores.chunks import ChunkStore
        return ChunkStore(path)
    if format == "lmdb":
        from datasets.stores.lmdb_store import LmdbStore
        return LmdbStore(path)
    if format == "wds":
        from datasets.stores.wds_store import WdsStore
        return WdsStore(path, skip_bad=skip_bad)
    raise ValueError(f"unknown store format {format!r}; choose one of {', '.join(FORMATS)}")


def make_writer(format: str, path: str | os.PathLike, workers: int = 4, **options) -> StoreWriter:
    """A writer of `format` at `path`; options go to the writer (e.g. max_count for wds, map_size for lmdb)."""
    if format == "gobjaverse":
        from datasets.stores.gobjaverse import GObjaverseWriter
        return GObjaverseWriter(path, workers, **options)
    if format == "chunks":
        from datasets.stores.chunks import ChunkWriter
        return ChunkWriter(path, workers, **options)
    if format == "lmdb":
        from datasets.stores.lmdb_store import LmdbWriter
        return LmdbWriter(path, workers, **options)
    if format == "wds":
        from datasets.stores.wds_store import WdsWriter
        return WdsWriter(path, workers, **options)
    raise ValueError(f"unknown store format {format!r}; choose one of {', '.join(FORMATS)}")
