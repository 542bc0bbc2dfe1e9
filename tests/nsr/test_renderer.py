"""Triplane renderer: analytic fields, the release quirks, patches and chunking."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nsr.cameras import camera_rays, orbit_cameras
from nsr.config import RendererConfig
from nsr.renderer import TriplaneRenderer
from nsr.rendering.patches import PatchLayout, sample_patch_layout
from nsr.rendering.planes import project_to_planes, sample_triplane
from nsr.rendering.ray_box import auto_ray_range, ray_box_intersection
from nsr.rendering.sampling import importance_depths, sample_pdf, stratified_depths

RES = 32  # triplane side


class ConstantField(nn.Module):
    """Replaces the MLP: the same raw σ and colour everywhere."""

    def __init__(self, sigma: float, color=(0.2, 0.4, 0.6)):
        super().__init__()
        self.sigma, self.color = sigma, torch.tensor(color)

    def forward(self, feats):
        b, m, _ = feats.shape  # mean plane features (B, M, C)
        return torch.full((b, m, 1), self.sigma), self.color.expand(b, m, 3)


class StepField(nn.Module):
    """Reads z back from the `z_triplane` features; very dense below z0, empty above: an opaque plane z = z0."""

    def __init__(self, z0: float, color=(0.9, 0.1, 0.3)):
        super().__init__()
        self.z0, self.color = z0, torch.tensor(color)

    def forward(self, feats):
        z = feats[..., :1] * 1.5  # plane 0 is zero, planes 1 and 2 hold z
        b, m, _ = z.shape
        return 1e5 * (self.z0 - z), self.color.expand(b, m, 3)


def z_triplane(box_warp: float) -> torch.Tensor:
    """Triplane `(1, 3, R, R)` whose plane 1 (y, z) stores z along its rows and plane 2 (z, x) along its columns;
    bilinear interpolation of a linear ramp is exact, so the sampled features are z exactly (away from the border)."""
    centres = ((torch.arange(RES) + 0.5) / RES * 2 - 1) * box_warp / 2
    planes = torch.zeros(1, 3, 1, RES, RES)
    planes[0, 1, 0] = centres[:, None].expand(RES, RES)
    planes[0, 2, 0] = centres[None, :].expand(RES, RES)
    return planes.flatten(1, 2)


def renderer(field=None, **overrides) -> TriplaneRenderer:
    r = TriplaneRenderer(RendererConfig(**overrides), plane_channels=1)
    if field is not None:
        r.field = field
    return r


def down_rays(xy, height=2.0):
    """Rays straight down (−z) from z = height through the given (x, y), `(1, R, 3)` each."""
    xy = torch.as_tensor(xy, dtype=torch.float32)
    origins = torch.cat([xy, torch.full((len(xy), 1), height)], 1)[None]
    return origins, torch.tensor([0.0, 0.0, -1.0]).expand_as(origins).contiguous()


def test_constant_density_gives_analytic_alpha_and_colour():
    sigma = 3.0
    r = renderer(ConstantField(sigma), sample_bbox=None)
    origins, dirs = down_rays([[0.0, 0.0], [0.3, -0.2], [-0.44, 0.1]])
    out = r.render_rays(z_triplane(0.9), origins, dirs, deterministic=True)
    density = math.log1p(math.exp(sigma - 1))
    expected = 1 - math.exp(-density * 0.9)  # the box is 0.9 deep along z
    torch.testing.assert_close(out["weight_sum"], torch.full((1, 3, 1), expected), rtol=1e-5, atol=1e-6)
    color = torch.tensor([0.2, 0.4, 0.6])
    rgb = (color * expected + 1 - expected) * 2 - 1
    torch.testing.assert_close(out["features"][0], rgb.expand(3, 3), rtol=1e-5, atol=1e-5)


def test_opaque_plane_renders_its_depth_with_full_alpha():
    z0 = 0.1
    r = renderer(StepField(z0))
    origins, dirs = down_rays([[0.0, 0.0], [0.2, 0.3], [-0.3, -0.1]])
    out = r.render_rays(z_triplane(0.9), origins, dirs, deterministic=True)
    torch.testing.assert_close(out["depth"], torch.full((1, 3, 1), 2.0 - z0), atol=0.9 / 63, rtol=0)
    assert (out["weight_sum"] > 0.999).all()
    torch.testing.assert_close(out["features"][0], (torch.tensor([0.9, 0.1, 0.3]) * 2 - 1).expand(3, 3),
                               atol=2e-3, rtol=0)


def test_tilted_camera_sees_the_plane_at_the_ray_distance():
    """Depth is the distance along the unit ray (not camera z): centre ray of a camera on a 45° orbit."""
    z0, radius = 0.1, 2.0
    r = renderer(StepField(z0))
    cams = orbit_cameras([30.0], [45.0], radius, focal=1.4)
    origins, dirs = camera_rays(cams, 1)
    out = r.render_rays(z_triplane(0.9), origins, dirs, deterministic=True)
    expected = (radius * math.sin(math.radians(45)) - z0) / math.sin(math.radians(45))
    assert abs(float(out["depth"]) - expected) < 0.9 / 63


def test_empty_space_is_white_and_transparent():
    r = renderer(ConstantField(-30.0))
    cams = orbit_cameras([0.0, 90.0], [20.0, 20.0], 1.8, focal=1.4)[None]
    out = r.render(z_triplane(0.9), cams, 8, deterministic=True)
    torch.testing.assert_close(out["rgb"], torch.ones_like(out["rgb"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["alpha"], torch.full_like(out["alpha"], -0.001), atol=1e-6, rtol=0)
    assert out["rgb"].shape == (1, 2, 3, 8, 8) and out["depth"].shape == (1, 2, 1, 8, 8)


def test_depth_of_empty_rays_is_the_nearest_sample_of_the_whole_call():
    """The release clamps Σw·t into [min, max] of all sample depths in the call, so a ray that hits nothing reports
    the call's smallest sample depth."""
    r = renderer(ConstantField(-30.0))
    origins, dirs = down_rays([[0.0, 0.0], [0.1, 0.1]], height=2.0)
    origins[0, 1, 2] = 1.0  # second ray starts lower: near = 0.55
    out = r.render_rays(z_triplane(0.9), origins, dirs, deterministic=True)
    torch.testing.assert_close(out["depth"], torch.full((1, 2, 1), 0.55), atol=1e-6, rtol=0)


