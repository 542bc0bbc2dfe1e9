"""Pretrained image conditioner of the released I23D model: CLIP ViT-L/14 + DINOv2 ViT-L/14-reg4 (spec §5.3).

Both encoders see the same 224² image, prepared as the release did: bicubic resize with align_corners=True and
kornia-style antialiasing (`ldm.preprocess`), [-1, 1] → [0, 1], then CLIP or ImageNet mean/std.
  * CLIP (open_clip, OpenAI weights, QuickGELU): vector = CLS after ln_post and the projection (B, 768); tokens = the
    256 patch tokens after ln_post, unprojected (B, 256, 1024) — open_clip ≥ 2.23 behaviour, as the release env.
  * DINOv2 (timm): `x_norm_patchtokens`, the final-norm patch tokens without CLS and the 4 registers (B, 256, 1024).
  * crossattn = [CLIP tokens, DINOv2 tokens] on channels (B, 256, 2048): the I23D DiT reads channels 0–1023 as CLIP
    and 1024–2047 as DINOv2.
"""
from __future__ import annotations

import os

import torch

from ldm.backbones import (
    DINOV2_L14_REG4,
    OPENAI_CLIP_L14,
    build_dinov2,
    build_open_clip,
    resolve_open_clip_weights,
    resolve_timm_weights,
)
from ldm.base import FrozenConditioner, check_images
from ldm.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, normalize, resize_like_kornia


def _how_to(flag: str, default_repo: str) -> str:
    return (f"download with `hf download {default_repo}` (read from the Hugging Face cache when offline) or pass "
            f"{flag} PATH to a local weight file or folder")


class CLIPDinoImageConditioner(FrozenConditioner):
    """Frozen CLIP + DINOv2 image encoders. `forward(images (B, 3, H, W) in [-1, 1])` →
    `dict(crossattn (B, 256, C_clip + C_dino), vector (B, C_embed))`."""

    name = "clip-dino-image"
    modality = "image"

    def __init__(self, clip_weights: str = OPENAI_CLIP_L14, dino_weights: str = DINOV2_L14_REG4,
                 clip_arch: str | dict = "ViT-L-14", clip_quick_gelu: bool = True,
                 dino_arch: str = "vit_large_patch14_reg4_dinov2", image_size: int = 224, antialias: bool = True,
                 cache_dir: str | os.PathLike | None = None):
        # Both files are found before either model is built, so a missing one fails at once.
        clip_file = resolve_open_clip_weights(clip_weights, what=f"CLIP image encoder ({clip_weights})",
                                              how_to=_how_to("--clip-weights", OPENAI_CLIP_L14), cache_dir=cache_dir)
        dino_file = resolve_timm_weights(dino_weights, what=f"DINOv2 image encoder ({dino_weights})",
                                         how_to=_how_to("--dino-weights", DINOV2_L14_REG4), cache_dir=cache_dir)
        visual = build_open_clip(clip_arch, clip_quick_gelu, clip_file).visual  # text tower dropped, as released
        visual.output_tokens = True
        dino = build_dinov2(dino_arch, image_size, dino_file)
        clip_size = visual.image_size[0]
        clip_grid = visual.grid_size[0] * visual.grid_size[1]
        dino_grid = dino.patch_embed.grid_size[0] * dino.patch_embed.grid_size[1]
        if clip_size != image_size or clip_grid != dino_grid:
            raise ValueError(f"CLIP ({clip_size}px, {clip_grid} tokens) and DINOv2 ({image_size}px, {dino_grid} "
                             f"tokens) must share the input size and the token grid to be concatenated")
        super().__init__(context_dim=visual.transformer.width + dino.embed_dim, vector_dim=visual.output_dim,
                         num_tokens=clip_grid)
        self.clip_visual = visual
        self.dino = dino
        self.settings = {"clip_weights": str(clip_weights), "dino_weights": str(dino_weights),
                         "clip_arch": clip_arch, "clip_quick_gelu": clip_quick_gelu, "dino_arch": dino_arch,
                         "image_size": image_size, "antialias": antialias}
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        images = images.to(self.device)
        size = self.settings["image_size"]
        unit = (resize_like_kornia(images.float(), (size, size), self.settings["antialias"]) + 1.0) / 2.0
        vector, clip_tokens = self.clip_visual(normalize(unit, CLIP_MEAN, CLIP_STD))
        dino_tokens = self.dino.forward_features(normalize(unit, IMAGENET_MEAN, IMAGENET_STD))
        dino_tokens = dino_tokens[:, self.dino.num_prefix_tokens:]  # drop CLS and the registers
        crossattn = torch.cat([clip_tokens.float(), dino_tokens.float()], dim=-1)
        return {"crossattn": crossattn, "vector": vector.float()}

    def config(self) -> dict:
        return dict(self.settings)
