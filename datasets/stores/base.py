"""The reader and writer interfaces every store implements, and an in-memory store.

Readers give random access by store index and open their files lazily in each process (an LMDB environment or an
open file must not cross a fork), so they work in DataLoader workers. `read` takes an optional `select_views`
callback that receives the object's available rig view ids and returns the ones to load: stores that keep views
in separate files or keys then read only those.

Writers encode objects on a thread pool (PNG/JPEG encoding releases the GIL) and commit them in the order they
were added: LMDB and WebDataset stores keep that order; the G-Objaverse tree reads back sorted by path and chunks
in dataset.json order (by category).
"""
from __future__ import annotations

import abc
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from datasets.errors import BadSampleError
from datasets.record import ObjectRecord

logger = logging.getLogger("ln3diff.datasets")

ViewSelector = Callable[[np.ndarray], Sequence[int]]


class ObjectStore(abc.ABC):
    """Random access to stored objects. `skipped` counts damaged samples dropped while indexing (skip_bad)."""

    location: str
    skipped: int = 0

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def object_id(self, index: int) -> str: ...

    @abc.abstractmethod
    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        """The object's record with the views `select_views(available)` picks (all when None).

        Raises BadSampleError naming the file or key when the sample cannot be read.
        """

    def _check_views(self, where: str, available: np.ndarray, select_views: ViewSelector | None) -> list[int]:
        """The view ids to load, or BadSampleError when the selector asks for a view the object lacks."""
        wanted = [int(v) for v in (available if select_views is None else select_views(available))]
        have = {int(v) for v in available}
        for v in wanted:
            if v not in have:
                raise BadSampleError(where, f"view {v} is missing (stored views: {sorted(have)})")
        return wanted

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"store index {index} is out of range for {len(self)} objects in {self.location}")
        return int(index)


class InMemoryStore(ObjectStore):
    """Records held in memory: the reference path in tests, and a store for renders made on the fly."""

    def __init__(self, records: Sequence[ObjectRecord], location: str = "<memory>"):
        self.records = list(records)
        self.location = location

    def __len__(self) -> int:
        return len(self.records)

    def object_id(self, index: int) -> str:
        return self.records[self._check_index(index)].object_id

    def read(self, index: int, select_views: ViewSelector | None = None) -> ObjectRecord:
        record = self.records[self._check_index(index)]
        return record.select(self._check_views(f"{self.location}[{index}]", record.view_ids, select_views))


class StoreWriter(abc.ABC):
    """`add(record)` objects, then `close()` (or use as a context manager). Encoding runs on `workers` threads."""

    def __init__(self, workers: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self._pending: deque[Future] = deque()
        self._max_pending = 2 * max(1, workers)
        self.count = 0

    @abc.abstractmethod
    def _encode(self, record: ObjectRecord) -> Any:
        """Thread-safe part: encode (and for per-object layouts, write) one record."""

    @abc.abstractmethod
    def _commit(self, payload: Any) -> None:
        """Sequential part, called in add order."""

    @abc.abstractmethod
    def _finish(self) -> None:
        """Write indexes and close files."""

    def add(self, record: ObjectRecord) -> None:
        self._pending.append(self._pool.submit(self._encode, record))
        while len(self._pending) > self._max_pending:
            self._commit_oldest()

    def _commit_oldest(self) -> None:
        self._commit(self._pending.popleft().result())
        self.count += 1

    def close(self) -> None:
        while self._pending:
            self._commit_oldest()
        self._pool.shutdown()
        self._finish()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._pool.shutdown(cancel_futures=True)
