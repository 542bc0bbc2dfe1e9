"""The procedural dataset: grammar, labels and captions, determinism, the sphere tracer against an analytic sphere,
SDF values of every primitive, and surface samples."""
import itertools
import json

import numpy as np
import pytest
import torch

from datasets.procedural import (
    CATEGORY_NAMES,
    PALETTE,
    ObjectSpec,
    PartSpec,
    TracerConfig,
    generate_object,
    query_albedo,
    query_sdf,
    render,
    render_objects,
    render_records,
    sample_surface,
)
from datasets.procedural.captions import Accent, make_captions
from datasets.procedural.spec import OBJECT_HALF_EXTENT
from datasets.rig import object_rig
from nsr.cameras import OBJAVERSE_FOCAL, camera_rays, orbit_cameras, split_cameras

SPHERE_RADIUS = 0.3


def sphere_spec(color="red") -> ObjectSpec:
    return ObjectSpec("sphere", [PartSpec("sphere", [SPHERE_RADIUS], [0.0, 0.0, 0.0], color=color)])


def test_grammar_categories_fit_the_box_and_label_their_parts():
    assert len(CATEGORY_NAMES) >= 10
    for index in range(2 * len(CATEGORY_NAMES)):
        spec = generate_object(11, index)
        assert spec.category == CATEGORY_NAMES[index % len(CATEGORY_NAMES)]
        low, high = spec.bounds()
        assert low.min() >= -OBJECT_HALF_EXTENT - 1e-9 and high.max() <= OBJECT_HALF_EXTENT + 1e-9
        assert np.max(high - low) == pytest.approx(2 * OBJECT_HALF_EXTENT)
        labels = spec.labels
        assert labels["category"] == spec.category
        assert labels["main_color"] in PALETTE
        assert set(labels["part_colors"]) == {p.group for p in spec.parts}
        assert all(p.color == labels["part_colors"][p.group] for p in spec.parts)
        captions = labels["captions"]
        assert len(set(captions)) == 4
        assert captions[0].split()[:3] in (["a", labels["main_color"], spec.category],
                                           ["an", labels["main_color"], spec.category])
        accents = {c for c in labels["part_colors"].values() if c != labels["main_color"]}
        assert all(c in captions[0] for c in accents)


def test_surfaces_stay_inside_the_box():
    for index in range(len(CATEGORY_NAMES)):
        spec = generate_object(3, index)
        samples = sample_surface(spec, 500, seed=index)
        assert samples.points.abs().max() <= OBJECT_HALF_EXTENT + 1e-3
        assert query_sdf(spec, samples.points).abs().max() < 1e-3
        part_albedos = {tuple(np.float32(PALETTE[p.color])) for p in spec.parts}
        assert {tuple(a) for a in samples.albedo.numpy()} <= part_albedos


def test_palette_colours_are_well_separated():
    colours = np.array(list(PALETTE.values()))
    gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(colours, 2)]
    assert len(PALETTE) >= 8 and min(gaps) > 0.2


def test_captions_exact_phrasings():
    assert make_captions("chair", "red", [Accent("seat", False, "blue")]) == [
        "a red chair with a blue seat",
        "red chair with a blue seat",
        "a 3D model of a red chair with a blue seat",
        "a chair in red, with a blue seat",
    ]
    two = make_captions("house", "orange", [Accent("roof", False, "black"), Accent("door", False, "orange")])
    assert two[0] == "an orange house with a black roof and an orange door"
    plural = make_captions("car", "white", [Accent("wheels", True, "black")])
    assert plural[0] == "a white car with black wheels"
    assert make_captions("mug", "blue", [])[3] == "a mug in blue"


def test_generation_is_deterministic_and_specs_round_trip_json():
    a, b = generate_object(5, 17), generate_object(5, 17)
    assert a.to_json() == b.to_json()
    assert ObjectSpec.from_json(a.to_json()).to_json() == a.to_json()
    assert json.loads(a.to_json())["parts"][0]["primitive"] in {p.primitive for p in a.parts}
    assert generate_object(6, 17).to_json() != a.to_json()
    assert generate_object(5, 18).category != a.category


