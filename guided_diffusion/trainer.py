"""Stage-2 training loop (spec §5.2–5.3): a DiT on pre-extracted VAE latents, conditioned on captions or images.

T23D: ε-prediction DDPM loss (the released `sgm_legacy` objective); each caption becomes "" with the dropout rate
before the text conditioner. I23D: linear-path flow-matching velocity loss; the condition is a random stored view
of the object, and every conditioning stream (vector, CLIP-side tokens, DINO-side tokens) is zeroed independently.
The diffusion target is the stored posterior sample divided by `latent_divider` (spec §4).

Trainable (offline) conditioners train jointly with the denoiser; pretrained ones stay frozen. The trained module's
state dict is exactly the stage-2 checkpoint layout (`denoiser.*`, `conditioner.*`), so every checkpoint loads
through `checkpoints.loader`. Runs as one process or under torchrun (DDP), and resumes exactly: weights, optimiser,
EMA, every rank's RNG states and the data position are restored, so the loss trajectory after a resume equals an
uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from datasets.collate import collate_samples
from guided_diffusion.config import (
    DenoiserArch,
    Stage2Config,
    build_denoiser,
    build_process,
    preset,
    to_diffusion_latent,
)
from guided_diffusion.guidance import drop_captions, drop_streams
from ldm.base import Conditioner
from ldm.registry import build_conditioner
from utils import checkpoint, distributed
from utils.logging import TrainLogger
from utils.run_folder import check_run_folder
from utils.training import (
    EMA,
    NonFiniteGuard,
    ParamGroupSpec,
    Stopped,
    StopSignals,
    autocast,
    build_adamw,
    capture_rng_state,
    clip_gradients,
    derive_seed,
    end_of_step,
    log_values,
    param_groups_by_prefix,
    restore_rng_state,
    resumable_loader,
    seed_everything,
)

log = logging.getLogger("ln3diff.train")

TASK_ARCH = {"t23d": DenoiserArch.DIT_T23D, "i23d": DenoiserArch.DIT_I23D}
# What `scripts/extract_latents.py` writes next to the latent folders.
STATS_FILE = "stats.json"
EXTRACTION_FILE = "extraction.json"


@dataclass
class DiffusionTrainConfig:
    """Every setting of a stage-2 training run; `--out/config.json` stores it in full."""

    task: str = "t23d"
    preset: str = "t23d-tiny"  # stage-2 preset (guided_diffusion/config.py)
    latents: str = ""  # latent store (scripts/extract_latents.py)
    out: str = ""
    vae: str = ""  # VAE model / run folder the latents came from; "" → the one the latent store records
    max_steps: int = 1000
    batch_size: int = 8  # latents per rank per step
    resume: bool = False
    stage2_overrides: dict = field(default_factory=dict)  # {"denoiser": {...}, "diffusion": {...}} over the preset
    conditioner: str = "offline-text"  # registry name (ldm/registry.py)
    conditioner_preset: str = "tiny"  # offline conditioners: their size preset
    conditioner_options: dict = field(default_factory=dict)  # more conditioner keywords (e.g. width, source)
    latent_divider: float | None = None  # None: the latent store's std (stats.json), else the preset's
    use_latent_mean: bool = False  # train on the posterior mean instead of the stored sample (release: sample)
    cfg_dropout: float | None = None  # None: the preset's (0.1 per caption, 0.19 per image stream)
    # optimisation (spec §5.2: AdamW, lr 1e-4, weight decay 0.05, grad-norm clip 5.0, no EMA in the release)
    lr: float = 1e-4
    conditioner_lr_scale: float = 1.0  # trainable conditioner lr = lr × this (release embedders: 0.1)
    weight_decay: float = 0.05
    grad_clip: float = 5.0
    ema: bool = True
    ema_decay: float = 0.9999
    # bookkeeping
    save_every: int = 10000
    keep_last: int = 3
    log_every: int = 100
    workers: int = 4
    device: str = "auto"
    seed: int = 0
    bf16: bool = True  # bf16 autocast on GPU (as released); CPU always trains in fp32
    skip_bad_samples: bool = False
    max_nonfinite_steps: int = 5
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.cfg_dropout is not None and not 0.0 <= self.cfg_dropout < 1.0:
            raise ValueError(f"--cfg-dropout must be in [0, 1), got {self.cfg_dropout}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Settings a `--resume` may change (bookkeeping: how long, how often to log / save, where to run); every other
# setting must match the saved run's.
RESUMABLE_CHANGES = ("out", "resume", "max_steps", "save_every", "keep_last", "log_every", "workers", "device",
                     "skip_bad_samples", "max_nonfinite_steps", "tensorboard", "progress")


# Training defaults per stage-2 preset; the CLI and shell launchers override single fields. Release presets use the
# released frozen conditioners; the others train an offline conditioner from scratch with the denoiser.
TRAIN_PRESETS: dict[str, dict] = {
    "t23d": dict(task="t23d", conditioner="clip-text", lr=1e-4, batch_size=32),  # gpu7-batch32-lr1e-4-bf16
    "i23d": dict(task="i23d", conditioner="clip-dino-image", lr=1e-4, batch_size=40),  # gpu7-batch40-lr1e-4-bf16
    "t23d-b": dict(task="t23d", conditioner="clip-text", lr=1e-4, batch_size=20),  # objaverse-dit.sh
    # the embedded model: tiny offline conditioners, so everything ships within 24 MiB (docs/TRAINING.md)
    "t23d-small": dict(task="t23d", conditioner="offline-text", conditioner_preset="tiny", lr=3e-4, batch_size=64,
                       ema_decay=0.999, save_every=500, keep_last=2, log_every=50),
    "i23d-small": dict(task="i23d", conditioner="offline-image", conditioner_preset="tiny", lr=3e-4, batch_size=64,
                       ema_decay=0.999, save_every=500, keep_last=2, log_every=50),
    # CPU smoke / overfit runs: few steps, so a short EMA and frequent logs
    "t23d-tiny": dict(task="t23d", conditioner="offline-text", conditioner_preset="tiny", lr=1e-3, batch_size=8,
                      ema_decay=0.999, save_every=500, log_every=10, workers=0),
    "i23d-tiny": dict(task="i23d", conditioner="offline-image", conditioner_preset="tiny", lr=1e-3, batch_size=8,
                      ema_decay=0.999, save_every=500, log_every=10, workers=0),
}


def preset_train_config(preset_name: str, **overrides) -> DiffusionTrainConfig:
    """The preset's training defaults with `overrides` on top; checks the task matches the preset's denoiser."""
    if preset_name not in TRAIN_PRESETS:
        raise ValueError(f"no training defaults for stage-2 preset {preset_name!r}; choose one of "
                         f"{sorted(TRAIN_PRESETS)}")
    cfg = DiffusionTrainConfig(**{**TRAIN_PRESETS[preset_name], "preset": preset_name, **overrides})
    preset_task = TRAIN_PRESETS[preset_name]["task"]
    if cfg.task != preset_task:
        raise ValueError(f"preset {preset_name!r} is a {preset_task} model; pass --task {preset_task}, or a "
                         f"{cfg.task} preset ({', '.join(p for p in TRAIN_PRESETS if p.startswith(cfg.task))})")
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Model set-up


def stage2_config(cfg: DiffusionTrainConfig) -> Stage2Config:
    """The preset with `stage2_overrides` applied (unknown keys are an error, not silently dropped)."""
    data = preset(cfg.preset).to_dict()
    for section, values in cfg.stage2_overrides.items():
        if section not in ("denoiser", "diffusion"):
            raise ValueError(f"stage-2 override section {section!r} is unknown; use 'denoiser' or 'diffusion'")
        known = sorted(set(data[section]) - {"arch"})
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown {section} override {unknown[0]!r}; known: {', '.join(known)}")
        data[section].update(values)
    if cfg.cfg_dropout is not None:
        data["diffusion"]["condition_dropout"] = cfg.cfg_dropout
    return Stage2Config.from_dict(data)


def build_training_conditioner(cfg: DiffusionTrainConfig) -> Conditioner:
    """The conditioner named by the config; offline ones get `conditioner_preset` unless the options set one."""
    options = dict(cfg.conditioner_options)
    if cfg.conditioner.startswith("offline-"):
        options.setdefault("preset", cfg.conditioner_preset)
    conditioner = build_conditioner(cfg.conditioner, **options)
    if conditioner.modality != ("text" if cfg.task == "t23d" else "image"):
        raise ValueError(f"conditioner {cfg.conditioner!r} takes {conditioner.modality}, but {cfg.task} needs "
                         f"{'text' if cfg.task == 't23d' else 'images'}")
    return conditioner


def match_context(stage2: Stage2Config, conditioner: Conditioner) -> Stage2Config:
    """Fit the denoiser's context widths to the conditioner.

    A trainable conditioner sets them (its size preset decides; T23D: context_dim = width; I23D: the crossattn
    channels split in halves as the CLIP | DINO streams, pooled_dim = vector width). A frozen conditioner's widths
    are fixed by its weights, so the preset must already take them.
    """
    den, width, vector = stage2.denoiser, conditioner.context_dim, conditioner.vector_dim
    if den.arch is DenoiserArch.DIT_T23D:
        fits = den.context_dim == width
        fitted = {"context_dim": width}
    else:
        fits = den.clip_dim + den.dino_dim == width and den.pooled_dim == vector
        fitted = {"clip_dim": width // 2, "dino_dim": width - width // 2, "pooled_dim": vector}
    if conditioner.trainable:
        return dataclasses.replace(stage2, denoiser=dataclasses.replace(den, **fitted))
    if not fits:
        raise ValueError(f"conditioner {conditioner.name!r} gives context width {width} and vector width {vector}, "
                         f"which preset {stage2.name!r} does not take; pick a matching preset or conditioner")
    return stage2


class Stage2Model(nn.Module):
    """Denoiser + trainable conditioner; its state dict is the checkpoint layout (`denoiser.*`, `conditioner.*`).

    `forward(latents (B, 3C, h, w), condition)` → per-sample loss `(B,)`. `condition` is what the conditioner takes
    (captions / images (B, 3, H, W) in [-1, 1]) when it trains with the model, else a precomputed context dict.
    I23D stream dropout happens here, after the conditioner, so DDP sees every trainable use inside `forward`.
    """

    def __init__(self, denoiser: nn.Module, process, conditioner: Conditioner | None, stream_dropout: float = 0.0,
                 crossattn_split: int | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.conditioner = conditioner  # None: a frozen one runs outside, and its weights stay out of checkpoints
        self.process = process
        self.stream_dropout = stream_dropout
        self.crossattn_split = crossattn_split

    def forward(self, latents: torch.Tensor, condition) -> torch.Tensor:
        context = condition if self.conditioner is None else self.conditioner(condition)
        if self.training and self.stream_dropout > 0:
            context = drop_streams(context, self.stream_dropout, self.crossattn_split)
        return self.process.loss(self.denoiser, latents, context)


# ---------------------------------------------------------------------------------------------------------------
# Latent store side files


def read_store_json(latents: str | Path, name: str) -> dict | None:
    """A side file `extract_latents.py` wrote into the latent store (None when absent)."""
    path = Path(latents) / name
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_vae_folder(cfg: DiffusionTrainConfig) -> Path:
    """The VAE checkpoint folder of --vae (or of the VAE the latent store was extracted with), absolute, because
    every stage-2 checkpoint records it."""
    vae = cfg.vae or (read_store_json(cfg.latents, EXTRACTION_FILE) or {}).get("vae")
    if not vae:
        raise ValueError(f"{cfg.latents} does not record its VAE ({EXTRACTION_FILE}); pass --vae DIR, the VAE "
                         f"folder its latents came from")
    # the exact checkpoint: a VAE run that keeps training must not change which VAE this model decodes with
    return checkpoint.resolve_model_folder(Path(vae)).resolve()


def vae_latent_shape(vae_folder: Path) -> tuple[int, int, int]:
    from nsr.config import vae_config

    config = checkpoint.read_json(vae_folder / checkpoint.CONFIG_FILE)
    return vae_config(config["preset"], config.get("overrides")).latent_shape


def resolve_latent_divider(cfg: DiffusionTrainConfig, stage2: Stage2Config) -> tuple[float, str]:
    """(divider, where it came from): --latent-divider, else the std of what the store's stats say this run trains
    on (posterior samples, or means with --use-latent-mean), else the preset's."""
    if cfg.latent_divider is not None:
        return cfg.latent_divider, "flag"
    stats = read_store_json(cfg.latents, STATS_FILE)
    if stats is not None:
        if cfg.use_latent_mean:
            return float(stats["posterior_mean"]["std"]), f"{STATS_FILE} posterior_mean std"
        return float(stats["std"]), f"{STATS_FILE} std"
    return stage2.diffusion.latent_divider, f"preset {stage2.name}"


