"""`build_conditioner(name, **kwargs)`: every conditioner by name.

| name | input | crossattn | vector | weights |
|---|---|---|---|---|
| clip-text | prompts | (B, 77, 768) | (B, 768) | CLIP ViT-L/14 text (released T23D) |
| clip-dino-image | images | (B, 256, 2048) | (B, 768) | CLIP ViT-L/14 + DINOv2 ViT-L/14-reg4 (released I23D) |
| clip-zeroshot-text | prompts | (B, 1, 768) | (B, 768) | CLIP ViT-L/14, normalised × 18.4 (ShapeNet/FFHQ sampling) |
| clip-zeroshot-image | images | (B, 1, 768) | (B, 768) | CLIP ViT-L/14, normalised × 18.4 (ShapeNet/FFHQ training) |
| offline-text | prompts | (B, 77, width) | (B, vector_dim) | none: trained from scratch |
| offline-image | images | (B, 256, width) | (B, vector_dim) | none: trained from scratch |

A checkpoint stores `conditioner.describe()`; `build_conditioner(**describe)` rebuilds the same conditioner.
"""
from __future__ import annotations

from ldm.base import Conditioner
from ldm.image import CLIPDinoImageConditioner
from ldm.offline_image import OfflineImageConditioner
from ldm.offline_text import OfflineTextConditioner
from ldm.text import CLIPTextConditioner
from ldm.zeroshot import CLIPZeroShotImageConditioner, CLIPZeroShotTextConditioner

CONDITIONERS: dict[str, type[Conditioner]] = {
    cls.name: cls
    for cls in (CLIPTextConditioner, CLIPDinoImageConditioner, CLIPZeroShotTextConditioner,
                CLIPZeroShotImageConditioner, OfflineTextConditioner, OfflineImageConditioner)
}


def conditioner_names() -> list[str]:
    return list(CONDITIONERS)


def build_conditioner(name: str, **kwargs) -> Conditioner:
    """The conditioner registered as `name`, built with `kwargs` (see each class for its arguments)."""
    if name not in CONDITIONERS:
        raise ValueError(f"unknown conditioner '{name}'; valid names: {', '.join(CONDITIONERS)}")
    return CONDITIONERS[name](**kwargs)
