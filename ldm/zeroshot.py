"""Zero-shot CLIP conditioning of the ShapeNet / FFHQ stage-2 UNets (spec §6).

Those models are trained on CLIP ViT-L/14 *image* embeddings of a rendered view and sampled from CLIP *text*
embeddings of a prompt: both live in CLIP's joint space. Either way the context is one token, the L2-normalised
projected embedding times 18.4 (`--scale_clip_encoding`): crossattn (B, 1, 768); vector is the same (B, 768).

open_clip's ViT-L-14 with the OpenAI weights and QuickGELU is the model of the OpenAI `clip` package the release
used; its BPE tokenizer is the same (bundled, works offline). Differences, all deliberate: prompts longer than 77
tokens are truncated (`clip.tokenize` raises), and the model runs in float32 (`clip.load` on a GPU keeps float16).
Images are taken in [-1, 1] like every other image conditioner, resized as the release did for this path (kornia
bicubic, align_corners=True, no antialias), mapped to [0, 1] and CLIP-normalised.
"""
from __future__ import annotations

import os
from abc import abstractmethod

import torch
import torch.nn.functional as F

from ldm.backbones import OPENAI_CLIP_L14, build_open_clip, resolve_open_clip_weights
from ldm.base import FrozenConditioner, as_prompt_list, check_images
from ldm.preprocess import CLIP_MEAN, CLIP_STD, released_image_preprocess

CLIP_EMBEDDING_SCALE = 18.4
_HOW_TO = (f"download with `hf download {OPENAI_CLIP_L14}` (read from the Hugging Face cache when offline) or pass "
           f"--clip-weights PATH to a local open_clip / OpenAI CLIP weight file or folder")


class _CLIPEmbeddingConditioner(FrozenConditioner):
    def __init__(self, weights: str, arch: str | dict, quick_gelu: bool, scale: float,
                 cache_dir: str | os.PathLike | None):
        weights_file = resolve_open_clip_weights(weights, what=f"CLIP ({weights})", how_to=_HOW_TO,
                                                 cache_dir=cache_dir)
        clip = build_open_clip(arch, quick_gelu, weights_file)
        embed_dim = clip.visual.output_dim
        super().__init__(context_dim=embed_dim, vector_dim=embed_dim, num_tokens=1)
        self.scale = scale
        self.settings = {"weights": str(weights), "arch": arch, "quick_gelu": quick_gelu, "scale": scale}
        self._keep_tower(clip)
        self.freeze()

    @abstractmethod
    def _keep_tower(self, clip) -> None:
        """Keeps the tower this conditioner runs and lets the other one be freed."""

    def _scaled(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        vector = F.normalize(embedding.float(), dim=-1) * self.scale
        return {"crossattn": vector[:, None], "vector": vector}

    def config(self) -> dict:
        return dict(self.settings)


class CLIPZeroShotTextConditioner(_CLIPEmbeddingConditioner):
    """`forward(prompts: list[str])` → `dict(crossattn (B, 1, 768), vector (B, 768))`, ‖vector‖ = scale."""

    name = "clip-zeroshot-text"
    modality = "text"

    def __init__(self, weights: str = OPENAI_CLIP_L14, arch: str | dict = "ViT-L-14", quick_gelu: bool = True,
                 scale: float = CLIP_EMBEDDING_SCALE, cache_dir: str | os.PathLike | None = None):
        super().__init__(weights, arch, quick_gelu, scale, cache_dir)

    def _keep_tower(self, clip) -> None:
        import open_clip

        clip.visual = None  # the image tower is not needed to embed text
        self.clip = clip
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=clip.context_length)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(as_prompt_list(prompts)).to(self.device)
        return self._scaled(self.clip.encode_text(tokens))


class CLIPZeroShotImageConditioner(_CLIPEmbeddingConditioner):
    """`forward(images (B, 3, H, W) in [-1, 1])` → `dict(crossattn (B, 1, 768), vector (B, 768))`, ‖vector‖ = scale."""

    name = "clip-zeroshot-image"
    modality = "image"

    def __init__(self, weights: str = OPENAI_CLIP_L14, arch: str | dict = "ViT-L-14", quick_gelu: bool = True,
                 scale: float = CLIP_EMBEDDING_SCALE, antialias: bool = False,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(weights, arch, quick_gelu, scale, cache_dir)
        self.antialias = antialias
        self.settings["antialias"] = antialias

    def _keep_tower(self, clip) -> None:
        self.clip_visual = clip.visual

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        size = self.clip_visual.image_size[0]
        images = released_image_preprocess(images.to(self.device), size, CLIP_MEAN, CLIP_STD, self.antialias)
        return self._scaled(self.clip_visual(images))
