"""The stage-2 trainer: exact resume, checkpoints that load through the one loader, the latent divider's sources,
one-line errors for bad set-ups, and a tiny DiT + offline text conditioner that memorises captioned latents."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoints.loader import load_models, load_stage2_folder
from datasets.latents import LatentStoreWriter
from guided_diffusion.config import build_process
from guided_diffusion.samplers import sample
from guided_diffusion.trainer import STATS_FILE, DiffusionTrainer, preset_train_config, train
from utils.checkpoint import latest_checkpoint, load_checkpoint
from utils.training import NonFiniteLossError

# A few-thousand-parameter model on the store's (12, 32, 32) latent: 4×4 patches keep it at 3 × 64 tokens.
SMALLEST = {"denoiser": {"depth": 1, "hidden_size": 32, "num_heads": 2, "latent_size": 32, "patch_size": 4}}
CONDITIONER = {"t23d": {"width": 32, "depth": 1, "num_heads": 2},
               "i23d": {"width": 32, "depth": 1, "num_heads": 2, "image_size": 16, "patch_size": 4}}
CAPTIONS = ["a red chair with a blue seat", "a green table", "a tall yellow lamp", "a purple mushroom"]


def write_store(root: Path, count: int = 4, cond: bool = True, seed: int = 0, size: int = 32) -> torch.Tensor:
    """`count` captioned latents (12, size, size) with 2 random 16² condition views each; returns the latents."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(count, 12, size, size, generator=g)
    with LatentStoreWriter(root) as writer:
        for i in range(count):
            images = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8) if cond else None
            writer.add(f"obj/{i}", latents[i], latents[i], CAPTIONS[i % len(CAPTIONS)], {"captions": [CAPTIONS[i]]},
                       images, torch.zeros(2, 25) if cond else None)
    return latents


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory, make_vae_folder) -> Path:
    """A random-init tiny VAE making (12, 32, 32) latents: the runs record it as their VAE."""
    return make_vae_folder(tmp_path_factory.mktemp("vae") / "vae", {"latent_size": 32})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("latents") / "store"
    write_store(root)
    return root


def config(task: str, latents: Path, vae: Path, out: Path, **overrides):
    settings = dict(latents=str(latents), vae=str(vae), out=str(out), max_steps=6, batch_size=2,
                    stage2_overrides=SMALLEST, conditioner_options=CONDITIONER[task], save_every=3, log_every=1,
                    device="cpu", workers=0, tensorboard=False, progress=False)
    return preset_train_config(f"{task}-tiny", **{**settings, **overrides})


def losses(out: Path) -> list[float]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


@pytest.mark.parametrize("task", ["t23d", "i23d"])
def test_resume_continues_exactly_like_an_uninterrupted_run(task, store, vae_folder, tmp_path):
    train(config(task, store, vae_folder, tmp_path / "full"))
    train(config(task, store, vae_folder, tmp_path / "split", max_steps=3))
    train(config(task, store, vae_folder, tmp_path / "split", resume=True))
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert len(full) == 6 and split == full
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / name)) for name in ("full", "split"))
    assert a["info"]["step"] == b["info"]["step"] == 6 and a["info"]["batches_consumed"] == 6
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert any(not torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])  # the EMA lags the weights


def test_checkpoint_is_a_stage2_folder_the_loader_reads(store, vae_folder, tmp_path):
    (store / STATS_FILE).write_text(json.dumps({"std": 1.25}))
    try:
        trainer = train(config("t23d", store, vae_folder, tmp_path / "run", max_steps=2))
    finally:
        (store / STATS_FILE).unlink()
    folder = latest_checkpoint(tmp_path / "run")
    saved = load_checkpoint(folder)
    assert saved["config"]["vae_folder"] == str(vae_folder.resolve()) and saved["config"]["task"] == "t23d"
    assert {k.split(".")[0] for k in saved["model"]} == {"denoiser", "conditioner"}
    models = load_models(tmp_path / "run", "t23d")
    assert models.stage2.diffusion.latent_divider == 1.25
    assert models.stage2.denoiser.context_dim == 32 == models.conditioner.context_dim  # fitted to the conditioner
    for name, value in models.denoiser.state_dict().items():
        assert torch.equal(value, saved["model"][f"denoiser.{name}"]), name
    for name, value in models.conditioner.state_dict().items():
        assert torch.equal(value, trainer.model.conditioner.state_dict()[name]), name
    assert models.vae.config.latent_shape == (12, 32, 32)


