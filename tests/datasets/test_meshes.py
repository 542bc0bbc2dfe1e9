"""Mesh loading, normalisation and the torch rasteriser against analytic references (float64 ray casts)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.meshes.load import MeshAsset, MeshError, find_meshes, load_mesh, normalise
from datasets.meshes.raster import MeshTensors, RasterConfig, rasterise, render_mesh
from nsr.cameras import OBJAVERSE_FOCAL, camera_rays, gobjaverse_rig, orbit_cameras, split_cameras

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/mesh_files.py (tests/ is not a package)
from mesh_files import QUADRANTS, position_colored_sphere, textured_quad, write_bad_meshes, write_good_meshes  # noqa: E402

R = 48


def _cameras() -> torch.Tensor:
    """Two oblique orbit cameras (one below the equator) and the rig's top view, `(3, 25)` float64."""
    orbit = orbit_cameras([30.0, 200.0], [20.0, -35.0], [2.0, 1.6], OBJAVERSE_FOCAL, dtype=torch.float64)
    return torch.cat([orbit, gobjaverse_rig(dtype=torch.float64)[25:26]])


def _rays(cameras):
    """float64 rays `(V, R*R, 3)` and the cameras' forward axes `(V, 1, 3)`."""
    origins, directions = camera_rays(cameras, R)
    forward = split_cameras(cameras)[0][:, None, :3, 2]
    return origins.numpy(), directions.numpy(), forward.numpy()


def _asset(trimesh_mesh) -> MeshAsset:
    corners = np.asarray(trimesh_mesh.vertices)[trimesh_mesh.faces]
    count = len(corners)
    return MeshAsset(corners, np.full(corners.shape, 0.5), np.zeros((count, 3, 2)), np.full(count, -1))


def _render(asset, cameras, **config):
    out = render_mesh(MeshTensors(asset), cameras.float(), R, RasterConfig(**config))
    return {k: getattr(out, k).permute(0, 2, 3, 1).reshape(len(cameras), R * R, -1).double().numpy()
            for k in ("alpha", "depth", "normal", "color")}


def test_cube_silhouette_depth_and_normals_match_the_analytic_box():
    import trimesh

    cube = trimesh.creation.box(extents=(0.9, 0.9, 0.9))
    cameras = _cameras()
    out = _render(_asset(cube), cameras)
    o, d, forward = _rays(cameras)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-0.45 - o) / d, (0.45 - o) / d
    t_near = np.minimum(t1, t2)
    enter, leave = t_near.max(-1), np.maximum(t1, t2).min(-1)
    hit = enter <= leave
    assert hit.sum() > 500 and (~hit).sum() > 500
    np.testing.assert_array_equal(out["alpha"][..., 0] > 0, hit)  # to the pixel
    depth = enter * (d * forward).sum(-1)
    assert np.abs(out["depth"][..., 0][hit] - depth[hit]).max() < 1e-3
    assert (out["depth"][~hit] == 0).all()
    axis = t_near.argmax(-1)
    normal = np.zeros(d.shape)
    np.put_along_axis(normal, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
    np.testing.assert_allclose(out["normal"][hit], normal[hit], atol=1e-5)


def _ray_triangles(o, d, tris):
    """Nearest hit (t, face) of rays o, d `(P, 3)` with triangles `(F, 3, 3)`, float64 Möller–Trumbore."""
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    pvec = np.cross(d[:, None], e2[None])
    det = (e1[None] * pvec).sum(-1)
    tvec = o[:, None] - tris[None, :, 0]
    u = (tvec * pvec).sum(-1) / det
    qvec = np.cross(tvec, e1[None])
    v = (d[:, None] * qvec).sum(-1) / det
    t = (e2[None] * qvec).sum(-1) / det
    t = np.where((u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0), t, np.inf)
    return t.min(-1), t.argmin(-1)


def test_icosphere_matches_a_float64_ray_cast_and_normals_point_outward():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.45)
    tris = np.asarray(sphere.vertices)[sphere.faces]
    cameras = _cameras()
    out = _render(_asset(sphere), cameras)
    o, d, forward = _rays(cameras)
    for k in range(len(cameras)):
        t, face = _ray_triangles(o[k], d[k], tris)
        hit = np.isfinite(t)
        np.testing.assert_array_equal(out["alpha"][k, :, 0] > 0, hit)
        depth = t * (d[k] * forward[k]).sum(-1)
        assert np.abs(out["depth"][k, hit, 0] - depth[hit]).max() < 1e-3
        normal = np.asarray(sphere.face_normals)[face[hit]]
        np.testing.assert_allclose(out["normal"][k, hit], normal, atol=1e-5)
        points = o[k, hit] + d[k, hit] * t[hit, None]
        assert ((out["normal"][k, hit] * points).sum(-1) > 0.4).all()  # outward on a sphere of radius 0.45