def test_rendering_is_bit_identical_across_runs(generation_config, records):
    again = render_records([1], generation_config)[0]
    first = records[1]
    for name in ("color", "alpha", "depth", "normal", "cameras"):
        assert np.array_equal(getattr(again, name), getattr(first, name)), name
    assert np.array_equal(first.cameras, object_rig(generation_config.seed, 1)[list(generation_config.view_ids)])


def _analytic_sphere(cameras: torch.Tensor, res: int):
    """Ray-sphere intersection (make_inputs.render_sphere's formulas) in float64."""
    origins, dirs = camera_rays(cameras.double(), res)
    b = (origins * dirs).sum(-1)
    disc = b * b - ((origins * origins).sum(-1) - SPHERE_RADIUS**2)
    t = -b - torch.sqrt(disc.clamp_min(0.0))
    forward = split_cameras(cameras.double())[0][:, None, :3, 2]
    depth = t * (dirs * forward).sum(-1)
    normal = (origins + t[..., None] * dirs) / SPHERE_RADIUS
    miss_distance = torch.sqrt((origins * origins).sum(-1) - b * b)  # distance from the centre to the ray
    cosine = -(normal * dirs).sum(-1)
    shape = (cameras.shape[0], res, res)
    return (disc > 0).reshape(shape), depth.reshape(shape), normal.reshape(*shape, 3), \
        miss_distance.reshape(shape), cosine.reshape(shape)


def test_sphere_silhouette_depth_normals_and_shading_match_analytic():
    res = 48
    cameras = orbit_cameras([0.0, 60.0, 120.0, 180.0, 240.0, 300.0], 20.0, 1.8, OBJAVERSE_FOCAL)
    config = TracerConfig()
    out = render(sphere_spec(), cameras, res, config)
    hit, depth, normal, miss_distance, cosine = _analytic_sphere(cameras, res)
    alpha, ours_depth = out.alpha[:, 0].double(), out.depth[:, 0].double()
    pixel = 1.8 / (OBJAVERSE_FOCAL * res)  # pixel footprint at the sphere
    clear = (miss_distance - SPHERE_RADIUS).abs() > 0.5 * pixel
    assert torch.equal((alpha == 1)[clear], hit[clear])
    assert ((alpha > 0) <= (miss_distance < SPHERE_RADIUS + pixel)).all()   # soft edge at most a pixel wide
    assert ((alpha > 0) == (ours_depth > 0)).all()
    both = hit & (alpha == 1)
    assert (ours_depth - depth)[both & (cosine > 0.2)].abs().max() < 1e-3
    assert (ours_depth - depth)[both].abs().max() < 3e-3
    ours_normal = out.normal.permute(0, 2, 3, 1).double()
    assert ((ours_normal * normal).sum(-1)[both & (cosine > 0.2)] > 0.999).all()
    far = miss_distance > SPHERE_RADIUS + pixel
    assert (out.rgb.permute(0, 2, 3, 1)[far] == 1).all() and (alpha[far] == 0).all()
    key = torch.nn.functional.normalize(torch.tensor(config.key_light, dtype=torch.float64), dim=0)
    fill = torch.nn.functional.normalize(torch.tensor(config.fill_light, dtype=torch.float64), dim=0)
    light = (config.ambient + config.key_strength * (normal @ key).clamp_min(0)
             + config.fill_strength * (normal @ fill).clamp_min(0))
    expected = torch.tensor(PALETTE["red"], dtype=torch.float64) * light[..., None]
    assert (out.rgb.permute(0, 2, 3, 1).double() - expected)[both & (cosine > 0.2)].abs().max() < 5e-3


def test_render_outputs_are_consistent(records):
    record = records[0]
    visible = record.alpha > 0
    assert visible.any() and (~visible).any()
    assert np.array_equal(visible, record.depth > 0)
    assert np.allclose(np.linalg.norm(record.normal[visible], axis=-1), 1.0, atol=1e-4)
    assert np.all(record.normal[~visible] == 0)
    assert np.all(record.color[~visible] == 1)
    assert np.all(record.rgb_on_white()[~visible] == 1)
    assert ((record.alpha == 1) | (record.alpha <= 0.5)).all()   # hits are opaque, soft edges come from misses


