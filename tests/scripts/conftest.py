"""Fixtures of the stage-1 → stage-2 script tests (extract_latents, reconstruct, export_pipeline).

`procedural_data`: 2 procedural objects × 8 rig views (the 6 encoder views + 26, 4) at 32², written by
scripts/make_dataset.py. `vae32_folder`: a random-init tiny VAE with a 32² latent (the latent store's layout), its
weights jittered so that every stage depends on its input (fresh modules zero-initialise some output layers).
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here: `single_thread` of tests/conftest.py."""


@pytest.fixture(scope="session")
def procedural_data(tmp_path_factory, script) -> Path:
    out = tmp_path_factory.mktemp("data") / "procedural"
    script("make_dataset").main(["--out", str(out), "--num-objects", "2", "--views", "8", "--resolution", "32",
                                 "--seed", "3", "--workers", "1"])
    return out


@pytest.fixture(scope="session")
def vae32_folder(tmp_path_factory, make_vae_folder) -> Path:
    return make_vae_folder(tmp_path_factory.mktemp("vae") / "vae32", {"latent_size": 32}, jitter=0.02)
