"""The G-Objaverse capture rig as the datasets use it: which of its 40 views to keep, and per-object randomisation.

Views are named by their rig index everywhere (spec §10.1): 0–23 upper ring, 24 = copy of 0, 25 top, 26 bottom,
27–38 lower ring, 39 = copy of 27.
"""
from __future__ import annotations

import numpy as np
import torch

from nsr.cameras import gobjaverse_rig

NUM_RIG_VIEWS = 40
# spec §2.2: top, upper ring at 0°/135°/270°, lower ring at 0°/180° — the encoder views of latent extraction
ENCODER_VIEWS: tuple[int, ...] = (25, 0, 9, 18, 27, 33)
# a second group of six with the same structure (bottom, upper 60°/195°/330°, lower 90°/270°): the 12-view chunk
CHUNK_VIEWS: tuple[int, ...] = ENCODER_VIEWS + (26, 4, 13, 22, 30, 36)

RADIUS_RANGE = (1.5, 2.0)
ELEVATION_RANGE_DEG = (5.0, 30.0)
LOWER_ELEVATION_RANGE_DEG = (-5.0, 5.0)


def default_view_ids(num_views: int) -> tuple[int, ...]:
    """The rig views a dataset of `num_views` views per object keeps.

    40 → the whole rig in order; fewer → the chunk views first (so 6 gives the encoder views and 12 the chunk),
    then the remaining rig views in order.
    """
    if not 1 <= num_views <= NUM_RIG_VIEWS:
        raise ValueError(f"views per object must be in 1..{NUM_RIG_VIEWS}, got {num_views}")
    if num_views == NUM_RIG_VIEWS:
        return tuple(range(NUM_RIG_VIEWS))
    rest = tuple(v for v in range(NUM_RIG_VIEWS) if v not in CHUNK_VIEWS)
    return (CHUNK_VIEWS + rest)[:num_views]


def object_rig(seed: int, index: int) -> torch.Tensor:
    """The 40 cameras `(40, 25)` of object `index` in dataset `seed`: radius, upper- and lower-ring elevations drawn
    from the object's camera stream (deterministic), as G-Objaverse varies them per instance."""
    rng = np.random.default_rng([int(seed), int(index), 1])
    radius = float(rng.uniform(*RADIUS_RANGE))
    elevation = float(rng.uniform(*ELEVATION_RANGE_DEG))
    lower = float(rng.uniform(*LOWER_ELEVATION_RANGE_DEG))
    return gobjaverse_rig(radius=radius, elevation_deg=elevation, lower_elevation_deg=lower)
