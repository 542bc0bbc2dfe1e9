"""Released ↔ our VAE key names: every manifest entry maps one-to-one onto our modules with the same shape."""
import json
from pathlib import Path

import pytest
import torch

from checkpoints.convert.vae import DROPPED, to_our_state_dict, to_ours, to_released, to_released_state_dict
from nsr.config import PRESETS, vae_config
from nsr.vae import TriplaneVAE

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = next((p for p in (Path("/work/shared/reference/golden"), ROOT.parent / "shared/reference/golden")
               if p.is_dir()), None)


def _meta_state(preset: str) -> dict:
    with torch.device("meta"):
        return TriplaneVAE(vae_config(preset)).state_dict()


@pytest.mark.skipif(GOLDEN is None, reason="golden fixture not available")
@pytest.mark.parametrize("preset, manifest", [("objaverse", "manifest_vae_objaverse.json"),
                                              ("shapenet", "manifest_vae_shapenet_car.json")])
def test_manifest_maps_one_to_one(preset, manifest):
    entries = json.loads((GOLDEN / manifest).read_text())["entries"]
    state = _meta_state(preset)
    mapped = {}
    for e in entries:
        ours = to_ours(e["name"])
        if ours is None:
            assert e["name"] in DROPPED and e["kind"] == "buffer"
            continue
        assert ours in state, (e["name"], ours)
        assert list(state[ours].shape) == e["shape"], e["name"]
        assert to_released(ours) == e["name"]
        mapped[ours] = e["name"]
    assert set(mapped) == set(state)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_key_of_every_preset_round_trips(preset):
    for key in _meta_state(preset):
        assert to_ours(to_released(key)) == key


def test_state_dict_conversion_with_joint_prefix_and_dropped_buffer():
    ours = {k: torch.zeros(1) for k in ("encoder.conv_in.weight", "renderer.field.fc1.bias")}
    released = to_released_state_dict(ours, prefix="rec_model.")
    assert set(released) == {"rec_model.encoder.conv_in.weight", "rec_model.decoder.w_avg",
                             "rec_model.decoder.triplane_decoder.decoder.net.0.bias"}
    assert released["rec_model.decoder.w_avg"].shape == (512,)
    released["ddpm_model.pos_embed"] = torch.zeros(1)
    assert set(to_our_state_dict(released, prefix="rec_model.")) == set(ours)


def test_unknown_names_are_rejected():
    with pytest.raises(KeyError, match="no VAE key rule"):
        to_ours("decoder.something_new.weight")
    with pytest.raises(KeyError, match="no VAE key rule"):
        to_released("renderer.field.fc3.weight")
