"""These tests run small tensors: one intra-op thread is faster than two on a shared 2-core machine, where OpenMP
threads spin-wait for each other (measured 7× slower training loops with two threads under load)."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here: `single_thread` of tests/conftest.py."""
