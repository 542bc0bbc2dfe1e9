"""These tests run small tensors: one intra-op thread is faster than two on a shared 2-core machine, where OpenMP
threads spin-wait for each other (measured 7× slower training loops with two threads under load)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
