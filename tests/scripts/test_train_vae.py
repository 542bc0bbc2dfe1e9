"""The VAE trainer end to end on a rendered procedural object: CLI, exact resume, two-process DDP, overfitting."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from checkpoints.loader import load_vae_folder
from datasets.multiview import MultiViewConfig, MultiViewDataset
from datasets.rig import ENCODER_VIEWS
from datasets.stores import open_store
from nsr.trainer import preset_train_config, psnr_from_mse, train
from scripts.train_vae import build_parser, config_from_args, main
from utils import checkpoint, distributed

# a lighter `tiny` for the loop-mechanics tests (the overfit test uses the preset as it is)
LIGHT = {"decoder": {"depth": 1}, "renderer": {"depth_samples": 8, "importance_samples": 8}}


def _write_object(script, root: Path, views: int) -> Path:
    """Procedural object 0 of dataset seed 0 (a chair) at 64², `views` rig views, through scripts/make_dataset.py."""
    script("make_dataset").main(["--out", str(root), "--num-objects", "1", "--views", str(views), "--resolution",
                                 "64", "--seed", "0", "--workers", "1"])
    return root


@pytest.fixture(scope="module")
def one_object(script, tmp_path_factory):
    return _write_object(script, tmp_path_factory.mktemp("one_object") / "data", views=12)


def _light_config(data, out, steps, **kw):
    settings = dict(data=str(data), out=str(out), max_steps=steps, vae_overrides=LIGHT, render_resolution=32,
                    patch_size=24, num_target_views=2, ema_decay=0.9, log_interval=1, save_interval=2,
                    progress=False, tensorboard=False, num_workers=0,
                    loss=dict(l1_weight=0.5, depth_weight=0.5, depth_hinge=10.0, disc_weight=0.1))
    settings.update(kw)
    return preset_train_config("tiny", **settings)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"step"' in line]


def test_cli_flags_override_the_preset():
    args = build_parser().parse_args(["--preset", "objaverse", "--data", "d", "--out", "o", "--max-steps", "7",
                                      "--lr-encoder", "3e-4", "--lpips-weight", "0", "--no-kl-anneal",
                                      "--patch-size", "64", "--resume", "--skip-bad-samples"])
    cfg = config_from_args(args)
    assert (cfg.preset, cfg.max_steps, cfg.lr_encoder, cfg.patch_size, cfg.resume) == ("objaverse", 7, 3e-4, 64, True)
    assert cfg.loss.lpips_weight == 0 and cfg.loss.kl_anneal is False and cfg.skip_bad_samples
    assert cfg.lr_decoder == 7.5e-5 and cfg.loss.disc_weight == 0.08 and cfg.render_resolution == 256  # preset
    assert cfg.grad_clip == 5.0 and cfg.disc_lr == 7.5e-5


def test_cli_trains_and_writes_a_run_directory(one_object, tmp_path):
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    cmd = [sys.executable, "scripts/train_vae.py", "--preset", "tiny", "--data", str(one_object), "--out", str(out),
           "--max-steps", "1", "--vae-overrides", json.dumps(LIGHT), "--no-progress", "--num-target-views", "1"]
    subprocess.run(cmd, cwd=root, check=True, timeout=300)
    assert checkpoint.checkpoint_step(checkpoint.latest_checkpoint(out)) == 1
    assert (out / "log.jsonl").exists() and any((out / "tensorboard").iterdir())
    assert json.loads((out / "config.json").read_text())["training"]["vae_overrides"] == LIGHT


def test_cli_reports_a_bad_data_directory_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--preset", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--max-steps", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train_vae.py: error: {tmp_path} is not a store") and err.count("\n") == 1


def test_resume_reproduces_the_uninterrupted_run(one_object, tmp_path):
    full = train(_light_config(one_object, tmp_path / "full", 4))
    train(_light_config(one_object, tmp_path / "split", 2))
    resumed = train(_light_config(one_object, tmp_path / "split", 4, resume=True))
    assert resumed.batches_consumed == full.batches_consumed == 8  # a fresh batch for every discriminator step

    expected, got = _log(tmp_path / "full"), _log(tmp_path / "split")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for key in ("total", "mse", "l1", "depth", "alpha", "g_adv", "d_loss", "grad_norm"):
        assert [r[key] for r in got] == [r[key] for r in expected], key
    for name, value in full.vae.state_dict().items():
        assert torch.equal(resumed.vae.state_dict()[name], value), name
    for name, value in full.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[name], value), name
    for name, value in full.loss.discriminator.state_dict().items():
        assert torch.equal(resumed.loss.discriminator.state_dict()[name], value), name

    # the run directory: settings, checkpoints that rebuild the model, the JSON log
    settings = json.loads((tmp_path / "full" / "config.json").read_text())
    assert settings["training"]["max_steps"] == 4 and settings["vae"]["preset"] == "tiny"
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "full")] == ["checkpoint-00000002",
                                                                                 "checkpoint-00000004"]
    rebuilt = load_vae_folder(tmp_path / "full")
    for name, value in full.vae.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], value), name
    ema = load_vae_folder(tmp_path / "full", use_ema=True)
    for name, value in full.ema.state_dict().items():
        assert torch.equal(ema.state_dict()[name], value), name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        trainer = train(_light_config(data, out, 2, device="cpu", save_interval=100))
        params = {f"vae.{k}": v for k, v in trainer.vae.named_parameters()}
        params.update({f"disc.{k}": v for k, v in trainer.loss.discriminator.named_parameters()})
        torch.save({k: v.detach().clone() for k, v in params.items()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.shutdown()


def test_two_process_ddp_keeps_ranks_identical(one_object, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(one_object), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    info = json.loads((tmp_path / "checkpoint-00000002" / checkpoint.STATE_JSON_FILE).read_text())
    assert info["world_size"] == 2 and info["batches_consumed"] == 4


def _reconstruction_psnr(vae, data, resolution: int) -> float:
    """PSNR over every stored view, decoding the posterior mean of the fixed encoder views."""
    store = open_store(data)
    views = tuple(int(v) for v in store.read(0).view_ids)
    dataset = MultiViewDataset(store, MultiViewConfig(encoder_views=ENCODER_VIEWS[:2], encoder_resolution=64,
                                                      render_resolution=resolution, num_target_views=len(views),
                                                      target_views=views))
    sample = dataset[0]
    with torch.no_grad():
        triplane = vae.decode(vae.encode(sample["enc_input"][None]).latent(sample=False))
        rgb = vae.render(triplane, sample["target_cameras"][None], resolution, deterministic=True)["rgb"][0]
    return psnr_from_mse((rgb - sample["target_rgb"]).pow(2).mean()).item()


@pytest.mark.slow
def test_tiny_vae_overfits_one_object(script, tmp_path):
    """Measured: 27.2 dB over all 40 views after 300 steps, ~3 min (one thread, shared 2-core machine)."""
    data = _write_object(script, tmp_path / "data", views=40)
    cfg = preset_train_config("tiny", data=str(data), out=str(tmp_path / "run"), max_steps=300,
                              random_encoder_views=False, save_interval=300, progress=False, tensorboard=False)
    trainer = train(cfg)
    psnr = _reconstruction_psnr(trainer.vae.eval(), data, cfg.render_resolution)
    print(f"tiny VAE overfit: {psnr:.2f} dB over 40 views after {cfg.max_steps} steps")
    assert psnr >= 25.0, f"tiny VAE reached only {psnr:.2f} dB on its own views"


def test_device_bank_trains_and_resumes_exactly(one_object, tmp_path):
    """`--data-on-device` (here the CPU is the device): the bank's batches drive the same loop, and a resume
    continues the stream of batches at the right index."""
    kw = dict(data_on_device=True, loss=dict(depth_weight=0.5, depth_hinge=10.0))
    full = train(_light_config(one_object, tmp_path / "full", 4, **kw))
    train(_light_config(one_object, tmp_path / "split", 2, **kw))
    resumed = train(_light_config(one_object, tmp_path / "split", 4, resume=True, **kw))
    expected, got = _log(tmp_path / "full"), _log(tmp_path / "split")
    assert [r["total"] for r in got] == [r["total"] for r in expected]
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in got)
    for name, value in full.vae.state_dict().items():
        assert torch.equal(resumed.vae.state_dict()[name], value), name


def test_procedural_source_trains_without_a_store(tmp_path):
    trainer = train(_light_config("procedural:2:5", tmp_path / "run", 1, data_on_device=True))
    assert trainer.step == 1 and len(trainer.dataset) == 2
    assert trainer.dataset.object_ids[0].endswith("/0")


def test_max_minutes_stops_with_a_checkpoint(one_object, tmp_path):
    trainer = train(_light_config(one_object, tmp_path / "run", 1000, max_minutes=1e-9, save_interval=1000))
    assert trainer.step == 1  # the first step runs, then the budget is spent
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run")] == ["checkpoint-00000001"]
    assert "--max-minutes" in (tmp_path / "run" / "log.jsonl").read_text()


def test_init_from_starts_with_the_given_weights(one_object, tmp_path):
    first = train(_light_config(one_object, tmp_path / "a", 1))
    from nsr.trainer import VAETrainer
    trainer = VAETrainer(_light_config(one_object, tmp_path / "b", 0, init_from=str(tmp_path / "a")))
    for name, value in first.vae.state_dict().items():
        assert torch.equal(trainer.vae.state_dict()[name], value), name
    with pytest.raises(ValueError, match="triplane-lookup"):
        VAETrainer(preset_train_config("tiny", data=str(one_object), out=str(tmp_path / "c"), triplane_lookup="x"))


def _snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes: a refused run must leave all of them as they were."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_used_out_is_refused_and_a_resume_must_keep_the_settings(one_object, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--preset", "tiny", "--data", str(one_object), "--out", str(out), "--vae-overrides", json.dumps(LIGHT),
            "--no-progress", "--no-tensorboard", "--num-target-views", "1", "--save-interval", "1"]
    main([*base, "--max-steps", "1"])
    before = _snapshot(out)
    refusals = [
        (["--max-steps", "2"],
         f"{out} already holds a training run (config.json, log.jsonl, checkpoint-00000001); pass --resume to "
         f"continue it, or a fresh --out folder"),
        (["--max-steps", "2", "--resume", "--lr-encoder", "0.002", "--l2-weight", "0.5"],
         f"--resume: {out} was trained with other settings: --lr-encoder 0.001 (now 0.002), --l2-weight 1 (now 0.5); "
         f"resume with the run's own values (see {out / 'config.json'}) or train into a fresh --out folder"),
    ]
    for extra, message in refusals:
        with pytest.raises(SystemExit) as e:
            main([*base, *extra])
        assert e.value.code == 2
        assert capsys.readouterr().err == f"train_vae.py: error: {message}\n"
        assert _snapshot(out) == before
    # bookkeeping may change on a resume: how long, how often, where
    main([*base, "--max-steps", "2", "--resume", "--log-interval", "5", "--device", "cpu", "--keep-last", "1"])
    assert [p.name for p in checkpoint.list_checkpoints(out)] == ["checkpoint-00000002"]


@pytest.mark.slow
def test_procedural_chunk_launcher_trains_exports_and_evaluates(tmp_path):
    """The campaign chunk of docs/TRAINING.md end to end on the CPU: one step from the shipped VAE (the time budget
    is spent after it), an fp16 pipeline with the new VAE in place, and its held-out evaluation."""
    from utils.checkpoint import load_weights

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "chunk"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "NUM_OBJECTS": "2", "EVAL_OBJECTS": "1",
           "DEVICE": "cpu", "EVAL_FLAGS": "--mesh-resolution 24 --points 1000 --surface-points 2000",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["shell_scripts/train/stage1_vae/procedural_chunk.sh", "checkpoints/procedural/vae", str(out),
                           "0.000001", "--batch-size", "1", "--num-target-views", "1", "--patch-size", "32",
                           "--no-progress"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = load_weights(out / "pipeline" / "vae" / "model.safetensors")
    shipped = load_weights(root / "checkpoints" / "procedural" / "vae" / "model.safetensors")
    assert all(v.dtype == torch.float16 for v in new.values()) and new.keys() == shipped.keys()
    assert any(not torch.equal(new[k], shipped[k]) for k in new)  # the step changed the weights
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["completed_tasks"] == ["vae"] and metrics["vae"]["mean"]["psnr"] > 10


def test_sigterm_ends_the_run_with_a_checkpoint_that_resumes_exactly(one_object, tmp_path, signal_after_first_step):
    """A real SIGTERM (what a scheduler sends before preemption): the step finishes, a checkpoint is saved and
    logged, the exit status is 143; `--resume` then continues as if never stopped."""
    flags = ["--preset", "tiny", "--data", str(one_object), "--vae-overrides", json.dumps(LIGHT), "--no-progress",
             "--no-tensorboard", "--num-target-views", "1", "--log-interval", "1", "--save-interval", "1000"]
    out = tmp_path / "stopped"
    code, err = signal_after_first_step(["scripts/train_vae.py", *flags, "--out", str(out), "--max-steps", "1000"],
                                        out, signal.SIGTERM)
    folder = checkpoint.latest_checkpoint(out)
    step = checkpoint.checkpoint_step(folder)
    assert code == 143 and 1 <= step < 1000
    message = f"stopped by SIGTERM at step {step}; saved {folder}; continue with --resume"
    assert err.splitlines()[-1] == f"train_vae.py: {message}" and "Traceback" not in err
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["event"] == message

    main([*flags, "--out", str(out), "--max-steps", str(step + 1), "--resume"])
    main([*flags, "--out", str(tmp_path / "full"), "--max-steps", str(step + 1)])
    assert [r["total"] for r in _log(out)] == [r["total"] for r in _log(tmp_path / "full")]


def test_bad_numbers_are_one_line_each_before_any_set_up(tmp_path, capsys):
    """A huge --seed (torch: "Overflow when unpacking long long") or a NaN rate is named with its flag; the
    missing data folder is never reached."""
    with pytest.raises(SystemExit) as e:
        main(["--preset", "tiny", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"), "--max-steps", "1",
              "--seed", str(2**70), "--lr-encoder", "nan"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "train_vae.py: error: --lr-encoder must be a finite number, got nan",
        f"train_vae.py: error: --seed must be at most 4294967295 (seeds are 32-bit), got {2**70}"]
    assert not (tmp_path / "run").exists()


def test_an_unwritable_out_is_found_before_the_data_is_read(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "run"
    with pytest.raises(SystemExit) as e:
        main(["--preset", "tiny", "--data", str(tmp_path / "none"), "--out", str(out), "--max-steps", "1"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"train_vae.py: error: --out {out}: {tmp_path / 'file.txt'} is a file, not a "
                                       f"folder; pick another --out\n")


def test_sigterm_under_torchrun_stops_every_rank_at_one_step_with_a_checkpoint(one_object, tmp_path,
                                                                               signal_after_first_step):
    """SIGTERM to the torchrun agent (as a scheduler sends it): the agent passes it to both ranks, which agree on
    the step to stop at (one all-reduce), save once and log it; the launcher's exit status is non-zero."""
    out = tmp_path / "run"
    code, err = signal_after_first_step(
        ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "scripts/train_vae.py", "--preset", "tiny", "--data", str(one_object), "--out", str(out), "--max-steps",
         "1000", "--vae-overrides", json.dumps(LIGHT), "--no-progress", "--no-tensorboard", "--num-target-views", "1",
         "--log-interval", "1", "--save-interval", "1000", "--device", "cpu"], out, signal.SIGTERM)
    folder = checkpoint.latest_checkpoint(out)
    info = json.loads((folder / checkpoint.STATE_JSON_FILE).read_text())
    assert code != 0 and info["world_size"] == 2 and 1 <= info["step"] < 1000
    message = f"stopped by SIGTERM at step {info['step']}; saved {folder}; continue with --resume"
    assert f"train_vae.py: {message}" in err.splitlines()
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["event"] == message
