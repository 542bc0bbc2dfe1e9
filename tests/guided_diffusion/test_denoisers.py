"""Denoiser architectures: parameter counts and key layouts against the release manifests, shapes, init."""
import json
from pathlib import Path

import pytest
import torch

from checkpoints.convert.dit import ours_to_released, released_to_ours, to_ours, to_released
from guided_diffusion.config import (
    PRESETS,
    I23DConfig,
    Stage2Config,
    T23DConfig,
    UNetConfig,
    build_denoiser,
    build_process,
    preset,
)

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "golden"
# Totals from the manifests: parameters (pos_embed included, a frozen parameter) and the whole state dict (plus the
# two latent-statistics buffers).
RELEASE_COUNTS = {"t23d": (559_987_728, 559_995_920), "i23d": (416_424_464, 416_432_656),
                  "shapenet-unet": (826_718_424, 826_743_000)}
MANIFESTS = {"t23d": "manifest_dit_t23d.json", "i23d": "manifest_dit_i23d.json",
             "shapenet-unet": "manifest_unet_shapenet_car.json"}


def _meta(cfg):
    with torch.device("meta"):
        return build_denoiser(cfg)


@pytest.mark.parametrize("name", sorted(RELEASE_COUNTS))
def test_release_presets_have_the_released_parameter_counts(name):
    model = _meta(preset(name).denoiser)
    params = sum(p.numel() for p in model.parameters())
    state = sum(t.numel() for t in model.state_dict().values())
    assert (params, state) == RELEASE_COUNTS[name]


@pytest.mark.skipif(not GOLDEN.is_dir(), reason="golden fixture folder absent")
@pytest.mark.parametrize("name", sorted(RELEASE_COUNTS))
def test_every_manifest_entry_maps_one_to_one(name):
    manifest = json.loads((GOLDEN / MANIFESTS[name]).read_text())
    cfg = preset(name).denoiser
    state = _meta(cfg).state_dict()
    mapped = {}
    for e in manifest["entries"]:
        ours = to_ours(e["name"], cfg.arch)
        assert to_released(ours, cfg.arch) == e["name"]
        assert list(state[ours].shape) == e["shape"], e["name"]
        mapped[ours] = e
    assert set(mapped) == set(state)
    assert manifest["total_params"] == RELEASE_COUNTS[name][0]
    frozen = {n for n, p in _meta(cfg).named_parameters() if not p.requires_grad}
    assert frozen == {to_ours(e["name"], cfg.arch) for e in manifest["entries"] if e.get("requires_grad") is False}


def test_converter_round_trips_a_state_dict_and_rejects_unknown_keys():
    model = build_denoiser(preset("i23d-tiny").denoiser)
    released = ours_to_released(model.state_dict(), "dit_i23d", prefix="ddpm_model.")
    assert "ddpm_model.cap_embedder.1.weight" in released and "ddpm_model.blocks.5.scale_shift_table" in released
    back = released_to_ours({**released, "rec_model.encoder.x": torch.zeros(1)}, "dit_i23d", prefix="ddpm_model.")
    assert back.keys() == model.state_dict().keys()
    with pytest.raises(KeyError):
        to_ours("blocks.0.attn.unknown.weight", "dit_i23d")


@pytest.mark.parametrize("name", ["t23d-tiny", "i23d-tiny"])
def test_tiny_presets_forward_shapes_and_zero_start(name):
    cfg = preset(name).denoiser
    model = build_denoiser(cfg)
    assert 1e6 <= sum(p.numel() for p in model.parameters()) <= 3e6
    b, s = 2, cfg.latent_size
    x = torch.randn(b, 12, s, s)
    if isinstance(cfg, T23DConfig):
        t, context = torch.tensor([3, 999]), {"crossattn": torch.randn(b, 7, cfg.context_dim)}
    else:
        t = torch.tensor([0.1, 0.9])
        context = {"crossattn": torch.randn(b, 9, cfg.clip_dim + cfg.dino_dim),
                   "vector": torch.randn(b, cfg.pooled_dim)}
    out = model(x, t, context)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer


def test_output_patches_land_on_their_plane_and_channel():
    """A token's patch written by the final layer must come back at the right (channel, plane, pixel)."""
    model = build_denoiser(T23DConfig(depth=1, hidden_size=64, num_heads=2, latent_size=8, context_dim=8))
    tok = model.tokenizer
    patches = torch.zeros(1, tok.num_tokens, tok.patch_size**2 * tok.channels)
    # plane 2, grid cell (row 1, col 3), in-patch offset (p=1, q=0), channel 3
    token = 2 * tok.grid**2 + 1 * tok.grid + 3
    patches[0, token, (1 * 2 + 0) * tok.channels + 3] = 1.0
    image = tok.unpatchify(patches)
    assert image.shape == (1, 12, 8, 8)
    assert torch.nonzero(image).tolist() == [[0, 3 * 3 + 2, 1 * 2 + 1, 3 * 2 + 0]]


def test_input_planes_take_channel_major_channels():
    model = build_denoiser(T23DConfig(depth=1, hidden_size=64, num_heads=2, latent_size=4, context_dim=8))
    tok = model.tokenizer
    x = torch.zeros(1, 12, 4, 4)
    x[0, 2 * 3 + 1] = 1.0  # channel 2 of plane 1
    with torch.no_grad():
        tokens = tok(x) - tok.pos_embed
    per_plane = tokens.reshape(3, tok.grid**2, -1)
    expected = tok.proj.weight[:, 2].sum((-1, -2)) + tok.proj.bias
    torch.testing.assert_close(per_plane[1], expected.expand(tok.grid**2, -1))
    torch.testing.assert_close(per_plane[0], tok.proj.bias.expand(tok.grid**2, -1))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = preset(name)
    assert Stage2Config.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["denoiser"]["arch"] in ("dit_t23d", "dit_i23d", "unet")


def test_only_the_i23d_release_preset_holds_the_unused_weights():
    assert preset("i23d").denoiser.keep_released_unused
    small = _meta(I23DConfig.from_size("S"))
    assert not any(k.startswith("release_unused") for k in small.state_dict())


def test_small_unet_forward_shape_zero_start_and_attention_placement():
    cfg = UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample=(2,), num_heads=2,
                     context_dim=16, latent_size=8)
    model = build_denoiser(cfg)
    out = model(torch.randn(2, 12, 8, 8), torch.tensor([0.0, 0.5]), {"crossattn": torch.randn(2, 1, 16)})
    assert out.shape == (2, 12, 8, 8) and torch.count_nonzero(out) == 0
    attention = [n for n, m in model.named_modules() if type(m).__name__ == "SpatialTransformer"]
    # factor 2 = the second level: its one down stage, the middle block, its two up stages
    assert attention == ["down.3.1", "mid.1", "up.0.1", "up.1.1"]
    assert model.mixing_logit.shape == (1, 12, 1, 1) and torch.all(model.mixing_logit == -3)


def test_released_unet_attention_only_at_factor_8_and_the_middle():
    model = _meta(preset("shapenet-unet").denoiser)
    attention = [n for n, m in model.named_modules() if type(m).__name__ == "SpatialTransformer"]
    assert attention == ["down.10.1", "down.11.1", "mid.1", "up.0.1", "up.1.1", "up.2.1"]
    process = build_process(preset("shapenet-unet").diffusion)
    assert process.model_time(torch.tensor([999])).item() == pytest.approx(0.999)
