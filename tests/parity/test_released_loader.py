"""The released-checkpoint path end to end: a joint T23D file in the released layout (golden-filled weights, keys
`ddpm_model.*` + `rec_model.*`, safetensors) goes through the one loader and reproduces the original networks."""
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from checkpoints import loader
from checkpoints.hub import RELEASED_FILES, resolve_checkpoint
from checkpoints.loader import load_models
from utils.checkpoint import CheckpointError
from utils.golden import compare, load_fixture_module

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "golden"

pytestmark = [
    pytest.mark.parity,
    pytest.mark.slow,
    pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden fixture folder {GOLDEN} absent"),
]


@pytest.fixture(scope="module")
def released_t23d_file(tmp_path_factory) -> Path:
    """The joint file as the authors' trainer wrote it: denoiser keys first, then the VAE's, 727 in all."""
    fw = load_fixture_module(GOLDEN, "fill_weights")
    joint = {}
    for prefix, manifest in (("ddpm_model.", "manifest_dit_t23d.json"), ("rec_model.", "manifest_vae_objaverse.json")):
        joint.update(fw.add_prefix(fw.make_state_dict(fw.load_manifest(GOLDEN / manifest)), prefix))
    assert len(joint) == 727
    path = tmp_path_factory.mktemp("released") / "model_joint_denoise_rec_model3910000.safetensors"
    save_file(joint, str(path))
    return path


def test_released_joint_file_loads_strictly_and_matches_the_golden_outputs(released_t23d_file, monkeypatch,
                                                                         torch_threads):
    # CLIP-L weights cannot be had offline: the conditioner is swapped for an offline one, the rest is the real path
    monkeypatch.setitem(loader.RELEASED_CONDITIONERS, "t23d", "offline-text")
    models = load_models(released_t23d_file, "t23d", preset="tiny")
    assert models.task == "t23d" and models.source == str(released_t23d_file)
    dit = np.load(GOLDEN / "golden_dit_t23d.npz")
    vae = np.load(GOLDEN / "golden_vae_objaverse.npz")
    with torch.no_grad(), torch_threads(min(2, torch.get_num_threads())):
        context = {"crossattn": torch.from_numpy(dit["input_crossattn"]),
                   "vector": torch.from_numpy(dit["input_vector"])}
        output = models.denoiser(torch.from_numpy(dit["input_x"]), torch.from_numpy(dit["input_t"]), context)
        triplane = models.vae.decode(torch.from_numpy(vae["latent_2d"]))
    triplane_tol = 5e-4 * float(np.abs(vae["triplane"]).max())  # the fixture's suggested tolerance for the triplane
    checks = [compare("t23d output", output, dit["output"]),
              compare("triplane", triplane, vae["triplane"], triplane_tol)]
    failed = [c for c in checks if not c[3]]
    assert not failed, failed


def test_released_alias_resolves_through_the_hub_cache_and_rejects_the_wrong_task(released_t23d_file, tmp_path,
                                                                                 monkeypatch, make_hub_cache):
    cached = make_hub_cache(tmp_path, RELEASED_FILES["released-t23d"], b"")
    cached.unlink()
    cached.symlink_to(released_t23d_file)  # the hub cache stores snapshots as links into its blob folder too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_checkpoint("released-t23d", cache_dir=tmp_path)
    assert path == cached
    with pytest.raises(CheckpointError, match="is a released t23d checkpoint, but i23d was asked for"):
        load_models(path, "i23d")
