"""Stage-1 VAE training loop (spec §2.9): patch rendering, the VAE objective, alternating PatchGAN steps.

One step = a generator update on one batch, then (when the adversarial term is on) a discriminator update on the
next, fresh batch. Per step, each target view is rendered as one P×P patch at render resolution R: with
probability `patch_fg_prob` the patch overlaps that view's foreground bbox, otherwise it lies anywhere
(`nsr.rendering.patches`); the ground truth is cropped identically.

Runs as one process or under torchrun (DDP; gloo on CPU, NCCL on GPU), and resumes exactly: model, optimisers,
EMA, discriminator, RNG states (every rank's) and the data position are all restored, so the loss trajectory
after a resume equals an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from datasets.collate import collate_samples
from nsr.config import vae_config
from nsr.encoding import default_encoder_views, encoder_resolution
from nsr.losses import PairedDiscriminator, VAELoss, VAELossConfig
from nsr.rendering.patches import PatchLayout, sample_patch_layout
from nsr.vae import TriplaneVAE
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


@dataclass
class VAETrainConfig:
    """Every setting of a VAE training run; `--out/config.json` stores it in full."""

    preset: str = "tiny"
    data: str = ""
    out: str = ""
    max_steps: int = 1000
    max_minutes: float = 0.0  # > 0: stop (with a checkpoint) once this much wall-clock time has passed; 0: no limit
    batch_size: int = 1  # objects per rank per step
    resume: bool = False
    init_from: str = ""  # a VAE model folder or run directory whose weights start a fresh run (new optimiser)
    vae_overrides: dict = field(default_factory=dict)  # nested VAEConfig overrides on top of the preset
    # learning rates / weight decay per module group (spec §2.9 "Optimiser")
    lr_encoder: float = 1.5e-4
    lr_decoder: float = 7.5e-5  # the decoder transformer
    lr_conv: float = 1.5e-4  # latent embedding, conv upsampler and renderer MLP
    lr_disc: float | None = None  # None: lr_decoder (the release's `--lr`)
    wd_encoder: float = 1e-3
    wd_decoder: float = 1e-3
    wd_conv: float = 1e-2
    grad_clip: float = 5.0
    ema_decay: float = 0.0  # 0: no EMA (the released VAE disc trainer saved none)
    # data (`datasets.multiview.MultiViewConfig`)
    num_encoder_views: int | None = None  # None: the preset encoder's view count
    random_encoder_views: bool = False  # False: the rig's encoder views (as latent extraction); True: random ones
    num_target_views: int = 4
    encoder_resolution: int | None = None  # None: what the preset's encoder expects
    # rendering
    render_resolution: int = 128  # R: targets are loaded at R; patches are cut from R×R images
    patch_size: int = 0  # 0: render whole images
    patch_fg_prob: float = 0.875
    sample_posterior: bool = True
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    # bookkeeping
    save_interval: int = 10000
    keep_last: int = 3
    log_interval: int = 50
    num_workers: int = 4
    data_on_device: bool = False  # fill a `DeviceViewBank` once (procedural objects or the store) and batch on it
    device: str = "auto"
    seed: int = 0
    bf16: bool = False  # bf16 autocast on GPU; the release trained in fp32
    tf32: bool = False  # TF32 for the float32 matrix work left outside autocast (the renderer's field MLP)
    triplane_lookup: str = "auto"  # auto (the fused Triton kernel on CUDA), fused, or grid_sample (the release's op)
    skip_bad_samples: bool = False
    max_nonfinite_steps: int = 5
    tensorboard: bool = True
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VAETrainConfig:
        d = dict(d)
        loss = VAELossConfig(**d.pop("loss", {}))
        return cls(loss=loss, **d)

    @property
    def disc_lr(self) -> float:
        return self.lr_decoder if self.lr_disc is None else self.lr_disc


# Settings a `--resume` may change: how long, how often to log / save, where and how fast to run. Every other
# setting must match the saved run, or the old weights would silently continue under a different recipe.
RESUMABLE_CHANGES = ("out", "resume", "max_steps", "max_minutes", "init_from", "save_interval", "keep_last",
                     "log_interval", "num_workers", "device", "tf32", "triplane_lookup", "skip_bad_samples",
                     "max_nonfinite_steps", "tensorboard", "progress", "lpips_backbone")

# --triplane-lookup → `TriplaneRenderer.fused_lookup` (None: the fused Triton kernel where it runs)
TRIPLANE_LOOKUPS = {"auto": None, "fused": True, "grid_sample": False}

# Training defaults per VAE preset; the CLI and shell launchers override single fields.
TRAIN_PRESETS: dict[str, dict] = {
    # the XL recipe (`ln3diff-vae-175K_debug.sh`); the release's README says 192², the script 256 / 48
    "objaverse": dict(
        lr_encoder=1.5e-4, lr_decoder=7.5e-5, lr_conv=1.5e-4, render_resolution=256, patch_size=48,
        num_target_views=12,
        loss=dict(l2_weight=0.0, l1_weight=1.0, lpips_weight=0.8, depth_weight=0.1, alpha_weight=1.0,
                  disc_weight=0.08)),
    # `mv-75k-addDepth_disc.sh`
    "objaverse-b": dict(
        lr_encoder=2e-4, lr_decoder=1e-4, lr_conv=2e-4, render_resolution=128, patch_size=64, num_target_views=8,
        loss=dict(l2_weight=1.0, l1_weight=0.0, lpips_weight=2.0, depth_weight=0.5, alpha_weight=1.0,
                  disc_weight=0.5)),
    # ShapeNet `{car,chair,plane}_vae.sh`: no discriminator, no depth
    "shapenet": dict(
        lr_encoder=1e-5, lr_decoder=1e-5, lr_conv=5e-4, render_resolution=128, patch_size=64, num_target_views=3,
        loss=dict(l2_weight=1.0, l1_weight=0.0, lpips_weight=2.0, depth_weight=0.0, alpha_weight=1.0,
                  disc_weight=0.0)),
    "ffhq": dict(
        lr_encoder=1e-5, lr_decoder=1e-5, lr_conv=5e-4, render_resolution=128, patch_size=64,
        loss=dict(l2_weight=1.0, l1_weight=0.0, lpips_weight=2.0, depth_weight=0.0, alpha_weight=0.0,
                  disc_weight=0.0)),
    # the embedded model's recipe on procedural data (docs/TRAINING.md): small nets learn fast, the KL stays
    # negligible for the first few thousand steps; no LPIPS (its backbone is a download)
    "small": dict(
        lr_encoder=4e-4, lr_decoder=3e-4, lr_conv=6e-4, render_resolution=128, patch_size=64, batch_size=16,
        bf16=True, save_interval=250, keep_last=2,
        loss=dict(l2_weight=1.0, l1_weight=0.0, lpips_weight=0.0, depth_weight=0.5, alpha_weight=1.0,
                  disc_weight=0.0)),
    # CPU overfit / smoke runs: whole 32² images, no LPIPS (no backbone offline; slow on CPU), no discriminator
    "tiny": dict(
        lr_encoder=1e-3, lr_decoder=5e-4, lr_conv=2e-3, render_resolution=32, patch_size=0, log_interval=10,
        num_workers=0,
        loss=dict(l2_weight=1.0, l1_weight=0.0, lpips_weight=0.0, depth_weight=0.5, alpha_weight=1.0,
                  disc_weight=0.0)),
}


def preset_train_config(preset: str, **overrides) -> VAETrainConfig:
    """The preset's training defaults with `overrides` (loss overrides as a nested `loss` dict) on top."""
    if preset not in TRAIN_PRESETS:
        raise ValueError(f"no training defaults for VAE preset {preset!r}; choose one of {sorted(TRAIN_PRESETS)}")
    base = VAETrainConfig(preset=preset).to_dict()
    recipe = TRAIN_PRESETS[preset]
    for source in (recipe, overrides):
        for k, v in source.items():
            if k == "loss":
                base["loss"].update(v)
            else:
                base[k] = v
    return VAETrainConfig.from_dict(base)