# ---------------------------------------------------------------------------------------------------------------
# Trainer


class DiffusionTrainer:
    def __init__(self, cfg: DiffusionTrainConfig):
        if not cfg.out:
            raise ValueError("no output directory; pass --out DIR")
        if not cfg.latents:
            raise ValueError("no latent store; pass --latents DIR (see scripts/extract_latents.py)")
        if cfg.task not in TASK_ARCH:
            raise ValueError(f"unknown task {cfg.task!r}; expected one of {sorted(TASK_ARCH)}")
        # before anything is built: a refused run must cost nothing and leave --out as it was
        check_run_folder(cfg.out, cfg.resume, cfg.to_dict(), RESUMABLE_CHANGES)
        self.cfg = cfg
        self.device = distributed.init_distributed(cfg.device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.out = Path(cfg.out)
        self.dataset = self._build_dataset()
        probe = self.dataset[0]
        if cfg.task == "i23d" and "cond_image" not in probe:
            raise ValueError(f"{cfg.latents} holds no condition images, which i23d trains on; re-run "
                             f"scripts/extract_latents.py with --cond-views")
        self.vae_folder = resolve_vae_folder(cfg)

        # the same initial weights on every rank and for every world size; per-rank streams start after
        seed_everything(cfg.seed)
        self.conditioner = build_training_conditioner(cfg)
        stage2 = stage2_config(cfg)
        if stage2.denoiser.arch is not TASK_ARCH[cfg.task]:
            raise ValueError(f"preset {cfg.preset!r} builds a {stage2.denoiser.arch.value} denoiser, not a {cfg.task} "
                             f"one")
        stage2 = match_context(stage2, self.conditioner)
        divider, source = resolve_latent_divider(cfg, stage2)
        if not divider > 0:
            raise ValueError(f"latent divider must be positive, got {divider} (from {source})")
        self.stage2 = dataclasses.replace(stage2, diffusion=dataclasses.replace(stage2.diffusion,
                                                                                latent_divider=divider))
        self._check_latent_shape(tuple(probe["latent"].shape))
        if distributed.is_main():
            log.info("latent divider %.5g (from %s)", divider, source)

        self.model = Stage2Model(
            build_denoiser(self.stage2.denoiser), build_process(self.stage2.diffusion),
            self.conditioner if self.conditioner.trainable else None,
            stream_dropout=self.stage2.diffusion.condition_dropout if cfg.task == "i23d" else 0.0,
            crossattn_split=getattr(self.stage2.denoiser, "clip_dim", None)).to(self.device)
        self.conditioner.to(self.device)
        seed_everything(derive_seed(cfg.seed, "rank", self.rank))

        self.optimizer = build_adamw(self._param_groups(), self.device)
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema else None
        self.guard = NonFiniteGuard(cfg.max_nonfinite_steps)
        self.step = 0
        self.batches_consumed = 0
        self.stopped: Stopped | None = None  # set when a signal ended `train` early
        if cfg.resume:
            self._resume()
        self.train_model = self._wrap_distributed()

    # -- set-up -------------------------------------------------------------------------------------------------

    def _build_dataset(self):
        from datasets.latents import LatentDataset, LatentDatasetConfig

        cfg = self.cfg
        return LatentDataset(cfg.latents, LatentDatasetConfig(train=True, use_mean=cfg.use_latent_mean,
                                                              seed=cfg.seed, skip_bad=cfg.skip_bad_samples))

    def _check_latent_shape(self, stored: tuple[int, ...]) -> None:
        den = self.stage2.denoiser
        expected = (den.planes * den.latent_channels, den.latent_size, den.latent_size)
        vae = vae_latent_shape(self.vae_folder)
        if stored != expected or vae != expected:
            raise ValueError(f"latent shapes disagree: store {stored}, VAE {vae}, preset {self.stage2.name!r} "
                             f"{expected}; pick a preset for this VAE or set --stage2-overrides "
                             f"'{{\"denoiser\": {{\"latent_size\": {stored[-1]}}}}}'")

    def _param_groups(self) -> list[dict]:
        cfg = self.cfg
        specs = [ParamGroupSpec("denoiser", ("denoiser.",), cfg.lr, cfg.weight_decay)]
        if self.model.conditioner is not None:
            specs.append(ParamGroupSpec("conditioner", ("conditioner.",), cfg.lr * cfg.conditioner_lr_scale,
                                        cfg.weight_decay))
        return param_groups_by_prefix(self.model, specs)

    def _wrap_distributed(self) -> nn.Module:
        if self.world == 1:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # static graph: some parameters are never used (T23D ignores the conditioner's vector head; the release
        # I23D keeps unused tensors), and the used set never changes
        return DistributedDataParallel(self.model, device_ids=ids, static_graph=True)

    def _loader(self) -> DataLoader:
        return resumable_loader(self.dataset, self.cfg.batch_size, self.cfg.seed, collate_fn=collate_samples,
                                num_workers=self.cfg.workers, device=self.device, start_batch=self.batches_consumed)

    # -- checkpointing -----------------------------------------------------------------------------------------

    def model_config(self) -> dict:
        """The stage-2 folder config.json `checkpoints.loader` reads."""
        return {"task": self.cfg.task, "stage2": self.stage2.to_dict(), "conditioner": self.conditioner.describe(),
                "vae_folder": str(self.vae_folder)}

    def _resume(self) -> None:
        folder = checkpoint.latest_checkpoint(self.out)
        if folder is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", self.out)
            return
        state = checkpoint.load_checkpoint(folder, map_location=self.device)
        saved, now = state["config"], self.model_config()
        changed = [k for k in ("task", "stage2", "conditioner") if saved.get(k) != now[k]]
        if changed:
            raise checkpoint.CheckpointError(f"{folder} was trained with a different {' and '.join(changed)} "
                                             f"configuration; resume with the flags of that run (see "
                                             f"{self.out / 'config.json'})")
        checkpoint.load_into(self.model, state["model"], folder / checkpoint.MODEL_FILE)
        self.optimizer.load_state_dict(state["optimizer"]["model"])
        if self.ema is not None:
            if state["ema"] is None:
                log.warning("%s has no EMA weights; EMA restarts from the current weights", folder)
                self.ema = EMA(self.model, self.cfg.ema_decay)
            else:
                self.ema.load_state_dict(state["ema"])
        trainer = state["trainer_state"]
        self.step = int(state["info"]["step"])
        self.batches_consumed = int(state["info"]["batches_consumed"])
        self.guard.load_state_dict(trainer["guard"])
        if len(trainer["rng"]) == self.world:
            restore_rng_state(trainer["rng"][self.rank])
        else:
            log.warning("resuming with %d processes from a %d-process checkpoint: random streams restart",
                        self.world, len(trainer["rng"]))
        if distributed.is_main():
            log.info("resumed from %s (step %d)", folder, self.step)

    def save(self) -> Path | None:
        rng = distributed.all_gather_object(capture_rng_state())
        folder = None
        if distributed.is_main():
            folder = checkpoint.save_checkpoint(
                self.out, self.step, model=self.model.state_dict(), config=self.model_config(),
                ema=self.ema.state_dict() if self.ema is not None else None,
                optimizer={"model": self.optimizer.state_dict()},
                trainer_state={"rng": rng, "guard": self.guard.state_dict()},
                info={"batches_consumed": self.batches_consumed, "world_size": self.world,
                      "num_latents": len(self.dataset), "training": self.cfg.to_dict()},
                keep_last=self.cfg.keep_last)
        distributed.barrier()
        return folder

    # -- steps ---------------------------------------------------------------------------------------------------

    def _condition(self, batch: dict):
        """What `Stage2Model.forward` takes: raw captions / images, or the frozen conditioner's context."""
        if self.cfg.task == "t23d":
            condition = drop_captions(batch["caption"], self.stage2.diffusion.condition_dropout)
        else:
            condition = batch["cond_image"].to(self.device, non_blocking=True)
        if self.conditioner.trainable:
            return condition
        with torch.no_grad(), autocast(self.device, self.cfg.bf16):
            return {k: v.float() for k, v in self.conditioner(condition).items()}

    def train_step(self, batch: dict) -> dict:
        latents = to_diffusion_latent(batch["latent"].to(self.device, non_blocking=True),
                                      self.stage2.diffusion.latent_divider)
        condition = self._condition(batch)
        with autocast(self.device, self.cfg.bf16):
            loss = self.train_model(latents, condition).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.model.parameters(), self.cfg.grad_clip)
        if self.guard.check(self.step, loss.detach(), grad_norm):
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach()}

    # -- loop ----------------------------------------------------------------------------------------------------

    def train(self) -> None:
        cfg = self.cfg
        if distributed.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            checkpoint.atomic_write_json(self.out / "config.json",
                                         {"training": cfg.to_dict(), **self.model_config(),
                                          "world_size": self.world, "device": str(self.device)})
        logger = TrainLogger(self.out, cfg.max_steps, self.step, enabled=distributed.is_main(),
                             tensorboard=cfg.tensorboard, progress=cfg.progress)
        self.model.train()
        try:
            with StopSignals() as signals:  # before the loader's workers start: they inherit its handlers
                data = iter(self._loader())
                while self.step < cfg.max_steps:
                    terms = self.train_step(next(data))
                    self.batches_consumed += 1
                    self.step += 1
                    logger.advance()
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                        logger.log(self.step, log_values(terms, self.optimizer, self.guard, self.device))
                    end = end_of_step(self.step, cfg.max_steps, cfg.save_every, self.save, signals, self.device,
                                      logger)
                    if end is not None:  # only a signal: this trainer has no wall-clock budget
                        self.stopped = end
                        break
        finally:
            logger.close()


def train(cfg: DiffusionTrainConfig) -> DiffusionTrainer:
    trainer = DiffusionTrainer(cfg)
    trainer.train()
    return trainer
