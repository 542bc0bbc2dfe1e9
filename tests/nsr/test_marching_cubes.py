"""The torch marching cubes: its derived case table, analytic surfaces, closed and consistently wound meshes on
random fields full of ambiguous faces, and agreement with PyMCubes."""

import mcubes
import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from nsr.marching_cubes import EDGES, _face_loops, build_case_table, case_triangles, marching_cubes


def _mesh(vertices: torch.Tensor, faces: torch.Tensor) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices.double().cpu().numpy(), faces.cpu().numpy(), process=False)


def _closed_random_field(seed: int, shape=(18, 19, 20), smooth: float = 0.0) -> np.ndarray:
    """Gaussian noise, optionally smoothed, with an outside border so every component is closed."""
    field = np.random.default_rng(seed).standard_normal(shape)
    if smooth:
        field = gaussian_filter(field, smooth) * 10
    field[[0, -1]] = field[:, [0, -1]] = field[:, :, [0, -1]] = -1.0
    return field


def test_case_table_shape_and_trivial_cases():
    table, counts = build_case_table()
    assert table.shape == (256, 5, 3) and counts.shape == (256,)
    assert counts[0] == counts[255] == 0
    # One inside corner: one triangle on its three edges.
    for corner in range(8):
        (triangle,) = case_triangles(1 << corner)
        assert {frozenset(EDGES[e]) for e in triangle} == {frozenset((corner, corner ^ 1 << a)) for a in range(3)}
    # Four inside corners on one face: a quad, two triangles.
    assert counts[0b00001111] == 2
    # Padding rows are −1, used rows are valid edges.
    for case in range(256):
        assert (table[case, counts[case]:] == -1).all() and (table[case, :counts[case]] >= 0).all()


@pytest.mark.parametrize("case", range(256))
def test_every_case_uses_exactly_its_crossed_edges_and_closes_on_the_cube(case):
    """A case's vertices are the edges whose corners differ, and the fan's boundary (edges used by one triangle) is a
    union of cycles lying on the cube's faces: each vertex has boundary degree 2."""
    inside = [bool(case >> c & 1) for c in range(8)]
    crossed = {i for i, (a, b) in enumerate(EDGES) if inside[a] != inside[b]}
    triangles = case_triangles(case)
    assert {e for t in triangles for e in t} == crossed
    directed = [(t[i], t[(i + 1) % 3]) for t in triangles for i in range(3)]
    boundary = [e for e in directed if (e[1], e[0]) not in directed]
    assert len(set(directed)) == len(directed)  # no directed edge twice: consistent winding within the cube
    # Diagonals (edges inside a cycle) never join two vertices of one cube face: the neighbour cube could draw the
    # same diagonal, and that edge would then belong to four triangles.
    quads = [set(q) for q in _face_loops()]
    for a, b in directed:
        if (b, a) in directed:
            assert not any(set(EDGES[a]) | set(EDGES[b]) <= q for q in quads), (a, b)
    degree = {v: 0 for v in crossed}
    for a, b in boundary:
        degree[a] += 1
        degree[b] += 1
    assert set(degree.values()) <= {2}


def test_plane_is_exact():
    """σ linear in position: every vertex lies exactly on the plane and the area is the exact cross-section."""
    i = torch.arange(16, dtype=torch.float64)
    x, y, z = torch.meshgrid(i, i, i, indexing="ij")
    sigma = 7.3 - (0.5 * x + 0.25 * y + 0.125 * z)  # inside below the plane
    vertices, faces = marching_cubes(sigma, 0.0)
    v = vertices.double()
    residual = 7.3 - (0.5 * v[:, 0] + 0.25 * v[:, 1] + 0.125 * v[:, 2])
    assert residual.abs().max() < 1e-5
    normals = torch.tensor(_mesh(vertices, faces).face_normals)
    expected = torch.tensor([0.5, 0.25, 0.125], dtype=torch.float64)
    assert torch.allclose(normals, (expected / expected.norm()).expand_as(normals), atol=1e-5)  # towards low σ


@pytest.mark.parametrize("hollow", [False, True])
def test_sphere_is_closed_and_normals_point_to_low_density(hollow):
    i = torch.linspace(-1, 1, 40, dtype=torch.float64)
    x, y, z = torch.meshgrid(i, i, i, indexing="ij")
    sigma = 0.6 - (x**2 + y**2 + z**2).sqrt()
    vertices, faces = marching_cubes(-sigma if hollow else sigma, 0.0)
    mesh = _mesh(vertices / 39 * 2 - 1, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent
    volume = 4 / 3 * np.pi * 0.6**3
    # A dense ball: normals out, positive volume. A dense shell around a void: normals into the void, negative.
    assert mesh.volume == pytest.approx(-volume if hollow else volume, rel=0.01)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.6).max() < 2 / 39 * 0.1


@pytest.mark.parametrize("seed", range(6))
def test_random_fields_give_closed_consistently_wound_meshes(seed):
    """White noise makes ambiguous faces in most cubes: the per-face rule must still close every surface."""
    field = _closed_random_field(seed, smooth=0.0 if seed < 3 else 1.0)
    vertices, faces = marching_cubes(torch.from_numpy(field), 0.0)
    mesh = _mesh(vertices, faces)
    assert len(faces) > 100
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # every component wound outwards
    assert mesh.area_faces.min() > 0


@pytest.mark.parametrize("seed", range(3))
def test_vertices_match_pymcubes(seed):
    """Both put one vertex on each crossed grid edge by linear interpolation: the same vertex set. The triangles
    differ only where ambiguous cubes are resolved differently, so the areas agree closely."""
    field = _closed_random_field(seed, shape=(30, 31, 32), smooth=1.5)
    vertices, faces = marching_cubes(torch.from_numpy(field), 0.0)
    ref_vertices, ref_faces = mcubes.marching_cubes(field, 0.0)
    assert len(vertices) == len(ref_vertices)
    distance, _ = cKDTree(ref_vertices).query(vertices.double().numpy())
    assert distance.max() < 1e-5
    ours, ref = _mesh(vertices, faces), trimesh.Trimesh(ref_vertices, ref_faces, process=False)
    assert ours.area == pytest.approx(ref.area, rel=0.01)
    assert ours.volume == pytest.approx(ref.volume, rel=0.01)


def test_dtype_and_empty_and_bad_shape():
    assert marching_cubes(torch.zeros(4, 4, 4), 0.5)[1].shape == (0, 3)
    half = torch.zeros(6, 6, 6, dtype=torch.float16)
    half[2:4, 2:4, 2:4] = 1
    vertices, faces = marching_cubes(half, 0.5)
    assert vertices.dtype == torch.float32 and faces.dtype == torch.int64 and len(faces) > 0
    with pytest.raises(ValueError, match=r"needs a \(X, Y, Z\) grid with every side ≥ 2, got \(4, 4\)"):
        marching_cubes(torch.zeros(4, 4), 0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    field = torch.from_numpy(_closed_random_field(0, smooth=1.0)).float()
    v_cpu, f_cpu = marching_cubes(field, 0.0)
    v_gpu, f_gpu = marching_cubes(field.cuda(), 0.0)
    assert v_gpu.is_cuda and torch.equal(f_gpu.cpu(), f_cpu)
    torch.testing.assert_close(v_gpu.cpu(), v_cpu)