def test_batched_render_equals_single_renders():
    specs = [generate_object(2, 4), generate_object(2, 16)]
    cameras = torch.stack([object_rig(2, 4)[[0, 25]], object_rig(2, 16)[[9, 33]]])
    batched = render_objects(specs, cameras, 24)
    for k, spec in enumerate(specs):
        single = render(spec, cameras[k], 24)
        assert torch.allclose(batched.rgb[k], single.rgb, atol=1e-6)
        assert torch.allclose(batched.depth[k], single.depth, atol=1e-6)


@pytest.mark.parametrize("primitive,params,point,expected", [
    ("sphere", [0.3], [0.5, 0.0, 0.0], 0.2),
    ("box", [0.2, 0.1, 0.3], [0.5, 0.0, 0.0], 0.3),
    ("box", [0.2, 0.1, 0.3], [0.0, 0.0, 0.0], -0.1),
    ("box", [0.2, 0.1, 0.3], [0.3, 0.2, 0.4], 0.1 * np.sqrt(3.0)),
    ("rounded_box", [0.2, 0.2, 0.2, 0.05], [0.5, 0.0, 0.0], 0.3),
    ("rounded_box", [0.2, 0.2, 0.2, 0.05], [0.35, 0.35, 0.35], 0.2 * np.sqrt(3.0) - 0.05),
    ("ellipsoid", [0.3, 0.2, 0.1], [0.5, 0.0, 0.0], 0.2),
    ("cylinder", [0.2, 0.3], [0.0, 0.0, 0.5], 0.2),
    ("cylinder", [0.2, 0.3], [0.5, 0.0, 0.0], 0.3),
    ("capsule", [0.1, 0.2], [0.0, 0.0, 0.5], 0.2),
    ("capsule", [0.1, 0.2], [0.3, 0.0, 0.1], 0.2),
    ("cone", [0.2, 0.0, 0.2], [0.0, 0.0, 0.3], 0.1),
    ("cone", [0.2, 0.0, 0.2], [0.0, 0.0, -0.3], 0.1),
    ("cone", [0.2, 0.0, 0.2], [0.5, 0.0, -0.2], 0.3),
    ("torus", [0.3, 0.1], [0.3, 0.0, 0.0], -0.1),
    ("torus", [0.3, 0.1], [0.0, 0.0, 0.0], 0.2),
])
def test_primitive_distances(primitive, params, point, expected):
    spec = ObjectSpec("test", [PartSpec(primitive, params, [0.0, 0.0, 0.0])])
    value = query_sdf(spec, torch.tensor([point], dtype=torch.float64))
    assert float(value[0]) == pytest.approx(expected, abs=1e-9)


def test_part_transforms_and_union_colour():
    spec = ObjectSpec("test", [PartSpec("cylinder", [0.1, 0.3], [0.2, 0.0, 0.0], [90.0, 0.0, 0.0], color="blue"),
                               PartSpec("sphere", [0.1], [-0.3, 0.0, 0.0], color="green")])
    points = torch.tensor([[0.2, 0.6, 0.0], [0.2, 0.0, 0.4], [-0.3, 0.0, 0.25]], dtype=torch.float64)
    assert torch.allclose(query_sdf(spec, points), torch.tensor([0.3, 0.3, 0.15], dtype=torch.float64))
    albedo = query_albedo(spec, points)
    assert torch.allclose(albedo[0], torch.tensor(PALETTE["blue"], dtype=torch.float64))
    assert torch.allclose(albedo[2], torch.tensor(PALETTE["green"], dtype=torch.float64))


def test_sphere_surface_samples_are_on_the_surface_and_uniform():
    samples = sample_surface(sphere_spec("green"), 4000, seed=1)
    assert samples.points.shape == (4000, 3)
    assert (samples.points.norm(dim=-1) - SPHERE_RADIUS).abs().max() < 1e-5
    assert torch.allclose(samples.normals, samples.points / SPHERE_RADIUS, atol=2e-3)
    # uniform on a sphere: the mean |z| is r/2 and the mean point is the centre
    assert samples.points[:, 2].abs().mean() == pytest.approx(SPHERE_RADIUS / 2, abs=0.01)
    assert samples.points.mean(0).abs().max() < 0.015
    assert torch.allclose(samples.albedo, torch.tensor(PALETTE["green"]).expand(4000, 3))
    again = sample_surface(sphere_spec("green"), 4000, seed=1)
    assert torch.equal(again.points, samples.points)
