"""3D generation metrics on point clouds: COV, MMD and 1-NNA from pairwise Chamfer distances.

Definitions follow the PointFlow / LION evaluation. With S the generated set (n clouds) and R the reference set
(m clouds), and D_SR[i, j] = CD(S_i, R_j):
- COV  = 100 · |{argmin_j D_SR[i, j] : i in S}| / m — the share of references that are the nearest reference of
  at least one sample. Ties pick the lowest reference index (torch.argmin).
- MMD  = mean over j of min_i D_SR[i, j] — how far each reference is from its best-matching sample.
- 1-NNA = 100 · accuracy of the leave-one-out 1-nearest-neighbour classifier that labels every cloud of S ∪ R by
  the set of its nearest other cloud. 50 % means the sets are indistinguishable; 100 % means every cloud's nearest
  neighbour is in its own set; below 50 % means samples sit closer to references than to each other — a generator
  that copies R exactly scores 0 %. Ties: when several clouds are at the minimum distance, the query counts as
  the fraction of them that share its label (the expected accuracy of a uniformly random tie-break).

CD is the PointFlow / LION Chamfer distance: mean squared nearest-neighbour distance a→b plus b→a, i.e. twice
`nsr.mesh.chamfer_distance(a, b)["l2"]`, so MMD values compare with the numbers in those papers (which usually print
MMD-CD × 10³). Distances come from `evaluations.point_distances.nearest_distances`: on the CPU through KD-trees, one
per cloud for the whole matrix (~4.6 ms per pair of 4096-point clouds); on a GPU pairs are batched through its
blocked float64 brute force, which gives the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from evaluations.point_distances import DEFAULT_BLOCK_BYTES, chamfer, nearest_distances, prepare
from nsr.mesh import Mesh, mesh_to_points

DEFAULT_NUM_POINTS = 4096


def point_clouds(
    items: Sequence[Mesh | np.ndarray | torch.Tensor], num_points: int = DEFAULT_NUM_POINTS, seed: int = 0
) -> torch.Tensor:
    """Meshes or point sets → (N, num_points, 3) float32, deterministic for a seed.

    Meshes are sampled on their surface (`nsr.mesh.mesh_to_points`); point sets with more points are subsampled
    without replacement, ones with exactly `num_points` are kept as they are, smaller ones are rejected (padding by
    repetition would bias nearest-neighbour distances).
    """
    rng = np.random.default_rng(seed)
    clouds = []
    for k, item in enumerate(items):
        if isinstance(item, Mesh):
            points = mesh_to_points(item, num_points, seed=seed + k)
        else:
            points = np.asarray(item.detach().cpu() if isinstance(item, torch.Tensor) else item, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 3:
                raise ValueError(f"item {k}: expected points shaped (P, 3), got {points.shape}")
            if len(points) < num_points:
                raise ValueError(f"item {k}: {len(points)} points, fewer than the {num_points} requested")
            if len(points) > num_points:
                points = points[rng.choice(len(points), size=num_points, replace=False)]
        clouds.append(torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)))
    return torch.stack(clouds)


def _default_device() -> torch.device | None:
    """CUDA when present; None selects the KD-tree route, the faster one on a CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else None