def test_ray_box_near_far_and_the_auto_fill_quirk():
    origins = torch.tensor([[[0.0, 0.0, 2.0], [0.2, 0.0, 3.0], [5.0, 5.0, 2.0]]])
    dirs = torch.tensor([[[0.0, 0.0, -1.0]] * 3])
    near, far = ray_box_intersection(origins, dirs, 0.9)
    torch.testing.assert_close(near[0, :2, 0], torch.tensor([1.55, 2.55]))
    torch.testing.assert_close(far[0, :2, 0], torch.tensor([2.45, 3.45]))
    assert float(near[0, 2]) == -1 and float(far[0, 2]) == -2
    near, far = auto_ray_range(origins, dirs, 0.9)
    # the missing ray gets near = min of hitting nears, far = max of hitting *nears* (spec §14.35)
    torch.testing.assert_close(near[0, 2, 0], torch.tensor(1.55))
    torch.testing.assert_close(far[0, 2, 0], torch.tensor(2.55))


def test_stratified_depths_deterministic_and_jittered():
    near, far = torch.tensor([[1.0]]), torch.tensor([[2.0]])
    det = stratified_depths(near, far, 5, deterministic=True)
    torch.testing.assert_close(det[0, :, 0], torch.tensor([1.0, 1.25, 1.5, 1.75, 2.0]))
    g = torch.Generator().manual_seed(0)
    jit = stratified_depths(near, far, 5, generator=g)
    assert ((jit - det) >= 0).all() and ((jit - det) < 0.25).all() and not torch.equal(jit, det)


def test_sample_pdf_inverts_the_cdf():
    bins = torch.linspace(0, 4, 5)[None]  # 4 bins of width 1
    weights = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    u = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    s = sample_pdf(bins, weights, u)
    assert ((s[0, 1] > 1) & (s[0, 1] < 2)).item() and ((s[0, 3] > 3) & (s[0, 3] < 4)).item()
    assert torch.all(s[0, 1:] >= s[0, :-1])


def test_importance_depths_concentrate_on_the_weight_peak():
    depths = torch.linspace(1, 2, 33).reshape(1, 1, 33, 1)
    weights = torch.zeros(1, 1, 32, 1)
    weights[0, 0, 20] = 1.0
    fine = importance_depths(depths, weights, 16, deterministic=True)
    peak = depths[0, 0, 20:22, 0]
    inside = ((fine >= peak[0] - 0.05) & (fine <= peak[1] + 0.05)).float().mean()
    assert inside > 0.8


def test_plane_projection_order_is_xy_yz_zx():
    p = torch.tensor([[[1.0, 2.0, 3.0]]])
    proj = project_to_planes(p)[0, :, 0]
    assert proj.tolist() == [[1.0, 2.0], [2.0, 3.0], [3.0, 1.0]]