def test_a_random_triangle_soup_matches_a_float64_ray_cast():
    # thin, large, tiny and overlapping triangles in every orientation: coverage and the nearest triangle per pixel
    rng = np.random.default_rng(3)
    centres = rng.uniform(-0.35, 0.35, (300, 1, 3))
    tris = centres + rng.normal(0, 1, (300, 3, 3)) * rng.choice([0.003, 0.03, 0.15], (300, 1, 1))
    cameras = _cameras()
    frags = rasterise(torch.as_tensor(tris, dtype=torch.float32), cameras.float(), R)
    o, d, forward = _rays(cameras)
    for k in range(len(cameras)):
        t, face = _ray_triangles(o[k], d[k], tris)
        hit = np.isfinite(t)
        mine = frags.pixel[(frags.pixel // (R * R)) == k] % (R * R)
        np.testing.assert_array_equal(np.sort(mine.numpy()), np.flatnonzero(hit))
        on_view = (frags.pixel // (R * R)) == k
        depth = (t * (d[k] * forward[k]).sum(-1))[hit]
        assert np.abs(frags.depth[on_view].numpy() - depth).max() < 1e-3
        assert (frags.face[on_view].numpy() == face[hit]).mean() > 0.999  # ties only where triangles cross


def test_candidate_chunks_and_view_groups_do_not_change_the_fragments():
    import trimesh

    corners = torch.tensor(np.asarray(trimesh.creation.icosphere(subdivisions=2, radius=0.45).triangles),
                              dtype=torch.float32)
    cameras = _cameras().float()
    whole = rasterise(corners, cameras, R)
    for chunked in (rasterise(corners, cameras, R, max_candidates=500),
                    rasterise(corners, cameras, R, max_triangle_views=len(corners))):  # one view at a time
        assert torch.equal(whole.pixel, chunked.pixel) and torch.equal(whole.face, chunked.face)
        assert torch.equal(whole.depth, chunked.depth)
        assert torch.equal(whole.bary, chunked.bary)


def test_closed_outward_meshes_skip_back_faces_without_changing_the_render(tmp_path):
    import trimesh

    write_good_meshes(tmp_path)
    flags = {name: load_mesh(tmp_path / name).closed for name in ("sphere.ply", "box.stl", "two.glb", "quad.glb")}
    assert flags["sphere.ply"].all() and flags["box.stl"].all() and flags["two.glb"].all()  # STL: merged first
    assert not flags["quad.glb"].any()  # open
    inverted = trimesh.creation.icosphere(subdivisions=2, radius=0.45)
    inverted.invert()
    inverted.export(tmp_path / "inside_out.ply")
    assert not load_mesh(tmp_path / "inside_out.ply").closed.any()  # wound inwards: its back faces are visible

    asset = load_mesh(tmp_path / "sphere.ply")
    corners = torch.as_tensor(asset.corners, dtype=torch.float32)
    cameras = _cameras().float()
    plain = rasterise(corners, cameras, R)
    culled = rasterise(corners, cameras, R, cull=torch.as_tensor(asset.closed))
    assert torch.equal(plain.pixel, culled.pixel) and torch.equal(plain.face, culled.face)
    assert torch.equal(plain.depth, culled.depth)


def _expected_quad_colors(cameras):
    """Texture colour `(V, P, 3)` where the rays meet the normalised quad (z = 0, [-0.45, 0.45]²), and a mask of
    rays that land inside a quadrant, more than 2 texels from any texel-block boundary."""
    o, d, _ = _rays(cameras)
    t = -o[..., 2] / d[..., 2]
    p = o + d * t[..., None]
    uv = (p[..., :2] + 0.45) / 0.9
    margin = 2.0 / (2 * 16)
    safe = ((np.abs(uv - 0.5) > margin) & (uv > margin) & (uv < 1 - margin)).all(-1)
    col = (uv[..., 0] >= 0.5).astype(int)
    row = (uv[..., 1] < 0.5).astype(int)  # v up, image rows down
    return QUADRANTS[row, col] / 255.0, safe


@pytest.mark.parametrize("name", ["quad/quad.obj", "quad.glb"])
def test_uv_textures_reproduce_their_colours(tmp_path, name):
    write_good_meshes(tmp_path)
    asset = normalise(load_mesh(tmp_path / name))
    assert len(asset.textures) == 1 and (asset.texture_ids == 0).all()
    cameras = torch.cat([gobjaverse_rig(dtype=torch.float64)[25:26],
                         orbit_cameras([40.0], [50.0], [1.8], OBJAVERSE_FOCAL, dtype=torch.float64)])
    out = _render(asset, cameras, lighting=False)
    expected, safe = _expected_quad_colors(cameras)
    assert safe.sum() > 400
    np.testing.assert_allclose(out["color"][safe], expected[safe], atol=1e-4)


def test_gltf_base_colour_factor_multiplies_the_texture(tmp_path):
    textured_quad(factor=(128, 255, 64, 255)).export(tmp_path / "tinted.glb")
    asset = normalise(load_mesh(tmp_path / "tinted.glb"))
    cameras = gobjaverse_rig(dtype=torch.float64)[25:26]
    out = _render(asset, cameras, lighting=False)
    expected, safe = _expected_quad_colors(cameras)
    np.testing.assert_allclose(out["color"][safe], expected[safe] * np.array([128, 255, 64]) / 255, atol=1e-4)


def test_vertex_colours_interpolate_to_the_surface_colour():
    sphere = position_colored_sphere()
    cameras = _cameras()
    corners = np.asarray(sphere.vertices)[sphere.faces]
    colors = (np.asarray(sphere.visual.vertex_colors)[:, :3] / 255.0)[sphere.faces]
    asset = MeshAsset(corners, colors, np.zeros((len(corners), 3, 2)), np.full(len(corners), -1))
    out = _render(asset, cameras, lighting=False)
    o, d, forward = _rays(cameras)
    hit = out["alpha"][..., 0] > 0
    points = o + d * (out["depth"][..., 0] / (d * forward).sum(-1))[..., None]
    # the colour is linear in the position, so barycentric interpolation reproduces it (within uint8 rounding)
    assert np.abs(out["color"][hit] - (points[hit] / 0.9 + 0.5)).max() < 0.5 / 255 + 1e-4


@pytest.mark.parametrize("suffix", ["ply", "glb"])  # PLY vertex properties, glTF COLOR_0
def test_vertex_colours_survive_loading(tmp_path, suffix):
    position_colored_sphere().export(tmp_path / f"sphere.{suffix}")
    asset = load_mesh(tmp_path / f"sphere.{suffix}")
    points = asset.corners.reshape(-1, 3)
    np.testing.assert_allclose(asset.colors.reshape(-1, 3), points / 0.9 + 0.5, atol=0.5 / 255 + 1e-6)


def test_off_and_stl_get_the_flat_default_colour_and_lighting_shades_it(tmp_path):
    write_good_meshes(tmp_path)
    for name in ("box.off", "box.stl"):
        asset = normalise(load_mesh(tmp_path / name))
        assert asset.num_faces == 12 and np.allclose(asset.colors, 0.7)
        np.testing.assert_allclose(np.abs(asset.corners).max(axis=(0, 1)), 0.45)
    out = _render(asset, gobjaverse_rig(dtype=torch.float64)[25:26])  # top view: only the +z face is seen
    lit = out["color"][out["alpha"][..., 0] > 0]
    key = np.array([0.35, 0.25, 0.90]) / np.linalg.norm([0.35, 0.25, 0.90])
    np.testing.assert_allclose(lit, 0.7 * (0.5 + 0.4 * key[2]), atol=1e-5)  # ambient + key; the fill is below


def test_gltf_scene_with_node_transforms_and_y_up(tmp_path):
    import trimesh

    write_good_meshes(tmp_path)
    asset = load_mesh(tmp_path / "two.glb")
    points = asset.corners.reshape(-1, 3)
    assert asset.num_faces == 12 + 80
    np.testing.assert_allclose([points.min(0), points.max(0)], [[-0.5, -0.5, -0.5], [2.5, 0.5, 0.5]], atol=1e-6)
    box = normalise(load_mesh(tmp_path / "two.glb"))
    np.testing.assert_allclose(box.corners.reshape(-1, 3).max(0), [0.45, 0.15, 0.15], atol=1e-6)
    tall = tmp_path / "tall.glb"
    trimesh.creation.box(extents=(0.2, 1.0, 0.4)).export(tall)
    z_up = normalise(load_mesh(tall), up="y").corners.reshape(-1, 3)
    np.testing.assert_allclose(z_up.max(0), [0.09, 0.18, 0.45], atol=1e-6)  # +y became +z


def test_supersampling_antialiases_edges_only():
    import trimesh

    asset = _asset(trimesh.creation.icosphere(subdivisions=2, radius=0.45))
    cameras = _cameras()
    exact, smooth = _render(asset, cameras), _render(asset, cameras, supersample=2)
    alpha = smooth["alpha"][..., 0]
    assert set(np.unique(alpha * 4).astype(int)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(smooth["depth"][..., 0] > 0, alpha > 0)
    assert (exact["alpha"] == 1).sum() > (smooth["alpha"] == 1).sum() * 0.9
    inner = (alpha == 1)
    np.testing.assert_allclose(np.linalg.norm(smooth["normal"][inner], axis=-1), 1.0, atol=1e-5)


def test_bad_files_raise_one_line_naming_file_and_problem(tmp_path):
    expected = write_bad_meshes(tmp_path)
    assert len(find_meshes(tmp_path)) == len(expected)
    for rel, phrase in expected.items():
        with pytest.raises(MeshError) as error:
            load_mesh(tmp_path / rel)
        message = str(error.value)
        assert "\n" not in message and message.startswith(str(tmp_path / rel)) and phrase in message, message


def test_find_meshes_counts_a_gltf_folder_as_one_object(tmp_path):
    import trimesh

    write_good_meshes(tmp_path)
    folder = tmp_path / "gltf_object"
    folder.mkdir()
    for name, data in trimesh.creation.box().export(file_type="gltf").items():
        (folder / name).write_bytes(data)
    found = [p.relative_to(tmp_path).as_posix() for p in find_meshes(tmp_path)]
    assert found == ["box.off", "box.stl", "gltf_object/model.gltf", "quad.glb", "quad/quad.obj", "sphere.ply",
                     "two.glb"]
    assert load_mesh(folder / "model.gltf").num_faces == 12


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_render_equals_cpu():
    import trimesh

    asset = _asset(trimesh.creation.icosphere(subdivisions=2, radius=0.45))
    cameras = _cameras().float()
    cpu = render_mesh(MeshTensors(asset), cameras, R)
    gpu = render_mesh(MeshTensors(asset, "cuda"), cameras.cuda(), R)
    assert torch.equal(cpu.alpha, gpu.alpha.cpu())
    torch.testing.assert_close(cpu.depth, gpu.depth.cpu(), atol=1e-5, rtol=0)