# ---------------------------------------------------------------------------------------------------------------
# Model wrapper and optimiser groups


class VAETrainingForward(nn.Module):
    """encode → latent → decode → render as one `forward`, so DistributedDataParallel can wrap it."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, enc_input: torch.Tensor, cameras: torch.Tensor, resolution: int, patch: PatchLayout | None,
                sample_posterior: bool) -> tuple[dict, torch.Tensor]:
        posterior = self.vae.encode(enc_input)
        triplane = self.vae.decode(posterior.latent(sample=sample_posterior))
        return self.vae.render(triplane, cameras, resolution, patch=patch), posterior.kl()


def vae_param_groups(vae: nn.Module, cfg: VAETrainConfig) -> list[dict]:
    """Encoder / decoder transformer / everything else (latent embedding, conv upsampler, renderer MLP)."""
    return param_groups_by_prefix(vae, [
        ParamGroupSpec("encoder", ("encoder.",), cfg.lr_encoder, cfg.wd_encoder),
        ParamGroupSpec("decoder_transformer", ("decoder.transformer.",), cfg.lr_decoder, cfg.wd_decoder),
        ParamGroupSpec("conv_and_renderer", ("",), cfg.lr_conv, cfg.wd_conv),
    ])


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from their MSE."""
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))


# ---------------------------------------------------------------------------------------------------------------
# Trainer


