"""Nearest-neighbour distances: both routes against SciPy's cKDTree queried directly, the reductions against
`nsr.mesh`'s Chamfer / F-score, and analytic answers (a grid against its own translation)."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from evaluations import point_distances as pd
from nsr.mesh import chamfer_distance, f_score

# KD-trees, and the brute force that runs on CUDA, here on the CPU and, where there is one, on CUDA.
ROUTES = [
    pytest.param(None, id="kdtree"),
    pytest.param(torch.device("cpu"), id="brute-force-cpu"),
    pytest.param(torch.device("cuda"), id="brute-force-cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
]


def clustered(n: int, seed: int) -> np.ndarray:
    """(n, 3) points: a noisy sphere plus a tight cluster, so neighbour distances span several decades."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n, 3))
    sphere = 0.4 * directions / np.linalg.norm(directions, axis=1, keepdims=True) + 0.003 * rng.normal(size=(n, 3))
    sphere[: n // 5] = 0.1 + 1e-4 * rng.normal(size=(n // 5, 3))
    return sphere


def grid(step: float = 0.1) -> np.ndarray:
    axis = np.arange(-0.4, 0.4 + 1e-9, step)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


@pytest.mark.parametrize("device", ROUTES)
def test_distances_match_scipy_kdtree(device):
    a, b = clustered(600, seed=0), clustered(900, seed=1)
    expected_ab, expected_ba = cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]
    # 10 rows per block: 60 blocks, so the running nearest neighbours of b are carried across many of them.
    d_ab, d_ba = pd.nearest_distances(a, torch.from_numpy(b), device, block_bytes=8 * 900 * 10)
    assert d_ab.dtype == d_ba.dtype == torch.float64 and d_ab.shape == (600,) and d_ba.shape == (900,)
    np.testing.assert_allclose(d_ab.cpu().numpy(), expected_ab, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d_ba.cpu().numpy(), expected_ba, rtol=1e-12, atol=1e-15)


def test_batched_pairs_equal_single_pairs():
    clouds_a = torch.from_numpy(np.stack([clustered(200, seed=s) for s in range(3)]))
    clouds_b = torch.from_numpy(np.stack([clustered(150, seed=10 + s) for s in range(3)]))
    d_ab, d_ba = pd.nearest_distances(clouds_a, clouds_b, "cpu", block_bytes=8 * 3 * 150 * 7)
    assert d_ab.shape == (3, 200) and d_ba.shape == (3, 150)
    for k in range(3):
        single_ab, single_ba = pd.nearest_distances(clouds_a[k], clouds_b[k])
        torch.testing.assert_close(d_ab[k], single_ab, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(d_ba[k], single_ba, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("device", ROUTES)
def test_translated_grid_gives_the_offset(device):
    """Every point of a 0.1-spaced grid shifted by δ = (0.013, 0, 0) has its original as nearest neighbour, at δ:
    Chamfer-L1 = δ, L2 = δ², F-score 0 below δ and 1 above. Far from the origin (x + 1000) the same holds."""
    points = grid()
    delta = np.array([0.013, 0.0, 0.0])
    for offset in (0.0, 1000.0):
        a, b = points + offset, points + offset + delta
        d_ab, d_ba = pd.nearest_distances(a, pd.prepare(b, device), device)
        np.testing.assert_allclose(d_ab.cpu().numpy(), 0.013, rtol=1e-9 if offset else 1e-12)
        np.testing.assert_allclose(d_ba.cpu().numpy(), 0.013, rtol=1e-9 if offset else 1e-12)
        l1, l2 = pd.chamfer(d_ab, d_ba)
        assert l1.item() == pytest.approx(0.013, rel=1e-9) and l2.item() == pytest.approx(0.013**2, rel=1e-9)
        assert pd.f_score(d_ab, d_ba, 0.01) == {"precision": 0.0, "recall": 0.0, "f": 0.0}
        assert pd.f_score(d_ab, d_ba, 0.02) == {"precision": 1.0, "recall": 1.0, "f": 1.0}


@pytest.mark.parametrize("device", ROUTES)
def test_identical_sets_are_exactly_zero_and_half_a_set_recalls_half(device):
    points = grid()
    d_ab, d_ba = pd.nearest_distances(points, points, device)
    assert (d_ab == 0).all() and (d_ba == 0).all()
    # a = every other point, b = all: a is covered (precision 1), only a's half of b is (recall 1/2).
    half = pd.f_score(*pd.nearest_distances(points[::2], points, device), 0.01)
    assert half["precision"] == 1.0 and half["recall"] == pytest.approx(np.ceil(len(points) / 2) / len(points))


def test_reductions_equal_nsr_mesh_chamfer_and_f_score():
    a, b = clustered(700, seed=2), clustered(500, seed=3)
    for device in [None, torch.device("cpu"), *([torch.device("cuda")] if torch.cuda.is_available() else [])]:
        d_ab, d_ba = pd.nearest_distances(a, b, device)
        l1, l2 = pd.chamfer(d_ab, d_ba)
        reference = chamfer_distance(a, b)
        assert l1.item() == pytest.approx(reference["l1"], rel=1e-12)
        assert l2.item() == pytest.approx(reference["l2"], rel=1e-12)
        for threshold in (0.005, 0.01, 0.05):
            assert pd.f_score(d_ab, d_ba, threshold) == pytest.approx(f_score(a, b, threshold), rel=1e-12)


def test_prepared_sets_and_routes():
    points = clustered(50, seed=4)
    assert isinstance(pd.prepare(points), cKDTree)
    prepared = pd.prepare(torch.from_numpy(points).float(), "cpu")
    assert isinstance(prepared, torch.Tensor) and prepared.dtype == torch.float64
    assert pd.distance_device(None) is None and pd.distance_device("cpu") is None
    assert pd.distance_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="both sides"):
        pd.nearest_distances(points, points[:0])
    with pytest.raises(ValueError, match="both sides"):
        pd.nearest_distances(points[:0], points, "cpu")
    with pytest.raises(ValueError, match=r"\(P, 3\)"):
        pd.nearest_distances(points[:, :2], points)
