"""Fixtures of the stage-1 → stage-2 script tests (extract_latents, reconstruct, export_pipeline).

`script(name)`: a scripts/*.py module. `procedural_data`: 2 procedural objects × 8 rig views (the 6 encoder views
+ 26, 4) at 32², written by scripts/make_dataset.py. `vae32_folder`: a random-init tiny VAE with a 32² latent (the
latent store's layout), its weights jittered so that every stage depends on its input (fresh modules
zero-initialise some output layers).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
VAE_PRESET, VAE_OVERRIDES = "tiny", {"latent_size": 32}


@functools.cache
def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def script():
    """`script("extract_latents").main([...])`: a scripts/*.py module, loaded once."""
    return load_script


@pytest.fixture(autouse=True)
def single_thread():
    # 2 shared cores: two OpenMP threads on a busy machine run these tiny kernels far slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def procedural_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "procedural"
    load_script("make_dataset").main(["--out", str(out), "--num-objects", "2", "--views", "8", "--resolution", "32",
                                      "--seed", "3", "--workers", "1"])
    return out


@pytest.fixture(scope="session")
def vae32_folder(tmp_path_factory) -> Path:
    from nsr.config import vae_config
    from nsr.vae import TriplaneVAE
    from utils.checkpoint import save_model_folder

    torch.manual_seed(0)
    vae = TriplaneVAE(vae_config(VAE_PRESET, VAE_OVERRIDES))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = tmp_path_factory.mktemp("vae") / "vae32"
    return save_model_folder(folder, vae.state_dict(), {"preset": VAE_PRESET, "overrides": VAE_OVERRIDES})