def test_latent_divider_comes_from_the_flag_then_the_store_then_the_preset(vae_folder, tmp_path):
    write_store(tmp_path / "store", count=1)
    divider = lambda **kw: DiffusionTrainer(config("t23d", tmp_path / "store", vae_folder, tmp_path / "o", **kw)) \
        .stage2.diffusion.latent_divider
    assert divider() == 1.0  # t23d-tiny
    (tmp_path / "store" / STATS_FILE).write_text(json.dumps({"std": 0.75, "posterior_mean": {"std": 0.625}}))
    assert divider() == 0.75
    assert divider(use_latent_mean=True) == 0.625
    assert divider(latent_divider=0.5) == 0.5


def test_non_finite_steps_are_skipped_then_stop_the_run(vae_folder, tmp_path):
    with LatentStoreWriter(tmp_path / "store") as writer:
        writer.add("obj/0", torch.full((12, 32, 32), float("nan")), torch.zeros(12, 32, 32), CAPTIONS[0])
    trainer = DiffusionTrainer(config("t23d", tmp_path / "store", vae_folder, tmp_path / "run",
                                      max_nonfinite_steps=3))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf for 3 steps in a row"):
        trainer.train()
    assert trainer.guard.total_skipped == 3 and trainer.step == 2
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_bad_set_ups_fail_with_one_clear_line(store, vae_folder, tmp_path):
    write_store(tmp_path / "plain", count=1, cond=False)
    with pytest.raises(ValueError, match=r"plain holds no condition images, which i23d trains on; re-run "):
        DiffusionTrainer(config("i23d", tmp_path / "plain", vae_folder, tmp_path / "o"))
    with pytest.raises(ValueError, match=r"latent shapes disagree: store \(12, 32, 32\), VAE \(12, 32, 32\), preset "
                                         r"'t23d-tiny' \(12, 16, 16\)"):
        DiffusionTrainer(config("t23d", store, vae_folder, tmp_path / "o", stage2_overrides={}))
    with pytest.raises(ValueError, match=r"does not record its VAE \(extraction.json\); pass --vae DIR"):
        DiffusionTrainer(config("t23d", store, "", tmp_path / "o"))
    with pytest.raises(ValueError, match=r"preset 'i23d-tiny' is a i23d model; pass --task i23d"):
        preset_train_config("i23d-tiny", task="t23d")
    with pytest.raises(ValueError, match=r"--save-every must be at least 1, got 0"):
        preset_train_config("t23d-tiny", save_every=0)
    train(config("t23d", store, vae_folder, tmp_path / "run", max_steps=1))
    # the settings check names the flag (the checkpoint's own model-config check stays behind it)
    with pytest.raises(ValueError, match=r"run was trained with other settings: --conditioner-options \{\"depth\": "
                                         r"1, \"num_heads\": 2, \"width\": 32\} \(now \{\"depth\": 1, \"num_heads\": "
                                         r"2, \"width\": 64\}\); resume with the run's own values"):
        DiffusionTrainer(config("t23d", store, vae_folder, tmp_path / "run", resume=True,
                                conditioner_options={"width": 64, "depth": 1, "num_heads": 2}))