def chamfer_matrix(
    a: torch.Tensor,
    b: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    pairs_per_batch: int = 16,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> torch.Tensor:
    """Pairwise CD between clouds a (N, P, 3) and b (M, Q, 3) → (N, M) float64 on the CPU.

    b=None gives the within-set matrix of a (N, N): only pairs i < j are computed and mirrored; the diagonal is 0.
    device: None picks CUDA when available and otherwise the KD-tree route (one tree per cloud, reused by every pair
    it is in); an explicit torch device runs the brute-force route there, `pairs_per_batch` pairs at a time, each
    block of their distance matrices within `block_bytes`.
    """
    symmetric = b is None
    b = a if symmetric else b
    n, m = len(a), len(b)
    if symmetric:
        rows, cols = torch.triu_indices(n, n, offset=1)
    else:
        rows, cols = torch.cartesian_prod(torch.arange(n), torch.arange(m)).unbind(dim=1)
    values = torch.empty(len(rows), dtype=torch.float64)
    device = _default_device() if device is None else torch.device(device)
    if device is None:
        trees_a = [prepare(cloud) for cloud in a]
        trees_b = trees_a if symmetric else [prepare(cloud) for cloud in b]
        for k, (i, j) in enumerate(zip(rows.tolist(), cols.tolist())):
            values[k] = 2.0 * chamfer(*nearest_distances(trees_a[i], trees_b[j]))[1]
    else:
        a_dev, b_dev = a.to(device, torch.float64), b.to(device, torch.float64)
        for start in range(0, len(rows), pairs_per_batch):
            i, j = rows[start : start + pairs_per_batch], cols[start : start + pairs_per_batch]
            d_ab, d_ba = nearest_distances(a_dev[i.to(device)], b_dev[j.to(device)], device, block_bytes)
            values[start : start + len(i)] = (2.0 * chamfer(d_ab, d_ba)[1]).cpu()
    matrix = torch.zeros(n, m, dtype=torch.float64)
    matrix[rows, cols] = values
    if symmetric:
        matrix[cols, rows] = values
    return matrix


def coverage(d_sr: torch.Tensor) -> float:
    """COV in % from D_SR (n samples, m references)."""
    return 100.0 * torch.argmin(d_sr, dim=1).unique().numel() / d_sr.shape[1]


def minimum_matching_distance(d_sr: torch.Tensor) -> float:
    """MMD from D_SR (n samples, m references): mean over references of the distance to the closest sample."""
    return d_sr.min(dim=0).values.mean().item()


def one_nn_accuracy(d_sr: torch.Tensor, d_ss: torch.Tensor, d_rr: torch.Tensor) -> float:
    """1-NNA in % from D_SR (n, m), D_SS (n, n) and D_RR (m, m); ties as in the module docstring."""
    n, m = d_sr.shape
    full = torch.cat([torch.cat([d_ss, d_sr], dim=1), torch.cat([d_sr.T, d_rr], dim=1)], dim=0).double()
    full.fill_diagonal_(float("inf"))  # leave-one-out: a cloud is never its own neighbour
    labels = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(m, dtype=torch.bool)])
    nearest = full == full.min(dim=1, keepdim=True).values  # (n+m, n+m), several True on ties
    same_label = labels[None, :] == labels[:, None]
    correct = (nearest & same_label).sum(dim=1).double() / nearest.sum(dim=1)
    return 100.0 * correct.mean().item()


def generation_metrics(
    samples: torch.Tensor,
    references: torch.Tensor,
    device: torch.device | str | None = None,
    pairs_per_batch: int = 16,
) -> dict[str, float]:
    """COV (%), MMD (CD) and 1-NNA (%) of generated clouds (n, P, 3) against references (m, P, 3)."""
    d_sr = chamfer_matrix(samples, references, device, pairs_per_batch)
    d_ss = chamfer_matrix(samples, None, device, pairs_per_batch)
    d_rr = chamfer_matrix(references, None, device, pairs_per_batch)
    return {
        "cov": coverage(d_sr),
        "mmd": minimum_matching_distance(d_sr),
        "1-nna": one_nn_accuracy(d_sr, d_ss, d_rr),
        "num_samples": len(samples),
        "num_references": len(references),
    }


def mean_over_categories(per_category: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean of every metric over categories (each category counts once, as in per-class tables);
    counts (keys starting with "num_") are summed instead."""
    keys = next(iter(per_category.values())).keys()
    columns = {key: [metrics[key] for metrics in per_category.values()] for key in keys}
    return {key: float(np.sum(v) if key.startswith("num_") else np.mean(v)) for key, v in columns.items()}


def generation_metrics_by_category(
    samples: Mapping[str, torch.Tensor],
    references: Mapping[str, torch.Tensor],
    device: torch.device | str | None = None,
    pairs_per_batch: int = 16,
) -> dict[str, dict[str, float]]:
    """Per-category metrics (samples of a category are compared with references of that category only), plus
    "mean": the unweighted mean over categories. Both mappings must have the same categories."""
    if set(samples) != set(references):
        raise ValueError(f"categories differ: samples {sorted(samples)} vs references {sorted(references)}")
    results = {
        category: generation_metrics(samples[category], references[category], device, pairs_per_batch)
        for category in sorted(samples)
    }
    results["mean"] = mean_over_categories(results)
    return results
