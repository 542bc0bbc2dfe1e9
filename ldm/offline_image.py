"""Offline image conditioner: a small ViT trained from scratch with the denoiser (no downloaded weights).

Images in [-1, 1] are resized to `image_size` with the released bicubic/antialias rule (`ldm.preprocess`) and cut
into (image_size / patch_size)² patches — 256 tokens by default, the token count of the pretrained CLIP + DINOv2
conditioner, so denoiser configs carry over. `vector` is a projection of the mean token.
"""
from __future__ import annotations

import torch
from torch import nn

from ldm.base import Conditioner, check_images
from ldm.preprocess import resize_like_kornia
from ldm.transformer import Encoder

PRESETS = {
    "tiny": {"width": 128, "depth": 2, "num_heads": 4},
    "small": {"width": 384, "depth": 6, "num_heads": 6},
}


class OfflineImageConditioner(Conditioner):
    """`forward(images (B, 3, H, W) in [-1, 1])` → `dict(crossattn (B, (S/P)², width), vector (B, vector_dim))`.

    `preset` ('tiny' or 'small') fills the widths not given explicitly; `vector_dim` defaults to `width`.
    """

    name = "offline-image"
    modality = "image"
    trainable = True

    def __init__(self, preset: str = "tiny", width: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, vector_dim: int | None = None, image_size: int = 128,
                 patch_size: int = 8, mlp_ratio: float = 4.0, antialias: bool = True):
        if preset not in PRESETS:
            raise ValueError(f"unknown offline-image preset '{preset}'; choose one of {', '.join(PRESETS)}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        given = {"width": width, "depth": depth, "num_heads": num_heads}
        arch = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
        vector_dim = arch["width"] if vector_dim is None else vector_dim
        num_tokens = (image_size // patch_size) ** 2
        super().__init__(context_dim=arch["width"], vector_dim=vector_dim, num_tokens=num_tokens)
        self.settings = {"preset": preset, **arch, "vector_dim": vector_dim, "image_size": image_size,
                         "patch_size": patch_size, "mlp_ratio": mlp_ratio, "antialias": antialias}
        self.patch_embed = nn.Conv2d(3, arch["width"], kernel_size=patch_size, stride=patch_size)
        self.position_embedding = nn.Parameter(torch.randn(num_tokens, arch["width"]) * 0.02)
        self.encoder = Encoder(arch["width"], arch["depth"], arch["num_heads"], mlp_ratio)
        self.vector_proj = nn.Linear(arch["width"], vector_dim)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        size = self.settings["image_size"]
        images = resize_like_kornia(images.to(self.device).float(), (size, size), self.settings["antialias"])
        x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.position_embedding
        x = self.encoder(x)
        return {"crossattn": x, "vector": self.vector_proj(x.mean(dim=1))}

    def config(self) -> dict:
        return dict(self.settings)