def test_tiny_dit_and_offline_text_conditioner_memorise_captioned_latents(tmp_path, make_vae_folder):
    # 4×4 latents (12 tokens of 2×2 patches): what a few hundred CPU steps can memorise precisely enough to sample
    latents = write_store(tmp_path / "store", seed=1, size=4)
    vae = make_vae_folder(tmp_path / "vae", {"latent_size": 4})
    arch = {"denoiser": {"depth": 2, "hidden_size": 64, "num_heads": 2, "latent_size": 4}}
    train(config("t23d", tmp_path / "store", vae, tmp_path / "run", max_steps=600, batch_size=16, lr=3e-3,
                 weight_decay=0.0, stage2_overrides=arch, conditioner_options={"width": 32, "depth": 1, "num_heads": 2},
                 ema=False, save_every=600, log_every=10))
    curve = losses(tmp_path / "run")
    assert np.mean(curve[-5:]) < 0.3 * curve[0]

    denoiser, conditioner, stage2, _ = load_stage2_folder(tmp_path / "run")
    with torch.no_grad():
        context = conditioner(CAPTIONS * 2)
    noise = torch.randn(8, 12, 4, 4, generator=torch.Generator().manual_seed(0))
    out = sample(denoiser, build_process(stage2.diffusion), noise, context, sampler="euler_edm", num_steps=50,
                 guidance_scale=2.0, uncond=conditioner.null_condition(8))
    distances = torch.cdist(out.flatten(1), latents.flatten(1))
    own = torch.arange(4).repeat(2)
    assert distances.argmin(1).tolist() == own.tolist()
    others = distances.masked_fill(torch.nn.functional.one_hot(own, 4).bool(), float("inf")).amin(1)
    assert torch.all(distances[torch.arange(8), own] < 0.85 * others)


def test_a_used_out_is_refused_and_a_resume_must_keep_the_settings(store, vae_folder, tmp_path):
    out = tmp_path / "run"
    train(config("t23d", store, vae_folder, out, max_steps=1))
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    with pytest.raises(ValueError) as e:
        DiffusionTrainer(config("t23d", store, vae_folder, out))
    assert str(e.value) == (f"{out} already holds a training run (config.json, log.jsonl, checkpoint-00000001); "
                            f"pass --resume to continue it, or a fresh --out folder")
    with pytest.raises(ValueError) as e:
        DiffusionTrainer(config("t23d", store, vae_folder, out, resume=True, lr=0.01, use_latent_mean=True))
    assert str(e.value) == (f"--resume: {out} was trained with other settings: --use-latent-mean False (now True), "
                            f"--lr 0.001 (now 0.01); resume with the run's own values (see {out / 'config.json'}) "
                            f"or train into a fresh --out folder")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    resumed = train(config("t23d", store, vae_folder, out, resume=True, max_steps=2, log_every=2, save_every=2))
    assert resumed.step == 2


def test_sigint_ends_the_run_with_a_checkpoint_that_resumes_exactly(store, vae_folder, tmp_path,
                                                                    signal_after_first_step):
    """A real SIGINT (Ctrl-C) to scripts/train_diffusion.py: no traceback, the step finishes and is saved, exit
    status 130; a `--resume` continues exactly as an uninterrupted run."""
    out = tmp_path / "stopped"
    code, err = signal_after_first_step(
        ["scripts/train_diffusion.py", "--task", "t23d", "--preset", "t23d-tiny", "--latents", str(store), "--vae",
         str(vae_folder), "--out", str(out), "--max-steps", "1000", "--batch-size", "2", "--stage2-overrides",
         json.dumps(SMALLEST), "--conditioner-options", json.dumps(CONDITIONER["t23d"]), "--save-every", "3",
         "--log-every", "1", "--device", "cpu", "--workers", "0", "--no-tensorboard", "--no-progress"],
        out, signal.SIGINT)
    folder = latest_checkpoint(out)
    step = load_checkpoint(folder)["info"]["step"]
    assert code == 130 and 1 <= step < 1000
    message = f"stopped by SIGINT at step {step}; saved {folder}; continue with --resume"
    assert err.splitlines()[-1] == f"train_diffusion.py: {message}" and "Traceback" not in err
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["event"] == message
    train(config("t23d", store, vae_folder, out, max_steps=step + 2, resume=True))
    train(config("t23d", store, vae_folder, tmp_path / "full", max_steps=step + 2))
    assert losses(out) == losses(tmp_path / "full")
