"""Mesh extraction, export and point-set metrics on analytic fields."""

import json
import struct

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from nsr.mesh import (
    EmptyMeshError,
    chamfer_distance,
    decimate,
    density_grid,
    extract_mesh,
    f_score,
    grid_axis,
    is_watertight,
    iso_surface,
    mesh_to_points,
    rotate_to_y_up,
    save_mesh,
)

RADIUS = 0.3
CENTRE = torch.tensor([0.1, -0.08, 0.05])


def sphere_field(points: torch.Tensor) -> dict[str, torch.Tensor]:
    """SDF-like density: σ = 10 + 100·(R − ‖p − c‖), so the level-10 surface is the sphere; rgb encodes position."""
    r = (points - CENTRE.to(points.device)).norm(dim=-1, keepdim=True)
    return {"sigma": 10.0 + 100.0 * (RADIUS - r), "rgb": (points + 0.5).clamp(0, 1)}


@pytest.fixture(scope="module")
def sphere_mesh():
    return extract_mesh(sphere_field, resolution=64, y_up=False)


def test_grid_axis_matches_release_formula():
    v = np.arange(192)
    np.testing.assert_allclose(grid_axis(192, (-0.45, 0.45)), (v / 191 * 2 - 1) * 0.45, atol=1e-15)


def test_sphere_vertices_on_analytic_radius_and_watertight(sphere_mesh):
    step = 0.9 / 63
    r = np.linalg.norm(sphere_mesh.vertices - CENTRE.numpy(), axis=1)
    assert np.abs(r - RADIUS).max() < step
    s = sphere_mesh.stats
    assert s.watertight and s.vertices == len(sphere_mesh.vertices) and s.faces == len(sphere_mesh.faces)
    assert s.area == pytest.approx(4 * np.pi * RADIUS**2, rel=0.01)
    assert set(s.timings) >= {"density_s", "marching_cubes_s", "color_s", "total_s"}
    # Normals point outwards: positive signed volume ≈ the sphere's.
    tm = trimesh.Trimesh(sphere_mesh.vertices, sphere_mesh.faces, process=False)
    assert tm.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.02)


def test_grid_indexing_is_x_y_z():
    """σ grid is [x, y, z] (meshgrid 'ij'): the off-centre sphere's vertex centroid lands on its centre."""
    vertices, _ = iso_surface(density_grid(sphere_field, 48, (-0.45, 0.45)), 10.0, (-0.45, 0.45))
    np.testing.assert_allclose(vertices.mean(dim=0).numpy(), CENTRE.numpy(), atol=2e-3)


def test_density_grid_is_chunk_size_invariant():
    calls = []

    def field(points):
        calls.append(len(points))
        return sphere_field(points)

    a = density_grid(field, 24, (-0.45, 0.45), chunk_size=24**3)
    big_chunks = len(calls)
    b = density_grid(field, 24, (-0.45, 0.45), chunk_size=1000)
    assert big_chunks == 1 and max(calls[1:]) == 1000 and len(calls) - 1 == int(np.ceil(24**3 / 1000))
    assert a.shape == (24, 24, 24) and torch.equal(a, b)


def test_rotation_to_y_up():
    np.testing.assert_array_equal(rotate_to_y_up(np.array([[1.0, 2.0, 3.0]])), [[1.0, 3.0, -2.0]])
    up = extract_mesh(sphere_field, resolution=48)
    down = extract_mesh(sphere_field, resolution=48, y_up=False)
    np.testing.assert_allclose(up.vertices, rotate_to_y_up(down.vertices), atol=1e-7)
    np.testing.assert_array_equal(up.faces, down.faces)
    assert up.stats.watertight


def test_vertex_colours_come_from_the_field(sphere_mesh):
    expected = np.round(np.clip(sphere_mesh.vertices + 0.5, 0, 1) * 255)
    assert sphere_mesh.colors.dtype == np.uint8
    assert np.abs(sphere_mesh.colors.astype(float) - expected).max() <= 1


def test_empty_field_raises_with_sigma_range():
    with pytest.raises(EmptyMeshError, match=r"never crosses level 10"):
        extract_mesh(lambda p: {"sigma": torch.zeros(len(p), 1), "rgb": torch.zeros(len(p), 3)}, resolution=16)


