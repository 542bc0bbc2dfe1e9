"""Batching of sample dicts: the collate function of both the stage-1 and the stage-2 Datasets."""
from __future__ import annotations

import torch


def collate_samples(samples: list[dict]) -> dict:
    """Stack tensors along a new batch dimension; anything else (captions, ids, labels) becomes a list.

    Every sample must have the keys of the first one.
    """
    return {key: torch.stack([s[key] for s in samples]) if isinstance(samples[0][key], torch.Tensor)
            else [s[key] for s in samples] for key in samples[0]}
