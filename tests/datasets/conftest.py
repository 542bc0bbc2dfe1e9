"""Shared fixtures: a tiny rendered dataset (2 objects × 4 views × 32²) and single-threaded torch.

One torch thread: the CI machines have 2 cores shared with other jobs, and OpenMP with 2 threads on a busy machine
runs these small kernels ~50x slower.
"""
import pytest

from datasets.procedural.pipeline import GenerationConfig, render_records
from datasets.rig import default_view_ids

SEED = 7
VIEWS = default_view_ids(4)  # (25, 0, 9, 18)
RESOLUTION = 32


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here: `single_thread` of tests/conftest.py."""


@pytest.fixture(scope="session")
def generation_config() -> GenerationConfig:
    return GenerationConfig(seed=SEED, resolution=RESOLUTION, view_ids=VIEWS, batch_objects=2)


@pytest.fixture(scope="session")
def records(generation_config, torch_threads):
    with torch_threads(1):
        return render_records([0, 1], generation_config)
