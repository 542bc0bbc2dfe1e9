"""VAE presets: exact parameter counts (release presets built on the meta device) and JSON round trips."""
import json

import pytest
import torch

from nsr.config import PRESETS, VAEConfig, preset_config, vae_config
from nsr.vae import TriplaneVAE

# objaverse and shapenet are the released networks' counts (golden manifests); the others pin our own builds.
PARAM_COUNTS = {
    "objaverse": 468_239_796,
    "objaverse-b": 142_019_532,
    "shapenet": 115_349_177,
    "ffhq": 129_681_521,
    "tiny": 2_200_020,
    "small": 5_653_012,
}


def _meta_model(name: str, overrides=None) -> TriplaneVAE:
    with torch.device("meta"):
        return TriplaneVAE(vae_config(name, overrides))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_count(name):
    model = _meta_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[name]
    assert not list(model.buffers())


def test_release_submodule_counts_match_manifest():
    """Manifest per-submodule counts (golden README §2): encoder 11,118,104; DiT2 454,017,024; renderer MLP 2,372;
    quant conv + patch-embed + conv upsampler 3,102,296."""
    m = _meta_model("objaverse")
    count = lambda mod: sum(p.numel() for p in mod.parameters())
    assert count(m.encoder) == 11_118_104
    assert count(m.decoder.transformer) == 454_017_024
    assert count(m.renderer) == 2_372
    assert count(m.posterior_head) + count(m.decoder.latent_embed) + count(m.decoder.upsampler) == 3_102_296


def test_small_presets_are_small():
    assert 1e6 <= PARAM_COUNTS["tiny"] <= 3e6
    assert 4e6 <= PARAM_COUNTS["small"] <= 7e6  # the embedded default model ships in git


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_of_presets(name):
    cfg = preset_config(name)
    assert json.loads(cfg.to_json()) == {"preset": name, "overrides": {}}
    assert VAEConfig.from_json(cfg.to_json()) == cfg
    assert VAEConfig.from_json(json.dumps(cfg.to_dict())) == cfg


def test_overrides_round_trip_and_rebuild_the_same_architecture():
    overrides = {"latent_size": 32, "decoder": {"depth": 2, "upsampler_mult": [1, 2]},
                 "renderer": {"depth_samples": 8, "importance_samples": 0}}
    cfg = vae_config("tiny", overrides)
    assert cfg.decoder.depth == 2 and cfg.decoder.upsampler_mult == (1, 2) and cfg.latent_size == 32
    assert cfg.encoder == preset_config("tiny").encoder
    back = VAEConfig.from_json(cfg.to_json())
    assert back == cfg and json.loads(cfg.to_json())["overrides"] == overrides
    a, b = TriplaneVAE(cfg), TriplaneVAE(back)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_switching_a_component_kind_replaces_it_whole():
    cfg = vae_config("tiny", {"encoder": {"kind": "vit", "image_size": 56, "width": 64, "depth": 2,
                                          "num_heads": 2, "pos_grid": 4}})
    assert cfg.encoder.kind == "vit" and cfg.encoder.patch_size == 14
    assert VAEConfig.from_json(cfg.to_json()) == cfg


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="unknown VAE preset"):
        vae_config("nope")
    with pytest.raises(ValueError, match="unknown decoder config keys"):
        vae_config("tiny", {"decoder": {"widht": 3}})
    with pytest.raises(ValueError, match="unknown encoder kind"):
        vae_config("tiny", {"encoder": {"kind": "resnet"}})


def test_release_presets_pin_the_released_settings():
    obj = preset_config("objaverse")
    assert obj.latent_shape == (12, 32, 32)
    assert (obj.encoder.in_channels, obj.encoder.channel_mult, obj.encoder.view_fusion) == (10, (1, 2, 4, 4), "mean")
    assert (obj.decoder.width, obj.decoder.depth, obj.decoder.num_heads) == (1024, 24, 16)
    r = obj.renderer
    assert (r.depth_samples, r.importance_samples, r.ray_start, r.box_warp, r.sample_bbox) == (64, 64, None, 0.9, 0.45)
    sn = preset_config("shapenet").renderer
    assert (sn.ray_start, sn.ray_end, sn.box_warp, sn.sample_bbox, sn.field_features) == (0.6, 1.8, 1.2, None, 32)
