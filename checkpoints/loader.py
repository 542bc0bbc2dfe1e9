"""The one loader: builds (VAE, denoiser, conditioner) for a task from any supported checkpoint.

Supported sources (`--ckpt`):
  * a pipeline folder (the embedded default `checkpoints/procedural/` is one):
        <dir>/vae/{model.safetensors, config.json}
        <dir>/t23d/{model.safetensors, config.json}    and/or    <dir>/i23d/...
    A stage folder's config.json holds {"task", "stage2": Stage2Config, "conditioner": describe()}; its weights are
    `denoiser.*` plus `conditioner.*` for trainable conditioners.
  * a stage-2 training run / checkpoint folder whose config.json also names its VAE folder (`vae_folder`);
  * the authors' released joint file (`ddpm_model.*` + `rec_model.*`, safetensors or .pt), by path or alias
    (`released-t23d`, `released-i23d`); its pretrained conditioner is built from local files or the hub.
Every load is strict: a missing, unexpected or mis-shaped key is an error that names the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from checkpoints.convert import dit as dit_convert
from checkpoints.convert import vae as vae_convert
from checkpoints.hub import resolve_checkpoint
from guided_diffusion.config import Stage2Config, build_denoiser, preset
from ldm.base import Conditioner
from ldm.registry import build_conditioner
from nsr.config import vae_config
from nsr.vae import TriplaneVAE
from utils.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    CheckpointError,
    check_finite,
    load_into,
    load_model_folder,
    load_torch_file,
    load_weights,
    read_json,
    resolve_model_folder,
)

TASKS = ("t23d", "i23d")
RELEASED_CONDITIONERS = {"t23d": "clip-text", "i23d": "clip-dino-image"}


@dataclass
class LoadedModels:
    """Everything generation needs, in eval mode on one device."""

    task: str
    vae: TriplaneVAE
    denoiser: nn.Module
    conditioner: Conditioner
    stage2: Stage2Config
    source: str  # what was loaded, for the JSON record


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def build_vae_from_config(config: dict) -> TriplaneVAE:
    """A VAE from a model folder's config.json (`{"preset", "overrides"}`)."""
    return TriplaneVAE(vae_config(config["preset"], config.get("overrides")))


def load_vae_folder(folder: str | os.PathLike, device: str | torch.device = "cpu",
                    use_ema: bool = False) -> TriplaneVAE:
    """A VAE in eval mode from a model folder (training checkpoint or export) or a run directory's newest
    checkpoint; use_ema loads the checkpoint's EMA weights instead of the raw ones."""
    return load_model_folder(folder, build_vae_from_config, use_ema=use_ema, device=device).eval()


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_stage2_folder(folder: str | os.PathLike, device: str | torch.device = "cpu",
                       **conditioner_kwargs) -> tuple[nn.Module, Conditioner, Stage2Config, dict]:
    """Denoiser, conditioner and config from a stage-2 model folder; returns its config.json too."""
    folder = resolve_model_folder(folder)
    config = read_json(folder / CONFIG_FILE)
    if "stage2" not in config:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not a stage-2 config (no 'stage2' entry)")
    stage2 = Stage2Config.from_dict(config["stage2"])
    weights = load_weights(folder / MODEL_FILE)
    denoiser = build_denoiser(stage2.denoiser)
    load_into(denoiser, _split(weights, "denoiser."), folder / MODEL_FILE)
    conditioner = build_conditioner(**{**config["conditioner"], **conditioner_kwargs})
    if conditioner.trainable:
        load_into(conditioner, _split(weights, "conditioner."), folder / MODEL_FILE)
    return denoiser.to(device).eval(), conditioner.to(device).eval(), stage2, config


def load_released_joint(path: str | os.PathLike, task: str | None = None, device: str | torch.device = "cpu",
                        **conditioner_kwargs) -> LoadedModels:
    """The authors' joint checkpoint: the release VAE + T23D or I23D denoiser, strictly converted."""
    path = Path(path)
    state = load_weights(path) if path.suffix == ".safetensors" else load_torch_file(path)
    check_finite(state, path)  # the released files load through converters, not `load_into`
    released_task = "i23d" if f"{dit_convert.JOINT_PREFIX}cap_embedder.0.weight" in state else "t23d"
    if task is not None and task != released_task:
        raise CheckpointError(f"{path} is a released {released_task} checkpoint, but {task} was asked for; "
                              f"use the {task} file (alias released-{task})")
    stage2 = preset(released_task)
    with torch.device("meta"):
        denoiser = build_denoiser(stage2.denoiser)
        vae = TriplaneVAE(vae_config("objaverse"))
    denoiser = denoiser.to_empty(device="cpu")
    vae = vae.to_empty(device="cpu")
    try:
        dit_convert.load_released(denoiser, state, stage2.denoiser.arch)
        vae.load_state_dict(vae_convert.to_our_state_dict(state, prefix="rec_model."), strict=True)
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path} does not match the released architecture: {err}") from err
    conditioner = build_conditioner(RELEASED_CONDITIONERS[released_task], **conditioner_kwargs)
    return LoadedModels(released_task, vae.to(device).eval(), denoiser.to(device).eval(),
                        conditioner.to(device).eval(), stage2, str(path))


def load_models(ckpt: str | os.PathLike | None, task: str, device: str | torch.device = "cpu",
                **conditioner_kwargs) -> LoadedModels:
    """Resolve `ckpt` (None: the embedded default) and load the models for `task`."""
    _check_task(task)
    path = resolve_checkpoint(ckpt)
    if path.is_file():
        return load_released_joint(path, task, device, **conditioner_kwargs)
    if (path / "vae").is_dir():
        stage_dir = path / task
        if not stage_dir.is_dir():
            raise CheckpointError(f"{path} has no {task}/ model; available: "
                                  f"{sorted(p.name for p in path.iterdir() if p.name in TASKS)}")
        vae = load_vae_folder(path / "vae", device)
        denoiser, conditioner, stage2, _ = load_stage2_folder(stage_dir, device, **conditioner_kwargs)
        return LoadedModels(task, vae, denoiser, conditioner, stage2, str(path))
    denoiser, conditioner, stage2, config = load_stage2_folder(path, device, **conditioner_kwargs)
    if config.get("task") not in (None, task):
        raise CheckpointError(f"{path} holds a {config['task']} model, but {task} was asked for")
    if "vae_folder" not in config:
        raise CheckpointError(f"{path}/config.json does not name its VAE ('vae_folder'); pass a pipeline folder")
    vae = load_vae_folder(config["vae_folder"], device)
    return LoadedModels(task, vae, denoiser, conditioner, stage2, str(path))