def test_triplane_lookup_indexes_width_then_height():
    planes = torch.zeros(1, 3, 1, 4, 4)
    planes[0, 0, 0, 1, 3] = 1.0  # plane 0 (x, y): row 1 ↔ y, column 3 ↔ x
    box = 2.0
    x = ((3 + 0.5) / 4 * 2 - 1) * box / 2
    y = ((1 + 0.5) / 4 * 2 - 1) * box / 2
    feats = sample_triplane(planes, torch.tensor([[[x, y, 0.7]]]), box)
    assert feats.shape == (1, 3, 1, 1) and float(feats[0, 0, 0, 0]) == pytest.approx(1.0)


def test_query_returns_raw_field_without_box_filter():
    torch.manual_seed(0)
    r = renderer(field_features=3)
    tri = torch.randn(1, 3, RES, RES)
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.44, 0.0, 0.1], [0.8, 0.0, 0.0]]])  # last one is outside the box
    out = r.query(tri, points, chunk=2)
    sigma, color = r.field(sample_triplane(tri.unflatten(1, (3, -1)), points, 0.9).mean(1))
    torch.testing.assert_close(out["sigma"], sigma)
    torch.testing.assert_close(out["rgb"], color)
    assert float(out["sigma"][0, 2].detach()) > -1e30


def _random_scene():
    torch.manual_seed(1)
    r = TriplaneRenderer(RendererConfig(depth_samples=16, importance_samples=16), plane_channels=8)
    nn.init.normal_(r.field.fc2.bias, std=1.0)
    with torch.no_grad():
        r.field.fc2.bias[0] = 2.0  # fairly opaque
    tri = F.interpolate(torch.randn(2, 24, 8, 8), size=RES, mode="bilinear")
    cams = orbit_cameras([0.0, 120.0, 240.0, 60.0], [20.0, 10.0, 30.0, -5.0], 1.8, focal=1.4).reshape(2, 2, 25)
    return r, tri, cams


def test_patch_render_equals_crop_of_full_render():
    r, tri, cams = _random_scene()
    full = r.render(tri, cams, 24, deterministic=True)
    layout = PatchLayout(torch.tensor([[0, 5], [13, 8]]), torch.tensor([[3, 0], [11, 6]]), 11)
    part = r.render(tri, cams, 24, patch=layout, deterministic=True)
    for key in ("rgb", "alpha", "weights"):
        torch.testing.assert_close(part[key], layout.crop(full[key]), atol=1e-5, rtol=0)


def test_patch_depth_equals_crop_where_the_ray_is_opaque():
    """Depth of rays that are not opaque follows the call-wide clamp (see above), so compare opaque rays only."""
    r = renderer(StepField(0.1))
    tri = z_triplane(0.9)
    cams = orbit_cameras([0.0, 100.0], [60.0, 45.0], 1.8, focal=1.4)[None]
    full = r.render(tri, cams, 20, deterministic=True)
    layout = PatchLayout(torch.tensor([[4, 9]]), torch.tensor([[6, 2]]), 9)
    part = r.render(tri, cams, 20, patch=layout, deterministic=True)
    opaque = layout.crop(full["weights"]) > 0.999
    assert opaque.float().mean() > 0.5
    torch.testing.assert_close(part["depth"][opaque], layout.crop(full["depth"])[opaque], atol=1e-5, rtol=0)


def test_chunked_render_equals_unchunked():
    r, tri, cams = _random_scene()
    whole = r.render(tri, cams, 16, deterministic=True)
    chunked = r.render(tri, cams, 16, deterministic=True, chunk=37)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-6, rtol=0)


def test_stochastic_render_follows_the_generator():
    r, tri, cams = _random_scene()
    a = r.render(tri, cams, 8, generator=torch.Generator().manual_seed(3))
    b = r.render(tri, cams, 8, generator=torch.Generator().manual_seed(3))
    c = r.render(tri, cams, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a["rgb"], b["rgb"], atol=0, rtol=0)
    assert not torch.equal(a["rgb"], c["rgb"])


def test_render_under_bf16_autocast_stays_float32():
    r, tri, cams = _random_scene()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = r.render(tri.bfloat16(), cams, 8, deterministic=True)
    ref = r.render(tri.bfloat16().float(), cams, 8, deterministic=True)
    assert out["rgb"].dtype == torch.float32
    torch.testing.assert_close(out["rgb"], ref["rgb"], atol=1e-6, rtol=0)


