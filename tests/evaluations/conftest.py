"""Evaluation tests run on one torch thread: their tensors are small, and on a shared 2-core machine intra-op threads
spend more time synchronising than computing (10x slower under load, measured)."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here: `single_thread` of tests/conftest.py."""
