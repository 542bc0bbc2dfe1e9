"""The stage-2 chain on a procedural set: extract_latents → train_diffusion (t23d, i23d) → export_pipeline, whose
folder loads through `checkpoints.loader.load_models` for both tasks and generates through the Pipeline."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from checkpoints.loader import load_models
from datasets.latents import LatentDataset, LatentDatasetConfig
from guided_diffusion.pipeline import GenerationSettings, Pipeline
from utils.checkpoint import latest_checkpoint

ARCH = json.dumps({"denoiser": {"depth": 1, "hidden_size": 32, "num_heads": 2, "latent_size": 32, "patch_size": 4}})
CONDITIONER = {"t23d": {"width": 32, "depth": 1, "num_heads": 2},
               "i23d": {"width": 32, "depth": 1, "num_heads": 2, "image_size": 16, "patch_size": 4}}


@pytest.fixture(scope="module")
def runs(script, procedural_data, vae32_folder, tmp_path_factory):
    """A latent store extracted with the VAE, and a 2-step training run per task (VAE taken from the store)."""
    root = tmp_path_factory.mktemp("stage2")
    script("extract_latents").main(["--ckpt", str(vae32_folder), "--data", str(procedural_data), "--out",
                                    str(root / "latents"), "--device", "cpu", "--workers", "0", "--cond-views", "0,27"])
    for task in ("t23d", "i23d"):
        script("train_diffusion").main([
            "--task", task, "--preset", f"{task}-tiny", "--latents", str(root / "latents"), "--out", str(root / task),
            "--max-steps", "2", "--batch-size", "2", "--stage2-overrides", ARCH, "--conditioner-options",
            json.dumps(CONDITIONER[task]), "--device", "cpu", "--workers", "0", "--save-every", "1",
            "--keep-last", "1", "--no-tensorboard", "--no-progress"])
    return root


@pytest.fixture(scope="module")
def pipeline_dir(script, runs, vae32_folder):
    out = runs / "pipeline"
    script("export_pipeline").main(["--vae", str(vae32_folder), "--t23d", str(runs / "t23d"), "--i23d",
                                    str(runs / "i23d"), "--out", str(out), "--ema"])
    return out


def test_export_writes_half_precision_stage_folders_without_machine_paths(runs, pipeline_dir, vae32_folder):
    for stage in ("vae", "t23d", "i23d"):
        weights = load_file(str(pipeline_dir / stage / "model.safetensors"))
        assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}, stage
        config = json.loads((pipeline_dir / stage / "config.json").read_text())
        assert "vae_folder" not in config and config["weights_dtype"] == "fp16"
    ema = load_file(str(latest_checkpoint(runs / "t23d") / "ema.safetensors"))
    exported = load_file(str(pipeline_dir / "t23d" / "model.safetensors"))
    assert exported.keys() == ema.keys()
    assert all(torch.equal(exported[k], ema[k].half() if ema[k].is_floating_point() else ema[k]) for k in ema)

    card = json.loads((pipeline_dir / "model_card.json").read_text())
    stats = json.loads((runs / "latents" / "stats.json").read_text())
    for task in ("t23d", "i23d"):
        assert card[task]["steps"] == 2 and card[task]["ema"] is True and card[task]["preset"] == f"{task}-tiny"
        assert card[task]["training"]["num_latents"] == 2 and card[task]["training"]["data"] == "procedural"
        assert card[task]["latent_divider"] == stats["std"]
    assert card["vae"]["preset"] == "tiny" and card["vae"]["overrides"] == {"latent_size": 32}
    readme = (pipeline_dir / "README.md").read_text()
    assert "| t23d | t23d-tiny | offline-text |" in readme and "| i23d | i23d-tiny | offline-image |" in readme


def test_exported_pipeline_loads_and_generates_for_both_tasks(runs, pipeline_dir):
    stats = json.loads((runs / "latents" / "stats.json").read_text())
    image = LatentDataset(runs / "latents", LatentDatasetConfig(train=False))[0]["cond_image"]
    for task, condition in (("t23d", "a red chair"), ("i23d", image)):
        models = load_models(pipeline_dir, task)
        assert models.task == task and models.stage2.diffusion.latent_divider == stats["std"]
        assert models.vae.config.latent_shape == (12, 32, 32)
        (obj,) = Pipeline(models, torch.device("cpu")).generate([condition], ["x"], GenerationSettings(steps=2))
        assert obj.latent.shape == (12, 32, 32) and torch.isfinite(obj.latent).all()
        assert obj.triplane.shape == (1, 96, 64, 64) and torch.isfinite(obj.triplane).all()
        # the training run itself also loads: its checkpoints name the VAE the latent store recorded
        assert load_models(runs / task, task).vae.config.latent_shape == (12, 32, 32)


def test_export_refuses_bad_input_with_one_line(script, runs, pipeline_dir, vae32_folder, tmp_path, capsys):
    cases = [
        (["--t23d", str(runs / "t23d"), "--out", str(pipeline_dir)], f"{pipeline_dir} already holds a pipeline"),
        (["--t23d", str(runs / "i23d"), "--out", str(tmp_path / "p")], "holds a i23d model, but was passed as --t23d"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            script("export_pipeline").main(["--vae", str(vae32_folder), *extra])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("export_pipeline.py: error: ") and message in err and err.count("\n") == 1
