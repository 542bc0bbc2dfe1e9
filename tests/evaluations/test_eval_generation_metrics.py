"""COV / MMD / 1-NNA on hand-computed matrices and on point-cloud sets with known answers."""

import numpy as np
import pytest
import torch
import trimesh

from evaluations import generation_metrics as gm
from nsr.mesh import Mesh, MeshStats, chamfer_distance


def random_clouds(n: int, points: int, seed: int) -> torch.Tensor:
    """n clouds (n, points, 3): noisy spheres with random radius in [0.2, 0.45]."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(n, points, 3, generator=g), dim=-1)
    radius = 0.2 + 0.25 * torch.rand(n, 1, 1, generator=g)
    return directions * radius + 0.01 * torch.randn(n, points, 3, generator=g)


def test_cov_and_mmd_on_a_hand_computed_matrix():
    d_sr = torch.tensor([[1.0, 5.0, 9.0], [2.0, 1.0, 7.0]])  # 2 samples x 3 references
    # Nearest references of the samples: 0 and 1 → 2 of 3 covered.
    assert gm.coverage(d_sr) == pytest.approx(200 / 3)
    # Per reference, the closest sample: min(1, 2), min(5, 1), min(9, 7).
    assert gm.minimum_matching_distance(d_sr) == pytest.approx((1 + 1 + 7) / 3)
    # A tie picks the lowest reference index: only reference 0 is covered.
    assert gm.coverage(torch.tensor([[1.0, 1.0]])) == 50.0


def test_one_nn_accuracy_on_hand_computed_matrices():
    d_ss = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    d_rr = torch.tensor([[0.0, 4.0], [4.0, 0.0]])
    # s0 → r1 (wrong), s1 → s0 (right), r0 → s1 (wrong), r1 → s0 (wrong).
    d_sr = torch.tensor([[3.0, 0.5], [2.0, 6.0]])
    assert gm.one_nn_accuracy(d_sr, d_ss, d_rr) == pytest.approx(25.0)
    # s0 now ties between s1 (same set) and r1 (other set): it counts 1/2.
    d_sr = torch.tensor([[3.0, 1.0], [2.0, 6.0]])
    assert gm.one_nn_accuracy(d_sr, d_ss, d_rr) == pytest.approx((0.5 + 1 + 0 + 0) / 4 * 100)
    # All clouds identical: every query ties over the 2n-1 others, n-1 of them in its own set.
    n = 3
    zeros = torch.zeros(n, n)
    assert gm.one_nn_accuracy(zeros, zeros, zeros) == pytest.approx(100 * (n - 1) / (2 * n - 1))


def test_identical_sets_cover_everything_at_zero_distance():
    clouds = random_clouds(8, 64, seed=0)
    metrics = gm.generation_metrics(clouds, clouds.clone())
    assert metrics["cov"] == 100.0
    assert metrics["mmd"] == 0.0
    # Every cloud's unique nearest neighbour is its copy in the other set: copying the references scores 0 %.
    assert metrics["1-nna"] == 0.0


def test_independent_draws_of_one_distribution_give_about_half():
    metrics = gm.generation_metrics(random_clouds(40, 48, seed=1), random_clouds(40, 48, seed=2))
    assert 35.0 <= metrics["1-nna"] <= 65.0, metrics
    assert metrics["cov"] > 40.0


def test_far_apart_sets():
    """Tight clusters: references centred at x = 0..9, samples near x = 1000. CD ≈ 2·(centre distance)², so every
    sample's nearest reference is the one at x = 9, and every cloud's nearest neighbour lies in its own set."""
    g = torch.Generator().manual_seed(3)
    centres_r = torch.zeros(10, 1, 3)
    centres_r[:, 0, 0] = torch.arange(10.0)
    centres_s = torch.zeros(6, 1, 3)
    centres_s[:, 0, 0] = 1000.0 + torch.arange(6.0)
    refs = centres_r + 0.01 * torch.randn(10, 32, 3, generator=g)
    samples = centres_s + 0.01 * torch.randn(6, 32, 3, generator=g)
    metrics = gm.generation_metrics(samples, refs)
    assert metrics["cov"] == pytest.approx(10.0)
    assert metrics["1-nna"] == 100.0
    assert metrics["mmd"] == pytest.approx(2 * np.mean((1000.0 - np.arange(10.0)) ** 2), rel=1e-4)


def test_kdtree_and_batched_routes_agree_with_nsr_chamfer():
    a, b = random_clouds(3, 50, seed=4), random_clouds(4, 60, seed=5)
    kdtree = gm.chamfer_matrix(a, b, device=None)
    batched = gm.chamfer_matrix(a, b, device="cpu", pairs_per_batch=5)
    # Both routes compute in float64 through one nearest-neighbour helper, so they agree to rounding.
    torch.testing.assert_close(kdtree, batched, rtol=1e-12, atol=1e-15)
    assert kdtree[1, 2].item() == pytest.approx(2 * chamfer_distance(a[1], b[2])["l2"], rel=1e-12)
    tiny_blocks = gm.chamfer_matrix(a, b, device="cpu", pairs_per_batch=5, block_bytes=8 * 5 * 60 * 3)
    torch.testing.assert_close(tiny_blocks, batched, rtol=1e-12, atol=1e-15)
    within = gm.chamfer_matrix(a)
    full = gm.chamfer_matrix(a, a)
    torch.testing.assert_close(within, full)
    assert (within.diagonal() == 0).all()


def test_point_clouds_from_meshes_and_point_sets():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    mesh = Mesh(
        np.asarray(box.vertices, np.float32),
        np.asarray(box.faces, np.int64),
        np.zeros((len(box.vertices), 3), np.uint8),
        MeshStats(8, 12, True, 6.0),
    )
    dense = np.random.default_rng(0).random((500, 3))
    clouds = gm.point_clouds([mesh, dense, torch.from_numpy(dense[:100])], num_points=100, seed=7)
    assert clouds.shape == (3, 100, 3) and clouds.dtype == torch.float32
    # Points on the unit cube's surface have max |coordinate| = 0.5.
    torch.testing.assert_close(clouds[0].abs().amax(dim=1), torch.full((100,), 0.5))
    # Subsampling keeps original points, without repeats; an exact-size set is kept as is.
    rows = {tuple(np.float32(p)) for p in dense}
    assert all(tuple(p) in rows for p in clouds[1].numpy()) and len({tuple(p) for p in clouds[1].numpy()}) == 100
    torch.testing.assert_close(clouds[2], torch.from_numpy(dense[:100]).float())
    torch.testing.assert_close(gm.point_clouds([dense], 100, seed=7)[0], clouds[1])
    with pytest.raises(ValueError, match="fewer"):
        gm.point_clouds([dense[:10]], num_points=100)


def test_per_category_results_and_mean():
    clouds = random_clouds(6, 32, seed=6)
    results = gm.generation_metrics_by_category(
        {"chair": clouds[:3], "table": clouds[3:]}, {"chair": clouds[:3].clone(), "table": clouds[:3].clone()}
    )
    assert list(results) == ["chair", "table", "mean"]
    assert results["chair"]["cov"] == 100.0
    for key in ("cov", "mmd", "1-nna"):
        assert results["mean"][key] == pytest.approx((results["chair"][key] + results["table"][key]) / 2)
    assert results["mean"]["num_samples"] == 6
    with pytest.raises(ValueError, match="categories differ"):
        gm.generation_metrics_by_category({"chair": clouds}, {"table": clouds})
