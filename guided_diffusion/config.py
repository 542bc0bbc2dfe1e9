"""Stage-2 configuration: denoiser architecture + diffusion process + sampling defaults, and the named presets.

Every config is a plain dataclass that round-trips through JSON (`Stage2Config.to_json` / `from_json`); enums are
stored by value. `build_denoiser` and `build_process` turn a config into modules.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

import torch
from torch import nn

from guided_diffusion.ddpm import DDPM, BetaSchedule, EpsMixing, Prediction, TimestepFormat
from guided_diffusion.dit_common import DIT_SIZES
from guided_diffusion.dit_i23d import I23DDiT
from guided_diffusion.dit_t23d import T23DDiT
from guided_diffusion.flow_matching import FlowMatching, TimeSampling
from guided_diffusion.guidance import I23D_STREAM_DROP, T23D_CAPTION_DROP
from guided_diffusion.samplers import Sampler
from guided_diffusion.unet import UNet

# Diffusion latent = VAE latent / divider; decoding multiplies it back (spec §4). The released Objaverse T23D and
# I23D models use 0.96806; the code never computed it (presumably ≈ the latent std).
RELEASE_LATENT_DIVIDER = 0.96806


def to_diffusion_latent(vae_latent: torch.Tensor, divider: float) -> torch.Tensor:
    return vae_latent / divider


def from_diffusion_latent(latent: torch.Tensor, divider: float) -> torch.Tensor:
    return latent * divider


class DenoiserArch(str, Enum):
    DIT_T23D = "dit_t23d"
    DIT_I23D = "dit_i23d"
    UNET = "unet"


class Process(str, Enum):
    DDPM = "ddpm"
    FLOW_MATCHING = "flow_matching"


@dataclass
class _TriLatentDiTConfig:
    """The keywords both tri-latent DiTs take. Defaults: DiT-L/2 on the release (12, 32, 32) latent."""

    depth: int = 24
    hidden_size: int = 1024
    num_heads: int = 16
    patch_size: int = 2
    mlp_ratio: float = 4.0
    latent_channels: int = 4
    latent_size: int = 32
    planes: int = 3

    @classmethod
    def from_size(cls, size: str, **overrides):
        """A named DiT size ("S", "B", "L", "XL") plus overrides."""
        return cls(**{**dataclasses.asdict(DIT_SIZES[size]), **overrides})


@dataclass
class T23DConfig(_TriLatentDiTConfig):
    """`T23DDiT` keywords. Defaults: the release DiT-L/2 on the (12, 32, 32) latent with CLIP-L text tokens."""

    arch: ClassVar[DenoiserArch] = DenoiserArch.DIT_T23D
    context_dim: int = 768  # text-token width


@dataclass
class I23DConfig(_TriLatentDiTConfig):
    """`I23DDiT` keywords. Defaults: the release DiT-PixArt-L/2 with CLIP ViT-L/14 + DINOv2-L tokens."""

    arch: ClassVar[DenoiserArch] = DenoiserArch.DIT_I23D
    clip_dim: int = 1024  # CLIP patch-token width (first channels of crossattn)
    dino_dim: int = 1024  # DINOv2 patch-token width (the remaining channels)
    pooled_dim: int = 768  # pooled CLIP vector
    keep_released_unused: bool = False  # hold the released never-read tensors (release preset only)


@dataclass
class UNetConfig:
    """`UNet` keywords. Defaults: the released ShapeNet UNet. `attention_downsample` lists the downsample factors
    that get spatial transformers: the release flag "4,2,1" at image size 32 means factors {8, 16, 32}, of which
    only 8 exists with four levels."""

    arch: ClassVar[DenoiserArch] = DenoiserArch.UNET
    in_channels: int = 12
    out_channels: int = 12
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_downsample: tuple[int, ...] = (8,)
    num_heads: int = 8
    transformer_depth: int = 1
    context_dim: int = 768
    latent_size: int = 32
    dropout: float = 0.0
    mixing_logit_init: float = -3.0  # the training scripts' value (the sampling scripts pass -6; weights override)


DenoiserConfig = T23DConfig | I23DConfig | UNetConfig
_DENOISER_CONFIGS: dict[DenoiserArch, type] = {c.arch: c for c in (T23DConfig, I23DConfig, UNetConfig)}
_DENOISERS: dict[DenoiserArch, type[nn.Module]] = {
    DenoiserArch.DIT_T23D: T23DDiT, DenoiserArch.DIT_I23D: I23DDiT, DenoiserArch.UNET: UNet}


@dataclass
class DiffusionConfig:
    """Process, training and sampling settings. DDPM uses beta_schedule … eps_mixing; flow matching uses
    time_sampling. `condition_dropout` is the CFG training drop rate: per caption for T23D, per stream for I23D."""

    process: Process = Process.DDPM
    beta_schedule: BetaSchedule = BetaSchedule.SCALED_LINEAR
    num_timesteps: int = 1000
    prediction: Prediction = Prediction.EPS
    timestep_format: TimestepFormat = TimestepFormat.INDEX
    eps_mixing: EpsMixing = EpsMixing.NONE
    time_sampling: TimeSampling = TimeSampling.LOGNORMAL
    sampler: Sampler = Sampler.EULER_EDM
    num_steps: int = 250
    guidance_scale: float = 6.5
    condition_dropout: float = T23D_CAPTION_DROP
    latent_divider: float = RELEASE_LATENT_DIVIDER


def _from_dict(cls: type, data: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kind, value = hints[f.name], data[f.name]
            if isinstance(kind, type) and issubclass(kind, Enum):
                value = kind(value)
            elif isinstance(value, list):  # JSON has no tuples
                value = tuple(value)
            kwargs[f.name] = value
    return cls(**kwargs)


@dataclass
class Stage2Config:
    name: str
    denoiser: DenoiserConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "denoiser": {"arch": self.denoiser.arch.value, **dataclasses.asdict(self.denoiser)},
            "diffusion": {k: v.value if isinstance(v, Enum) else v
                          for k, v in dataclasses.asdict(self.diffusion).items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Stage2Config:
        denoiser = dict(data["denoiser"])
        arch = DenoiserArch(denoiser.pop("arch"))
        return cls(name=data["name"], denoiser=_from_dict(_DENOISER_CONFIGS[arch], denoiser),
                   diffusion=_from_dict(DiffusionConfig, data["diffusion"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Stage2Config:
        return cls.from_dict(json.loads(text))


def build_denoiser(cfg: DenoiserConfig) -> nn.Module:
    return _DENOISERS[cfg.arch](**dataclasses.asdict(cfg))


def build_process(cfg: DiffusionConfig) -> DDPM | FlowMatching:
    if cfg.process is Process.DDPM:
        return DDPM(cfg.beta_schedule, cfg.num_timesteps, cfg.prediction, cfg.timestep_format, cfg.eps_mixing)
    return FlowMatching(cfg.time_sampling)


def _t23d_diffusion(**overrides) -> DiffusionConfig:
    """The released T23D process: ε-prediction DDPM, scaled-linear β, 250 Euler-EDM steps, CFG 6.5."""
    return DiffusionConfig(**overrides)


def _i23d_diffusion(**overrides) -> DiffusionConfig:
    """The released I23D process: linear-path flow matching, lognormal t, dopri5 over 250 output times, CFG 4."""
    base = dict(process=Process.FLOW_MATCHING, sampler=Sampler.DOPRI5, num_steps=250, guidance_scale=4.0,
                condition_dropout=I23D_STREAM_DROP)
    return DiffusionConfig(**{**base, **overrides})


def _shapenet_diffusion(**overrides) -> DiffusionConfig:
    """The released ShapeNet process as sampled: linear β, v-prediction turned into LSGM-mixed ε, the network fed
    index/1000, DDIM 250, no guidance, CLIP-embedding dropout 0.15 in training, divider 1."""
    base = dict(beta_schedule=BetaSchedule.LINEAR, prediction=Prediction.V, timestep_format=TimestepFormat.FRACTION,
                eps_mixing=EpsMixing.LEARNED, sampler=Sampler.DDIM, num_steps=250, guidance_scale=1.0,
                condition_dropout=0.15, latent_divider=1.0)
    return DiffusionConfig(**{**base, **overrides})


# Tiny: ≈1–3 M parameters on a (12, 16, 16) latent, for CPU tests. Small: see below. S: DiT-S/2 (≈40 M) on the
# full latent, minutes of GPU training. All use divider 1: set it to the std of your own VAE's latents
# (scripts/extract_latents.py reports it).
PRESETS: dict[str, Callable[[], Stage2Config]] = {
    "t23d": lambda: Stage2Config("t23d", T23DConfig.from_size("L"), _t23d_diffusion()),
    "i23d": lambda: Stage2Config("i23d", I23DConfig.from_size("L", keep_released_unused=True), _i23d_diffusion()),
    # The DiT-B/2 T23D of the release training script (objaverse-dit.sh), divider 0.90.
    "t23d-b": lambda: Stage2Config("t23d-b", T23DConfig.from_size("B"), _t23d_diffusion(latent_divider=0.90)),
    "shapenet-unet": lambda: Stage2Config("shapenet-unet", UNetConfig(), _shapenet_diffusion()),
    # The embedded default model's denoisers (with the tiny offline conditioners, 128-wide), sized so that VAE +
    # both denoisers + conditioners ship in git within 24 MiB at fp16. Samplers default to the fast ones.
    "t23d-small": lambda: Stage2Config(
        "t23d-small", T23DConfig(depth=5, hidden_size=160, num_heads=4, context_dim=128),
        # guidance 3, not the release's 6.5: on the embedded model 6.5 drives latents to 3× their std (docs/RESULTS.md)
        _t23d_diffusion(sampler=Sampler.DPM_SOLVER_PP, num_steps=25, guidance_scale=3.0, latent_divider=1.0)),
    "i23d-small": lambda: Stage2Config(
        "i23d-small",
        I23DConfig(depth=5, hidden_size=128, num_heads=4, clip_dim=64, dino_dim=64, pooled_dim=128),
        _i23d_diffusion(sampler=Sampler.HEUN, num_steps=25, latent_divider=1.0)),
    "t23d-s": lambda: Stage2Config("t23d-s", T23DConfig.from_size("S"), _t23d_diffusion(latent_divider=1.0)),
    "i23d-s": lambda: Stage2Config("i23d-s", I23DConfig.from_size("S"), _i23d_diffusion(latent_divider=1.0)),
    "t23d-tiny": lambda: Stage2Config(
        "t23d-tiny",
        T23DConfig(depth=6, hidden_size=128, num_heads=4, latent_size=16, context_dim=64),
        _t23d_diffusion(num_steps=50, latent_divider=1.0)),
    "i23d-tiny": lambda: Stage2Config(
        "i23d-tiny",
        I23DConfig(depth=6, hidden_size=128, num_heads=4, latent_size=16, clip_dim=64, dino_dim=64, pooled_dim=64),
        _i23d_diffusion(num_steps=50, latent_divider=1.0)),
}


def preset(name: str) -> Stage2Config:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown stage-2 preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
