"""Copying every object of one store into a writer of another format (scripts/lmdb_create.py, wds_create.py)."""
from __future__ import annotations

from tqdm import tqdm

from datasets.errors import BadSampleError
from datasets.stores.base import ObjectStore, StoreWriter, logger


def copy_store(source: ObjectStore, writer: StoreWriter, skip_bad: bool = False, progress: bool = True) -> int:
    """Add every object of `source` to `writer` (all views, store order), close it, and return how many were
    skipped as unreadable (only with skip_bad; otherwise the first BadSampleError propagates)."""
    skipped = 0
    with writer:
        for index in tqdm(range(len(source)), desc="objects", unit="obj", disable=not progress):
            try:
                record = source.read(index)
            except BadSampleError as error:
                if not skip_bad:
                    raise
                skipped += 1
                logger.warning("skipping unreadable object %d: %s", index, error)
                continue
            writer.add(record)
    return skipped