class VAETrainer:
    def __init__(self, cfg: VAETrainConfig):
        if not cfg.out:
            raise ValueError("no output directory; pass --out DIR")
        if not cfg.data:
            raise ValueError("no dataset; pass --data DIR (see scripts/make_dataset.py)")
        if cfg.triplane_lookup not in TRIPLANE_LOOKUPS:
            raise ValueError(f"--triplane-lookup {cfg.triplane_lookup!r}: choose {', '.join(TRIPLANE_LOOKUPS)}")
        # before anything is built: a refused run must cost nothing and leave --out as it was
        check_run_folder(cfg.out, cfg.resume, cfg.to_dict(), RESUMABLE_CHANGES, flatten=("loss",))
        self.cfg = cfg
        self.device = distributed.init_distributed(cfg.device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.out = Path(cfg.out)
        seed_everything(derive_seed(cfg.seed, "rank", self.rank))

        self.vae_config = vae_config(cfg.preset, cfg.vae_overrides)
        self.dataset = self._build_dataset()
        self.vae = TriplaneVAE(self.vae_config).to(self.device)
        self.loss = VAELoss(cfg.loss).to(self.device)
        self._check_sizes()
        if cfg.tf32 and self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.vae.renderer.fused_lookup = TRIPLANE_LOOKUPS[cfg.triplane_lookup]
        self.forward_module = VAETrainingForward(self.vae)
        self.optimizer = build_adamw(vae_param_groups(self.vae, cfg), self.device)
        self.disc_optimizer = None
        if self.loss.discriminator is not None:
            self.disc_optimizer = build_adamw(self.loss.discriminator.parameters(), self.device, betas=(0.0, 0.999),
                                              lr=cfg.disc_lr, weight_decay=0.01)
        self.ema = EMA(self.vae, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.guard = NonFiniteGuard(cfg.max_nonfinite_steps)
        self.patch_generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "patches", self.rank))
        self.step = 0
        self.batches_consumed = 0
        self.resumed_from: Path | None = None
        self.stopped: Stopped | None = None  # set when a signal ended `train` early
        if cfg.resume:
            self._resume()
        if cfg.init_from and self.resumed_from is None:
            self._init_weights(cfg.init_from)
        # the DDP wrappers (or the plain modules in one process): the generator and discriminator updates go
        # through these; `forward_module` itself renders the discriminator's fakes without gradient syncing
        self.train_forward, self.paired_disc = self._wrap_distributed()

    # -- set-up -------------------------------------------------------------------------------------------------

    def _check_sizes(self) -> None:
        p = self.cfg.patch_size or self.cfg.render_resolution
        if self.loss.lpips is not None and p < 32:
            raise ValueError(f"--patch-size {p} is too small for LPIPS (needs ≥ 32); raise it or pass "
                             f"--lpips-weight 0")
        if self.loss.discriminator is not None and p < 24:
            raise ValueError(f"--patch-size {p} is too small for the 3-layer PatchGAN (needs ≥ 24); raise it or "
                             f"pass --disc-weight 0")

    def _build_dataset(self):
        """The data source: a `MultiViewDataset` (CPU workers) or, with `data_on_device`, a `DeviceViewBank`."""
        from datasets.device_bank import DeviceViewBank, bank_summary
        from datasets.multiview import MultiViewConfig, MultiViewDataset
        from datasets.procedural.pipeline import GenerationConfig, parse_procedural_source
        from datasets.procedural.store import ProceduralStore
        from datasets.rig import CHUNK_VIEWS, ENCODER_VIEWS
        from datasets.stores import open_store

        cfg = self.cfg
        views = cfg.num_encoder_views or len(default_encoder_views(self.vae_config))
        if views > len(ENCODER_VIEWS) and not cfg.random_encoder_views:
            raise ValueError(f"{views} fixed encoder views requested but the rig names {len(ENCODER_VIEWS)}; pass "
                             f"--random-encoder-views or fewer --num-encoder-views")
        self.data_config = MultiViewConfig(
            encoder_views=ENCODER_VIEWS[:views], random_encoder_views=cfg.random_encoder_views,
            encoder_resolution=cfg.encoder_resolution or encoder_resolution(self.vae_config),
            render_resolution=cfg.render_resolution, num_target_views=cfg.num_target_views, seed=cfg.seed,
            skip_bad=cfg.skip_bad_samples)
        if cfg.data_on_device and cfg.random_encoder_views:
            raise ValueError("--data-on-device draws the rig's fixed encoder views; drop --random-encoder-views")
        procedural = parse_procedural_source(cfg.data)
        resolution = max(self.data_config.encoder_resolution, cfg.render_resolution)
        if cfg.data_on_device:
            progress = cfg.progress and distributed.is_main()
            if procedural is not None:  # rendered straight into device memory, no store in between
                bank = DeviceViewBank.from_procedural(*procedural, resolution, CHUNK_VIEWS, self.device,
                                                      progress=progress)
            else:
                bank = DeviceViewBank.from_store(open_store(cfg.data, skip_bad=cfg.skip_bad_samples), resolution,
                                                 self.device, progress=progress)
            log.info("data on the device: %s", bank_summary(bank))
            return bank
        if procedural is not None:
            num, seed = procedural
            store = ProceduralStore(num, GenerationConfig(seed=seed, resolution=resolution, view_ids=CHUNK_VIEWS))
        else:
            store = open_store(cfg.data, skip_bad=cfg.skip_bad_samples)
        return MultiViewDataset(store, self.data_config)

    def _wrap_distributed(self):
        paired = PairedDiscriminator(self.loss.discriminator) if self.loss.discriminator is not None else None
        if self.world == 1:
            return self.forward_module, paired
        ids = [self.device.index] if self.device.type == "cuda" else None
        # static graph: the used-parameter set never changes, so parameters unused by a preset (e.g. kept-for-
        # loading weights) need no find_unused_parameters scan
        forward = DistributedDataParallel(self.forward_module, device_ids=ids, static_graph=True)
        if paired is not None:
            paired = DistributedDataParallel(paired, device_ids=ids)
        return forward, paired

    def _batches(self):
        """This rank's endless, exactly resumable batches, starting after `batches_consumed`."""
        if self.cfg.data_on_device:
            return self.dataset.batches(self.cfg.batch_size, self.cfg.seed, self.data_config,
                                        start_batch=self.batches_consumed)
        return iter(resumable_loader(self.dataset, self.cfg.batch_size, self.cfg.seed, collate_fn=collate_samples,
                                     num_workers=self.cfg.num_workers, device=self.device,
                                     start_batch=self.batches_consumed))

    # -- checkpointing -----------------------------------------------------------------------------------------

    def _resume(self) -> None:
        folder = checkpoint.latest_checkpoint(self.out)
        if folder is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", self.out)
            return
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves everything else onto the parameters
        state = checkpoint.load_checkpoint(folder, map_location="cpu")
        checkpoint.load_into(self.vae, state["model"], folder / checkpoint.MODEL_FILE)
        self.optimizer.load_state_dict(state["optimizer"]["vae"])
        if self.ema is not None:
            if state["ema"] is None:
                log.warning("%s has no EMA weights; EMA restarts from the current weights", folder)
            else:
                self.ema.load_state_dict(state["ema"])
        if self.loss.discriminator is not None:
            disc = state["extra_weights"].get("discriminator")
            if disc is None:
                log.warning("%s has no discriminator; it starts from scratch", folder)
            else:
                checkpoint.load_into(self.loss.discriminator, disc, folder / "discriminator.safetensors")
                self.disc_optimizer.load_state_dict(state["optimizer"]["disc"])
        trainer = state["trainer_state"]
        self.step = int(state["info"]["step"])
        self.batches_consumed = int(state["info"]["batches_consumed"])
        self.guard.load_state_dict(trainer["guard"])
        if len(trainer["rng"]) == self.world:
            restore_rng_state(trainer["rng"][self.rank])
            self.patch_generator.set_state(trainer["patch_rng"][self.rank])
        else:
            log.warning("resuming with %d processes from a %d-process checkpoint: random streams restart",
                        self.world, len(trainer["rng"]))
        self.resumed_from = folder

    def _init_weights(self, path: str) -> None:
        """Start from another run's (or an exported model's) VAE weights; they must fit this preset exactly."""
        folder = checkpoint.resolve_model_folder(path)
        state = checkpoint.load_weights(folder / checkpoint.MODEL_FILE)
        checkpoint.load_into(self.vae, {k: v.float() for k, v in state.items()}, folder / checkpoint.MODEL_FILE)
        log.info("initialised the VAE from %s", folder)

    def save(self) -> Path | None:
        rng = distributed.all_gather_object(capture_rng_state())
        patch_rng = distributed.all_gather_object(self.patch_generator.get_state())
        folder = None
        if distributed.is_main():
            optimizers = {"vae": self.optimizer.state_dict()}
            extra = {}
            if self.loss.discriminator is not None:
                optimizers["disc"] = self.disc_optimizer.state_dict()
                extra["discriminator"] = self.loss.discriminator.state_dict()
            folder = checkpoint.save_checkpoint(
                self.out, self.step, model=self.vae.state_dict(), config=json.loads(self.vae_config.to_json()),
                ema=self.ema.state_dict() if self.ema is not None else None, optimizer=optimizers,
                trainer_state={"rng": rng, "patch_rng": patch_rng, "guard": self.guard.state_dict()},
                info={"batches_consumed": self.batches_consumed, "world_size": self.world,
                      "training": self.cfg.to_dict()},
                extra_weights=extra, keep_last=self.cfg.keep_last)
        distributed.barrier()
        return folder

    # -- steps ---------------------------------------------------------------------------------------------------

    def _targets_and_patch(self, batch: dict) -> tuple[dict, PatchLayout | None]:
        """Ground truth flattened to `(B·T, C, P, P)` and the patch layout to render (None = whole images)."""
        keys = {"rgb": "target_rgb", "depth": "target_depth", "alpha": "target_alpha"}
        p = self.cfg.patch_size
        if not p or p >= self.cfg.render_resolution:
            return {k: batch[src].flatten(0, 1).to(self.device) for k, src in keys.items()}, None
        b, t = batch["target_rgb"].shape[:2]
        # the boxes on the CPU in one copy: the layout reads them element by element
        layout = sample_patch_layout(b, t, self.cfg.render_resolution, p, batch["target_bbox"].cpu(),
                                     self.cfg.patch_fg_prob, self.patch_generator)
        targets = {k: layout.crop(batch[src]).flatten(0, 1).to(self.device) for k, src in keys.items()}
        return targets, PatchLayout(layout.top.to(self.device), layout.left.to(self.device), p)

    def _render(self, module: nn.Module, batch: dict, patch: PatchLayout | None) -> tuple[dict, torch.Tensor]:
        enc_input = batch["enc_input"].to(self.device, non_blocking=True)
        cameras = batch["target_cameras"].to(self.device, non_blocking=True)
        with autocast(self.device, self.cfg.bf16):
            out, kl = module(enc_input, cameras, self.cfg.render_resolution, patch, self.cfg.sample_posterior)
        pred = {k: out[k].flatten(0, 1).float() for k in ("rgb", "depth", "alpha")}
        return pred, kl.float()

    def generator_step(self, batch: dict) -> dict:
        targets, patch = self._targets_and_patch(batch)
        pred, kl = self._render(self.train_forward, batch, patch)
        with autocast(self.device, self.cfg.bf16):
            loss, terms = self.loss(pred, targets, kl, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.vae.parameters(), self.cfg.grad_clip)
        if self.guard.check(self.step, loss.detach(), grad_norm):
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.vae)
        terms["grad_norm"] = grad_norm.detach()
        terms["psnr"] = psnr_from_mse(F.mse_loss(pred["rgb"].detach(), targets["rgb"]))
        return terms

    def discriminator_step(self, batch: dict) -> dict:
        targets, patch = self._targets_and_patch(batch)
        with torch.no_grad():
            pred, _ = self._render(self.forward_module, batch, patch)
        with autocast(self.device, self.cfg.bf16):
            loss, terms = self.loss.discriminator_loss(pred["rgb"], targets["rgb"], self.paired_disc)
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.loss.discriminator.parameters(), self.cfg.grad_clip)
        if self.guard.check(self.step, loss.detach(), grad_norm):
            self.disc_optimizer.step()
        return terms

    # -- loop ----------------------------------------------------------------------------------------------------

    def train(self) -> None:
        cfg = self.cfg
        if distributed.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            checkpoint.atomic_write_json(self.out / "config.json",
                                         {"training": cfg.to_dict(), "vae": self.vae_config.to_dict(),
                                          "world_size": self.world, "device": str(self.device)})
        logger = TrainLogger(self.out, cfg.max_steps, self.step, enabled=distributed.is_main(),
                             tensorboard=cfg.tensorboard, progress=cfg.progress)
        if self.resumed_from is not None:
            logger.event(f"resumed from {self.resumed_from} at step {self.step}")
        self.forward_module.train()
        self.loss.train()
        started = time.monotonic()
        try:
            with StopSignals() as signals:  # before the loader's workers start: they inherit its handlers
                data = self._batches()
                while self.step < cfg.max_steps:
                    terms = self.generator_step(next(data))
                    self.batches_consumed += 1
                    if self.loss.adversarial_active(self.step):
                        terms.update(self.discriminator_step(next(data)))
                        self.batches_consumed += 1
                    self.step += 1
                    logger.advance()
                    if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                        logger.log(self.step, log_values(terms, self.optimizer, self.guard, self.device))
                    end = end_of_step(self.step, cfg.max_steps, cfg.save_interval, self.save, signals, self.device,
                                      logger, started, cfg.max_minutes)
                    if end is not None:
                        self.stopped = end if isinstance(end, Stopped) else None
                        break
        finally:
            logger.close()


def train(cfg: VAETrainConfig) -> VAETrainer:
    trainer = VAETrainer(cfg)
    trainer.train()
    return trainer
