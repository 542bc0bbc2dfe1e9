"""What a trained VAE's encoder reads from a stored object: which rig views, and the input built from them.

Latent extraction and reconstruction must encode exactly as the VAE saw its training views: the rig's six
latent-extraction views (spec §7.6; fewer for encoders that read a fixed count) at the encoder's resolution, with
the RGB normalisation of `datasets.multiview`.
"""
from __future__ import annotations

import torch

from datasets.multiview import MultiViewConfig, encoder_input
from datasets.record import ObjectRecord
from datasets.rig import ENCODER_VIEWS
from nsr.config import ConvEncoderConfig, VAEConfig
from nsr.trainer import encoder_resolution

ENCODER_RGB = MultiViewConfig.encoder_rgb


def default_encoder_views(config: VAEConfig) -> tuple[int, ...]:
    """Rig view ids to encode: all six extraction views; the first `num_views` for the conv view fusion, which reads
    exactly that many; one for the single-image ViT encoders (ShapeNet / FFHQ)."""
    enc = config.encoder
    if not isinstance(enc, ConvEncoderConfig):
        return ENCODER_VIEWS[:1]
    return ENCODER_VIEWS[:enc.num_views] if enc.view_fusion == "conv" else ENCODER_VIEWS


def record_encoder_input(record: ObjectRecord, views: tuple[int, ...], config: VAEConfig) -> torch.Tensor:
    """The encoder input `(V, 10, He, He)` of `record`'s `views` (KeyError naming a view the record lacks)."""
    return encoder_input(record.select(views), encoder_resolution(config), ENCODER_RGB)
