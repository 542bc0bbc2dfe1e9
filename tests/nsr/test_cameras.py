"""Analytic checks of the camera conventions (nsr/cameras.py, spec §1) and parity with the golden fixture inputs."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nsr.cameras import (
    FFHQ_FOCAL,
    K22,
    OBJAVERSE_FOCAL,
    SHAPENET_FOCAL,
    camera_depth,
    camera_rays,
    ffhq_rig,
    gobjaverse_rig,
    objv_eval_pose,
    orbit_cameras,
    pixel_centres,
    plucker,
    plucker_image,
    project,
    rays_from_uv,
    shapenet_rig,
    split_cameras,
    turntable,
)

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "reference" / "golden"


def _positions(cameras: torch.Tensor) -> torch.Tensor:
    return split_cameras(cameras.double())[0][:, :3, 3]


def _elevation_deg(positions: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.asin(positions[:, 2] / positions.norm(dim=-1)))


def _azimuth_deg(positions: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(positions[:, 1], positions[:, 0])) % 360.0


@pytest.fixture
def ring() -> torch.Tensor:
    return orbit_cameras([0.0, 45.0, 130.0, 250.0], [20.0, -10.0, 35.0, 5.0], 1.8, OBJAVERSE_FOCAL,
                         dtype=torch.float64)


def test_rotation_is_orthonormal_right_handed_and_looks_at_origin(ring):
    c2w, K = split_cameras(ring)
    rot = c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=rot.dtype).expand_as(rot), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(4, dtype=rot.dtype), atol=1e-12)
    forward = rot[:, :, 2]
    assert torch.allclose(forward, -torch.nn.functional.normalize(c2w[:, :3, 3], dim=-1), atol=1e-12)
    # OpenCV: image-down (+y) has a negative world-z component for cameras not looking along the pole
    assert (rot[:, 2, 1] < 0).all()
    assert torch.allclose(K[:, 0, 0], torch.full((4,), OBJAVERSE_FOCAL, dtype=K.dtype))
    assert torch.allclose(K[:, 2, 2], torch.full((4,), K22, dtype=K.dtype))


def test_origin_projects_to_image_centre(ring):
    uv, z = project(torch.zeros(4, 1, 3, dtype=ring.dtype), ring)
    assert torch.allclose(uv, torch.full_like(uv, 0.5), atol=1e-12)
    assert torch.allclose(z, torch.full_like(z, 1.8), atol=1e-12)


def test_directions_are_unit_and_centre_pixel_ray_hits_origin(ring):
    origins, dirs = camera_rays(ring, 9)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(4, 81, dtype=ring.dtype), atol=1e-12)
    centre = 4 * 9 + 4  # odd resolution: the middle pixel's centre is u = v = 0.5
    assert torch.allclose(torch.linalg.cross(origins[:, centre], dirs[:, centre], dim=-1),
                          torch.zeros(4, 3, dtype=ring.dtype), atol=1e-12)
    forward = split_cameras(ring)[0][:, :3, 2]
    assert torch.allclose(dirs[:, centre], forward, atol=1e-12)


def test_pixel_order_is_row_major_with_pixel_centres():
    u, v = pixel_centres(4)
    assert torch.allclose(u[:4], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(v[:4], torch.full((4,), 0.125))
    assert torch.allclose(v[4:8], torch.full((4,), 0.375))


def test_plucker_moment_is_perpendicular_and_origin_invariant(ring):
    origins, dirs = camera_rays(ring, 8)
    emb = plucker(origins, dirs)
    moment, direction = emb[..., :3], emb[..., 3:]
    assert torch.allclose((moment * direction).sum(-1), torch.zeros(4, 64, dtype=ring.dtype), atol=1e-12)
    shift = torch.linspace(-2.0, 3.0, 64, dtype=ring.dtype)[None, :, None]
    moved = plucker(origins + shift * dirs, dirs)
    assert torch.allclose(moved, emb, atol=1e-12)


def test_plucker_image_layout_matches_rays(ring):
    image = plucker_image(ring, 5)
    origins, dirs = camera_rays(ring, 5)
    row, col = 3, 1
    assert torch.allclose(image[:, 3:, row, col], dirs[:, row * 5 + col])
    assert torch.allclose(image[:, :3, row, col], torch.linalg.cross(origins[:, row * 5 + col], dirs[:, row * 5 + col],
                                                                     dim=-1))


def test_ray_through_pixel_centre_reprojects_to_it(ring):
    res = 16
    u, v = pixel_centres(res, dtype=ring.dtype)
    origins, dirs = rays_from_uv(ring, u, v)
    points = origins + 1.3 * dirs
    uv, _ = project(points, ring)
    assert torch.allclose(uv[..., 0], u.expand(4, -1), atol=1e-12)
    assert torch.allclose(uv[..., 1], v.expand(4, -1), atol=1e-12)
    pixel = uv * res - 0.5  # pixel index convention of project()'s docstring
    assert torch.allclose(pixel[0, res * 2 + 7], torch.tensor([7.0, 2.0], dtype=ring.dtype), atol=1e-9)


def test_camera_depth_is_distance_along_optical_axis(ring):
    forward = split_cameras(ring)[0][:, :3, 2]
    points = _positions(ring)[:, None] + 1.1 * forward[:, None] + 0.2 * split_cameras(ring)[0][:, None, :3, 0]
    assert torch.allclose(camera_depth(points, ring), torch.full((4, 1), 1.1, dtype=ring.dtype), atol=1e-12)


def test_objv_eval_pose_layout():
    cams = objv_eval_pose(dtype=torch.float64)
    assert cams.shape == (40, 25)
    pos = _positions(cams)
    radius = pos.norm(dim=-1)
    elevation = _elevation_deg(pos)
    upper, lower = list(range(24)), list(range(27, 39))
    assert torch.allclose(radius[upper], torch.full((24,), 1.7719, dtype=pos.dtype), atol=1e-12)
    assert torch.allclose(radius[lower], torch.full((12,), 1.6945, dtype=pos.dtype), atol=1e-12)
    assert torch.allclose(elevation[upper], torch.full((24,), 13.73, dtype=pos.dtype), atol=1e-9)
    assert torch.allclose(elevation[lower], torch.full((12,), -3.99, dtype=pos.dtype), atol=1e-9)
    assert torch.allclose(_azimuth_deg(pos[upper]), torch.arange(24, dtype=pos.dtype) * 15.0, atol=1e-9)
    assert torch.allclose(_azimuth_deg(pos[lower]), torch.arange(12, dtype=pos.dtype) * 30.0, atol=1e-9)
    assert torch.equal(cams[24], cams[0]) and torch.equal(cams[39], cams[27])
    assert torch.equal(pos[25], torch.tensor([0.0, 0.0, 1.7719], dtype=pos.dtype))
    assert torch.equal(pos[26], torch.tensor([0.0, 0.0, -1.7719], dtype=pos.dtype))
    forward = split_cameras(cams)[0][:, :3, 2]
    assert torch.allclose(forward[25], torch.tensor([0.0, 0.0, -1.0], dtype=pos.dtype), atol=1e-12)
    assert torch.allclose(forward[26], torch.tensor([0.0, 0.0, 1.0], dtype=pos.dtype), atol=1e-12)
    # top view continues the azimuth-0 ring over the pole: image-up (−y_cam) points along world −x
    assert torch.allclose(split_cameras(cams)[0][25, :3, 1], torch.tensor([1.0, 0.0, 0.0], dtype=pos.dtype), atol=1e-12)


def test_gobjaverse_rig_follows_its_arguments():
    cams = gobjaverse_rig(radius=1.6, elevation_deg=22.0, lower_radius=1.9, lower_elevation_deg=4.0,
                          dtype=torch.float64)
    pos = _positions(cams)
    assert torch.allclose(_elevation_deg(pos[:24]), torch.full((24,), 22.0, dtype=pos.dtype), atol=1e-9)
    assert torch.allclose(_elevation_deg(pos[27:39]), torch.full((12,), 4.0, dtype=pos.dtype), atol=1e-9)
    assert torch.allclose(pos[27:39].norm(dim=-1), torch.full((12,), 1.9, dtype=pos.dtype), atol=1e-12)
    assert torch.allclose(pos[25:27].norm(dim=-1), torch.full((2,), 1.6, dtype=pos.dtype), atol=1e-12)


def test_turntable_azimuth_spacing():
    cams = turntable(7, radius=2.0, elevation_deg=10.0, dtype=torch.float64)
    az = _azimuth_deg(_positions(cams))
    assert torch.allclose(az, torch.arange(7, dtype=az.dtype) * (360.0 / 7), atol=1e-9)
    assert torch.allclose(_positions(cams).norm(dim=-1), torch.full((7,), 2.0, dtype=az.dtype), atol=1e-12)
    with pytest.raises(ValueError, match="at least one view"):
        turntable(0)


def test_shapenet_and_ffhq_rigs():
    shapenet = shapenet_rig(dtype=torch.float64)
    assert shapenet.shape == (50, 25)
    assert torch.allclose(_positions(shapenet).norm(dim=-1), torch.full((50,), 1.2, dtype=shapenet.dtype))
    assert (_elevation_deg(_positions(shapenet)) > 0).all()
    assert torch.allclose(split_cameras(shapenet)[1][:, 0, 0], torch.full((50,), SHAPENET_FOCAL, dtype=shapenet.dtype))
    ffhq = ffhq_rig(dtype=torch.float64)
    pos = _positions(ffhq)
    assert torch.allclose(pos.norm(dim=-1), torch.full((36,), 2.7, dtype=pos.dtype))
    assert torch.allclose(_elevation_deg(pos), torch.full((36,), 7.31, dtype=pos.dtype), atol=1e-9)
    expected_az = (135.0 - 2.53 * torch.arange(36, dtype=pos.dtype)) % 360.0
    assert torch.allclose(_azimuth_deg(pos), expected_az, atol=1e-9)
    assert math.isclose(float(split_cameras(ffhq)[1][0, 0, 0]), FFHQ_FOCAL)


def _make_inputs():
    if not (GOLDEN / "make_inputs.py").exists():
        pytest.skip("the shared golden fixture folder is absent")
    spec = importlib.util.spec_from_file_location("golden_make_inputs", GOLDEN / "make_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_orbit_cameras_match_golden_inputs_bit_exactly():
    mi = _make_inputs()
    ours = orbit_cameras(mi.AZIM_DEG, mi.ELEV_DEG, mi.RADIUS, mi.FOCAL_NORM)
    assert np.array_equal(ours.numpy(), mi.cameras().astype(np.float32))
    # the rig constant differs from the fixture's 1/0.72 only in the 7th digit (1422.222 / 1024)
    objaverse = orbit_cameras(mi.AZIM_DEG, mi.ELEV_DEG, mi.RADIUS, OBJAVERSE_FOCAL)
    assert np.allclose(objaverse.numpy(), mi.cameras(), atol=2e-7, rtol=0)


def test_plucker_channels_match_golden_encoder_input():
    mi = _make_inputs()
    cams = mi.cameras()
    ours = plucker_image(torch.from_numpy(cams), mi.RES).numpy().astype(np.float32)
    expected = []
    for c in cams:
        origins, dirs = mi.rays(c)
        expected.append(np.concatenate([np.cross(origins, dirs), dirs], -1).transpose(2, 0, 1))
    expected = np.stack(expected).astype(np.float32)
    assert np.max(np.abs(ours - expected)) <= 1.2e-7
    golden = np.load(GOLDEN / "golden_vae_objaverse.npz")
    idx = golden["input_x__idx"]
    full = np.zeros(tuple(golden["input_x__shape"]), dtype=np.float32)
    full[:, 3:9] = ours
    channel = np.unravel_index(idx, full.shape)[1]
    in_plucker = (channel >= 3) & (channel < 9)
    assert in_plucker.sum() > 1000
    np.testing.assert_allclose(full.reshape(-1)[idx[in_plucker]], golden["input_x__val"][in_plucker], atol=1.2e-7,
                               rtol=0)
