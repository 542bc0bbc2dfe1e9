"""What a trained VAE's encoder reads from a stored object: which rig views, and the input built from them.

Latent extraction and reconstruction must encode exactly as the VAE saw its training views: the rig's
latent-extraction views (spec §7.6: six for the release VAE, as many as the preset's encoder reads otherwise) at the
encoder's resolution, with the RGB normalisation of `datasets.multiview`.
"""
from __future__ import annotations

import torch

from datasets.multiview import MultiViewConfig, encoder_input
from datasets.record import ObjectRecord
from datasets.rig import ENCODER_VIEWS
from nsr.config import ConvEncoderConfig, VAEConfig

ENCODER_RGB = MultiViewConfig.encoder_rgb


def encoder_resolution(config: VAEConfig) -> int:
    """Input side the encoder maps onto the latent grid: the conv encoder halves it len(channel_mult) − 1 times."""
    enc = config.encoder
    if isinstance(enc, ConvEncoderConfig):
        return config.latent_size * 2 ** (len(enc.channel_mult) - 1)
    return enc.image_size


def default_encoder_views(config: VAEConfig) -> tuple[int, ...]:
    """Rig view ids to encode: the first `num_views` extraction views for the conv encoders (all six for the
    release VAE), one for the single-image ViT encoders (ShapeNet / FFHQ) — the views `nsr.trainer` trains on."""
    enc = config.encoder
    return ENCODER_VIEWS[:enc.num_views] if isinstance(enc, ConvEncoderConfig) else ENCODER_VIEWS[:1]


def record_encoder_input(record: ObjectRecord, views: tuple[int, ...], config: VAEConfig) -> torch.Tensor:
    """The encoder input `(V, 10, He, He)` of `record`'s `views` (KeyError naming a view the record lacks)."""
    return encoder_input(record.select(views), encoder_resolution(config), ENCODER_RGB)


def parse_view_ids(text: str) -> tuple[int, ...]:
    """A CLI view list: '25,0,9' → (25, 0, 9); 'none' or '' → () (ValueError for anything else)."""
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(int(v) for v in text.split(","))
