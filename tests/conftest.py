"""Fixtures shared across test packages.

`tiny_pipeline_dir`: a random-init pipeline folder (the `--ckpt` layout of `checkpoints/loader.py`) with a tiny VAE,
a T23D model (t23d-tiny + offline-text tiny) and an I23D model (i23d-tiny + offline-image tiny). It generates noise,
not objects, but exercises every stage of generation, export, the CLIs and the gradio app in seconds on a CPU.
`tiny_mesh_level`: an iso-level its density field crosses, so mesh extraction has a surface to find.
`make_vae_folder(folder, overrides, jitter)`: a random-init `tiny` VAE saved as a model folder.
`script(name)`: a scripts/*.py module (imported as `scripts.<name>`).
`single_thread`: one torch intra-op thread for a test; test folders of small tensors use it for every test.
`torch_threads(n)`: a context manager running a block on n torch threads.
`signal_after_first_step(cmd, out, signum)`: run a training CLI, send it a real signal once its log.jsonl has a
step line; (exit status, stderr).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

PIPELINE_SEED = 0
# Offline tiny conditioners emit 128-wide tokens and vectors; the stage-2 tiny presets expect 64, so widen them.
TINY_STAGE2 = {
    "t23d": ("t23d-tiny", "offline-text", {"context_dim": 128}),
    "i23d": ("i23d-tiny", "offline-image", {"clip_dim": 64, "dino_dim": 64, "pooled_dim": 128}),
}


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def torch_threads():
    """`with torch_threads(n): ...` runs the block on n torch intra-op threads and restores the count after."""
    return _torch_threads


@pytest.fixture
def single_thread():
    """One torch intra-op thread. The CI machines have 2 cores shared with other jobs; there OpenMP threads
    spin-wait for each other, and two threads ran these small kernels 7–50× slower than one (measured)."""
    with _torch_threads(1):
        yield


def _signal_after_first_step(args: list[str], out: Path, signum: int, timeout: float = 120.0) -> tuple[int, str]:
    """`python args…` from the repository root; `signum` goes to it once `out/log.jsonl` records a step (the
    run is then inside its training loop, where the signal must end it with a checkpoint)."""
    # one thread, as the in-process runs it is compared with (`single_thread`): float sums depend on the split
    proc = subprocess.Popen([sys.executable, *args], cwd=Path(__file__).resolve().parents[1],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    log = out / "log.jsonl"
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and '"step"' in log.read_text():
            proc.send_signal(signum)
            break
        time.sleep(0.05)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


@pytest.fixture(scope="session")
def signal_after_first_step():
    return _signal_after_first_step


@pytest.fixture(scope="session")
def script():
    """`script("extract_latents").main([...])`: a scripts/*.py module."""
    return lambda name: importlib.import_module(f"scripts.{name}")


def _save_random_vae(folder: Path, overrides: dict | None = None, jitter: float = 0.0) -> Path:
    from nsr.config import vae_config
    from nsr.vae import TriplaneVAE
    from utils.checkpoint import save_model_folder

    overrides = overrides or {}
    torch.manual_seed(0)
    vae = TriplaneVAE(vae_config("tiny", overrides))
    if jitter:
        with torch.no_grad():
            for p in vae.parameters():
                p.add_(torch.randn_like(p) * jitter)
    return save_model_folder(folder, vae.state_dict(), {"preset": "tiny", "overrides": overrides})


@pytest.fixture(scope="session")
def make_vae_folder():
    """`make_vae_folder(folder, overrides=None, jitter=0.0)`: a random-init `tiny` VAE (seed 0) with nested preset
    `overrides`, every parameter plus N(0, jitter²) noise (fresh modules zero-initialise some output layers, so a
    jittered VAE depends on its input at every stage), saved as a model folder; returns the folder."""
    return _save_random_vae


def _jitter(module: torch.nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """Add small noise to every parameter. Fresh modules zero-initialise their adaLN and output layers, which makes
    the denoiser predict exactly zero and the VAE decoder ignore its latent; jittered, outputs depend on inputs."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * std)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    from guided_diffusion.config import build_denoiser, preset
    from ldm.registry import build_conditioner
    from nsr.config import vae_config
    from nsr.vae import TriplaneVAE
    from utils.checkpoint import save_model_folder

    root = tmp_path_factory.mktemp("tiny_pipeline")
    generator = torch.Generator().manual_seed(PIPELINE_SEED)
    torch.manual_seed(PIPELINE_SEED)
    vae = TriplaneVAE(vae_config("tiny"))
    _jitter(vae, generator)
    save_model_folder(root / "vae", vae.state_dict(), {"preset": "tiny", "overrides": {}})
    for task, (stage2_preset, conditioner_name, widths) in TINY_STAGE2.items():
        stage2 = preset(stage2_preset)
        stage2.denoiser = dataclasses.replace(stage2.denoiser, **widths)
        denoiser = build_denoiser(stage2.denoiser)
        conditioner = build_conditioner(conditioner_name, preset="tiny")
        _jitter(denoiser, generator)
        state = {**{f"denoiser.{k}": v for k, v in denoiser.state_dict().items()},
                 **{f"conditioner.{k}": v for k, v in conditioner.state_dict().items()}}
        config = {"task": task, "stage2": stage2.to_dict(), "conditioner": conditioner.describe()}
        save_model_folder(root / task, state, config)
    return root


@pytest.fixture(scope="session")
def tiny_mesh_level(tiny_pipeline_dir) -> float:
    """The median raw σ of a field the tiny VAE decodes from a random latent.

    The release level (10) is meaningless for random weights, whose σ stays within about ±1. The random VAE's σ
    distribution barely depends on the latent, so the median of one field lies inside every generated field's range.
    """
    from checkpoints.loader import load_vae_folder
    from nsr.mesh import density_grid

    vae = load_vae_folder(tiny_pipeline_dir / "vae")
    latent = torch.randn(1, *vae.config.latent_shape, generator=torch.Generator().manual_seed(PIPELINE_SEED))
    with torch.no_grad():
        triplane = vae.decode(latent)
        sigma = density_grid(lambda p: {"sigma": vae.query(triplane, p[None])["sigma"][0]}, 16, (-0.45, 0.45))
    return round(float(np.median(sigma)), 4)


@pytest.fixture
def make_hub_cache():
    """`make(cache, filename, payload) -> path`: lay out a file the way huggingface_hub caches a download of the
    released repo (refs/main + snapshots/<commit>/<filename>)."""
    from checkpoints.hub import RELEASED_REPO

    def make(cache: Path, filename: str, payload: bytes = b"weights") -> Path:
        repo_dir = cache / ("models--" + RELEASED_REPO.replace("/", "--"))
        commit = "0123456789abcdef0123456789abcdef01234567"
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
        target = repo_dir / "snapshots" / commit / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        return target

    return make
