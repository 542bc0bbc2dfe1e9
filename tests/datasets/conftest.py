"""Shared fixtures: a tiny rendered dataset (2 objects × 4 views × 32²) and single-threaded torch.

One torch thread: the CI machines have 2 cores shared with other jobs, and OpenMP with 2 threads on a busy machine
runs these small kernels ~50x slower.
"""
import pytest
import torch

from datasets.procedural.pipeline import GenerationConfig, render_records
from datasets.rig import default_view_ids

SEED = 7
VIEWS = default_view_ids(4)  # (25, 0, 9, 18)
RESOLUTION = 32


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def generation_config() -> GenerationConfig:
    return GenerationConfig(seed=SEED, resolution=RESOLUTION, view_ids=VIEWS, batch_objects=2)


@pytest.fixture(scope="session")
def records(generation_config):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return render_records([0, 1], generation_config)
    finally:
        torch.set_num_threads(before)
