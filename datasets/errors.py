"""Unreadable samples: the one error type the data layer raises for them, and the Dataset base that skips them."""
from __future__ import annotations

import logging

from torch.utils.data import Dataset

logger = logging.getLogger("ln3diff.datasets")


class BadSampleError(RuntimeError):
    """A stored sample cannot be read. The message is one line: the file or key, the problem, the fix."""

    def __init__(self, location: str, problem: str):
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem} (rebuild the store, or pass skip_bad=True to skip such samples)")


class SkippingDataset(Dataset):
    """Base of the epoch-aware map-style datasets. A subclass sets `config` (with `skip_bad`) and `location` and
    implements `_sample(index)`, raising BadSampleError for an unreadable sample. With `config.skip_bad` such a
    sample is logged, counted in `skipped` and replaced by the next readable one (cyclically)."""

    sample_name = "sample"  # in the skip warning
    store_name = "store"  # in the error when nothing is readable

    def __init__(self):
        self.epoch = 0
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _sample(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        if not self.config.skip_bad:
            return self._sample(index)
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            try:
                return self._sample(candidate)
            except BadSampleError as error:
                self.skipped += 1
                logger.warning("skipping bad %s %d (%d skipped in this process): %s", self.sample_name, candidate,
                               self.skipped, error)
        raise BadSampleError(self.location, f"every sample of the {self.store_name} is unreadable")