def test_values_exactly_on_level_give_no_degenerate_faces():
    i = np.arange(24) - 11.5
    x, y, z = np.meshgrid(i, i, i, indexing="ij")
    sigma = np.clip(np.round(16 - np.sqrt(x**2 + y**2 + z**2)), 5, 15).astype(np.float32)  # many nodes == 10
    vertices, faces = iso_surface(torch.from_numpy(sigma), 10.0, (-0.45, 0.45))
    tm = trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False)
    assert tm.area_faces.min() > 1e-9 and tm.is_watertight and is_watertight(faces)


def test_decimation_meets_target_and_keeps_shape(sphere_mesh):
    vertices, faces = decimate(torch.from_numpy(sphere_mesh.vertices), torch.from_numpy(sphere_mesh.faces), 2000)
    assert 500 < len(faces) <= 2000
    r = np.linalg.norm(vertices.numpy() - CENTRE.numpy(), axis=1)
    assert np.abs(r - RADIUS).max() < 0.05
    mesh = extract_mesh(sphere_field, resolution=64, target_faces=2000)
    assert mesh.stats.faces <= 2000 and len(mesh.colors) == mesh.stats.vertices


def _glb_attributes(data: bytes) -> dict:
    length = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20 : 20 + length])["meshes"][0]["primitives"][0]["attributes"]


def test_glb_obj_ply_round_trip_keeps_vertex_colours(sphere_mesh, tmp_path):
    for ext in ("glb", "obj", "ply"):
        path = save_mesh(sphere_mesh, tmp_path / f"m.{ext}")
        loaded = trimesh.load(path, force="mesh", process=False)
        assert len(loaded.faces) == sphere_mesh.stats.faces
        assert loaded.visual.kind == "vertex"
        # Loaders may reorder vertices; compare colours looked up by position.
        distance, ref = cKDTree(sphere_mesh.vertices).query(loaded.vertices)
        assert distance.max() < 1e-6
        diff = loaded.visual.vertex_colors[:, :3].astype(int) - sphere_mesh.colors[ref].astype(int)
        assert np.abs(diff).max() <= 1, ext
    assert "COLOR_0" in _glb_attributes((tmp_path / "m.glb").read_bytes())
    with pytest.raises(FileExistsError):
        save_mesh(sphere_mesh, tmp_path / "m.glb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.glb", "m.obj", "m.ply"]


def test_mesh_to_points_lie_on_surface(sphere_mesh):
    points = mesh_to_points(sphere_mesh, 5000, seed=1)
    assert points.shape == (5000, 3)
    r = np.linalg.norm(points - CENTRE.numpy(), axis=1)
    assert np.abs(r - RADIUS).max() < 0.9 / 63
    np.testing.assert_array_equal(points, mesh_to_points(sphere_mesh, 5000, seed=1))
    np.testing.assert_allclose(points.mean(axis=0), CENTRE.numpy(), atol=0.01)


def test_chamfer_and_f_score_analytic():
    g = np.arange(5, dtype=np.float64)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    assert chamfer_distance(grid, grid) == {"l1": 0.0, "l2": 0.0}
    assert f_score(grid, grid, 0.01) == {"precision": 1.0, "recall": 1.0, "f": 1.0}
    shifted = grid + np.array([0.0, 0.0, 0.1])
    cd = chamfer_distance(torch.from_numpy(grid), shifted)
    assert cd["l1"] == pytest.approx(0.1) and cd["l2"] == pytest.approx(0.01)
    assert f_score(grid, shifted, 0.05)["f"] == 0.0
    assert f_score(grid, shifted, 0.15)["f"] == 1.0
    half = f_score(grid, grid[: len(grid) // 2], 0.01)
    assert half["recall"] == 1.0 and half["precision"] == pytest.approx(62 / 125)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_extraction_on_cuda_matches_cpu(sphere_mesh):
    mesh = extract_mesh(sphere_field, resolution=64, y_up=False, device="cuda")
    np.testing.assert_array_equal(mesh.faces, sphere_mesh.faces)
    np.testing.assert_allclose(mesh.vertices, sphere_mesh.vertices, atol=1e-6)
    assert np.abs(mesh.colors.astype(int) - sphere_mesh.colors.astype(int)).max() <= 1
    assert mesh.stats.watertight