def test_patch_layout_uv_crop_and_sampling():
    layout = PatchLayout(torch.tensor([[2]]), torch.tensor([[5]]), 3)
    u, v = layout.uv(10)
    assert torch.allclose(u[0, :3], torch.tensor([5.5, 6.5, 7.5]) / 10)
    assert torch.allclose(v[0, ::3], torch.tensor([2.5, 3.5, 4.5]) / 10)
    img = torch.arange(100.0).reshape(1, 1, 1, 10, 10)
    assert layout.crop(img)[0, 0, 0].tolist() == [[25, 26, 27], [35, 36, 37], [45, 46, 47]]
    g = torch.Generator().manual_seed(0)
    bbox = torch.tensor([[[10.0, 12.0, 30.0, 20.0]] * 3] * 2)
    lay = sample_patch_layout(2, 3, 64, 16, bbox, foreground_prob=1.0, generator=g)
    assert lay.top.shape == (2, 3) and (lay.top >= 0).all() and (lay.top + 16 <= 64).all()
    # every window overlaps the box rows [10, 30] and columns [12, 20]
    assert ((lay.top < 30) & (lay.top + 16 > 10)).all() and ((lay.left < 20) & (lay.left + 16 > 12)).all()
    anywhere = sample_patch_layout(4, 4, 64, 16, None, generator=g)
    assert (anywhere.left + 16 <= 64).all() and (anywhere.top >= 0).all()
    with pytest.raises(ValueError, match="exceeds"):
        sample_patch_layout(1, 1, 8, 16)


class ColumnField(nn.Module):
    """Reads (x, y) back from `xy_triplane`: an opaque square column |x|, |y| < half through the whole box height,
    i.e. an object that touches the top (and bottom) of the box as tall normalised objects do. Dividing by the
    constant channel undoes the zero padding's fade in the planes' outer half texel (without it the box's vertical
    edges would read as x = y = 0)."""

    def __init__(self, half: float):
        super().__init__()
        self.half = half

    def forward(self, feats):
        b, m, _ = feats.shape
        xy = feats[..., :2] / feats[..., 2:3].clamp_min(1e-6)
        inside = self.half - xy.abs().amax(-1, keepdim=True)
        return 1e5 * inside, torch.tensor([0.2, 0.6, 0.3]).expand(b, m, 3)


def xy_triplane(box_warp: float) -> torch.Tensor:
    """Triplane `(1, 3·3, R, R)`: plane 0 (x, y) holds 3x, 3y and 3 in its three channels (the field MLP's input is
    the mean over the three planes), planes 1 and 2 are zero."""
    centres = ((torch.arange(RES) + 0.5) / RES * 2 - 1) * box_warp / 2
    planes = torch.zeros(1, 3, 3, RES, RES)
    planes[0, 0, 0] = 3 * centres[None, :].expand(RES, RES)
    planes[0, 0, 1] = 3 * centres[:, None].expand(RES, RES)
    planes[0, 0, 2] = 3.0
    return planes.flatten(1, 2)


def test_an_object_touching_the_top_of_the_box_is_not_clipped():
    """Nothing between the box filter, the auto near/far and the sample placement cuts a tall object short: its
    silhouette reaches the same top row as the analytic column [-h, h]² × [-0.45, 0.45] seen from above the horizon,
    and every pixel whose ray crosses the column well inside is opaque."""
    half, res = 0.15, 48
    r = renderer(ColumnField(half))
    cams = orbit_cameras([30.0], [20.0], 1.8, focal=1.4)
    out = r.render(xy_triplane(0.9), cams[None], res, deterministic=True)
    alpha = out["weights"][0, 0, 0]
    origins, dirs = camera_rays(cams, res)
    lo = torch.tensor([-half, -half, -0.45])
    hi = torch.tensor([half, half, 0.45])
    t0, t1 = (lo - origins) / dirs, (hi - origins) / dirs
    path = (torch.minimum(t0, t1).amax(-1) - torch.maximum(t0, t1).amin(-1)).neg().clamp_min(0).reshape(res, res)
    assert (alpha[path > 0.05] > 0.98).all()
    assert (alpha[path == 0] < 0.02).all()
    rows = lambda mask: torch.nonzero(mask.any(1))[:, 0]  # noqa: E731
    assert abs(int(rows(alpha > 0.5)[0]) - int(rows(path > 0)[0])) <= 1  # the top row of the silhouette
    assert abs(int(rows(alpha > 0.5)[-1]) - int(rows(path > 0)[-1])) <= 1  # and the bottom row
