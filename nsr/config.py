"""Stage-1 VAE configuration: dataclasses, the preset registry, and JSON round-tripping.

A checkpoint folder stores `{"preset": name, "overrides": {...}}` (see `VAEConfig.to_json`); `VAEConfig.from_json`
rebuilds exactly the same architecture. Overrides are nested dicts over the preset's fields, e.g.
`{"decoder": {"depth": 4}, "renderer": {"depth_samples": 32}}`.

Release presets (`objaverse`, `objaverse-b`, `shapenet`, `ffhq`) reproduce the released networks' shapes; the small
ones (`tiny`, `small`) use the same classes at reduced widths and resolutions.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field


@dataclass
class ConvEncoderConfig:
    """SD-style multi-view conv encoder (spec §2.3) or the older 4-view fusion encoder (§2.7)."""

    kind: str = "conv"
    in_channels: int = 10
    num_views: int = 6  # used by view_fusion "conv" only (its fusion conv reads exactly this many views)
    view_fusion: str = "mean"  # "mean" over views, or "conv": concatenate the views' channels and fuse with a 3×3 conv
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # downsamples the input by 2^(len − 1)
    num_res_blocks: int = 1
    attention_heads: int = 8
    attention_head_dim: int = 64


@dataclass
class ViTEncoderConfig:
    """DINOv2-style ViT image encoder with U-ViT long skips (ShapeNet / FFHQ, spec §3)."""

    kind: str = "vit"
    in_channels: int = 3
    image_size: int = 224
    patch_size: int = 14
    pos_grid: int = 37  # side of the learned position table (DINOv2 was trained at 518 = 37·14), resized on use
    width: int = 384
    depth: int = 12
    num_heads: int = 6


@dataclass
class DiTDecoderConfig:
    """Latent patch-embed → DiT whose input is a learned table and whose condition is the latent (spec §2.5)."""

    kind: str = "dit"
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 2
    upsampler_channels: int = 32
    upsampler_mult: tuple[int, ...] = (1, 2, 2, 4)  # upsamples tokens by 2^(len − 1)
    upsampler_res_blocks: int = 1


@dataclass
class ViTDecoderConfig:
    """Latent patch-embed → DINOv2-style ViT with 3D-aware attention → linear unpatchify → roll-out conv upsampler
    (ShapeNet / FFHQ, spec §3)."""

    kind: str = "vit"
    width: int = 768
    depth: int = 12  # ViT blocks, grouped in pairs (in-plane block, 3D-aware block)
    num_heads: int = 12
    patch_size: int = 2  # latent patch-embed kernel/stride
    latent_embed: str = "grouped_conv"  # or "linear": one Linear(C → width) per latent pixel, shared by the planes
    unpatchify_size: int = 4
    unpatchify_channels: int = 128  # per plane, after `unpatchify_proj`
    triplane_resolution: int = 256
    rollout_first_conv: bool = False  # FFHQ: the first upsampler conv is a roll-out conv too
    fusion_after_pair: bool = False  # FFHQ: 3D-aware attention as its own residual block after each plain ViT pair


@dataclass
class RendererConfig:
    """EG3D-style triplane volume renderer (spec §2.6)."""

    depth_samples: int = 64
    importance_samples: int = 64
    ray_start: float | None = None  # None: 'auto', the ray–box intersection with the box of side box_warp
    ray_end: float | None = None
    box_warp: float = 0.9
    sample_bbox: float | None = 0.45  # samples outside [-b, b]³ get zero colour and no density; None: no filtering
    white_background: bool = True
    field_hidden: int = 64
    field_features: int = 3  # colour channels the MLP predicts (ShapeNet: 32 features, the first three are RGB)


@dataclass
class VAEConfig:
    preset: str = "objaverse"
    latent_channels: int = 4  # per plane; the diffusion latent has 3 × latent_channels channels
    latent_size: int = 32
    plane_channels: int = 32
    encoder: ConvEncoderConfig | ViTEncoderConfig = field(default_factory=ConvEncoderConfig)
    decoder: DiTDecoderConfig | ViTDecoderConfig = field(default_factory=DiTDecoderConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape of one diffusion latent, `(3·latent_channels, latent_size, latent_size)`."""
        return (3 * self.latent_channels, self.latent_size, self.latent_size)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown VAE config keys {sorted(unknown)}")
        enc = d.pop("encoder", {})
        dec = d.pop("decoder", {})
        ren = d.pop("renderer", {})
        return cls(encoder=_build(_ENCODERS, enc, "encoder"), decoder=_build(_DECODERS, dec, "decoder"),
                   renderer=_build({None: RendererConfig}, ren, "renderer"), **d)

    def overrides(self) -> dict:
        """The nested fields that differ from this config's preset."""
        return _diff(preset_config(self.preset).to_dict(), self.to_dict())

    def to_json(self) -> str:
        """`{"preset": ..., "overrides": ...}`: the preset name plus what differs from it."""
        return json.dumps({"preset": self.preset, "overrides": self.overrides()}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VAEConfig:
        """Inverse of `to_json`; also accepts a full `to_dict()` dump."""
        d = json.loads(text)
        if set(d) <= {"preset", "overrides"}:
            return vae_config(d["preset"], d.get("overrides"))
        return cls.from_dict(d)


_ENCODERS = {"conv": ConvEncoderConfig, "vit": ViTEncoderConfig}
_DECODERS = {"dit": DiTDecoderConfig, "vit": ViTDecoderConfig}


def _build(kinds: dict, d: dict, what: str):
    kind = d.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown {what} kind {kind!r}; expected one of {sorted(k for k in kinds if k)}")
    cls = kinds[kind]
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {what} config keys {sorted(unknown)} for kind {kind!r}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _plain(x):
    """Tuples → lists so that dicts compare equal after a JSON round trip."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _diff(base: dict, new: dict) -> dict:
    out = {}
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and v.get("kind") == base[k].get("kind"):
            sub = _diff(base[k], v)
            if sub:
                out[k] = sub
        elif base.get(k) != v:
            out[k] = v
    return out


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("kind", out[k].get("kind")) == out[k].get(
                "kind"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _objaverse() -> VAEConfig:
    return VAEConfig(preset="objaverse")


def _objaverse_b() -> VAEConfig:
    # The older release (`model_rec1680000.pt`, spec §2.7): 4 views fused by a conv, DiT2-B/2.
    return VAEConfig(preset="objaverse-b",
                     encoder=ConvEncoderConfig(num_views=4, view_fusion="conv"),
                     decoder=DiTDecoderConfig(width=768, depth=12, num_heads=12))


def _shapenet() -> VAEConfig:
    return VAEConfig(preset="shapenet", encoder=ViTEncoderConfig(), decoder=ViTDecoderConfig(),
                     renderer=RendererConfig(ray_start=0.6, ray_end=1.8, box_warp=1.2, sample_bbox=None,
                                             field_features=32))


def _ffhq() -> VAEConfig:
    return VAEConfig(preset="ffhq", latent_size=16, encoder=ViTEncoderConfig(),
                     decoder=ViTDecoderConfig(patch_size=1, latent_embed="linear", rollout_first_conv=True,
                                              fusion_after_pair=True),
                     renderer=RendererConfig(depth_samples=48, importance_samples=48, ray_start=2.25, ray_end=3.3,
                                             box_warp=1.0, sample_bbox=None, field_features=32))


def _tiny() -> VAEConfig:
    # CPU tests and smoke training: 64² encoder input → 16² latent → 8² tokens → 32² triplane.
    return VAEConfig(preset="tiny", latent_size=16,
                     encoder=ConvEncoderConfig(num_views=2, base_channels=32, channel_mult=(1, 2, 2),
                                               attention_heads=2, attention_head_dim=32),
                     decoder=DiTDecoderConfig(width=128, depth=4, num_heads=4, upsampler_channels=32,
                                              upsampler_mult=(1, 1, 2)),
                     renderer=RendererConfig(depth_samples=24, importance_samples=24))


def _small() -> VAEConfig:
    # The embedded default model (checkpoints/procedural/, shipped in git within a 24 MiB budget together with both
    # denoisers): 128² input → 32² latent → 16² tokens → 64² triplane, ≈5 M parameters.
    return VAEConfig(preset="small", latent_size=32,
                     encoder=ConvEncoderConfig(num_views=4, base_channels=32, channel_mult=(1, 2, 4),
                                               attention_heads=4, attention_head_dim=32),
                     decoder=DiTDecoderConfig(width=160, depth=5, num_heads=4, upsampler_channels=32,
                                              upsampler_mult=(1, 2, 4)),
                     renderer=RendererConfig(depth_samples=48, importance_samples=48))


PRESETS = {
    "objaverse": _objaverse,
    "objaverse-b": _objaverse_b,
    "shapenet": _shapenet,
    "ffhq": _ffhq,
    "tiny": _tiny,
    "small": _small,
}


def preset_config(name: str) -> VAEConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def vae_config(preset: str, overrides: dict | None = None) -> VAEConfig:
    """A preset with nested overrides applied; the result remembers its preset name."""
    base = preset_config(preset).to_dict()
    merged = _merge(base, overrides or {})
    merged["preset"] = preset
    return VAEConfig.from_dict(merged)
