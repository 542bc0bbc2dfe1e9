"""Image-to-3D denoiser: PixArt-style DiT with CLIP cross-attention and DINOv2 key/value tokens (spec §5.3).

Conditioning per forward:
- c = TimestepEmbedder(t) + pooled_embed(CLIP vector); one shared adaLN maps SiLU(c) to t0 `(B, 6·D)`, and every
  block adds its own learned `modulation_table (6, D)` to it (adaLN-single).
- `context["crossattn"]` `(B, M, clip_dim + dino_dim)`: the CLIP patch tokens (RMS-normalised once) are the
  cross-attention context; the DINOv2 tokens, projected to the model width, are appended to every self-attention's
  keys and values.

Release: width 1024, 24 blocks, 16 heads, patch 2, clip_dim = dino_dim = 1024, pooled_dim 768, continuous flow
time t ∈ [0, 1]. With `keep_released_unused` the model also holds the two released tensors that no forward pass
uses (`clip_spatial_proj` and a per-block `attention_y_norm`), under `release_unused`, so that the release preset
loads and re-exports the released state dict one to one; they are never read.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from guided_diffusion.dit_common import init_dit_weights_, register_latent_statistics
from guided_diffusion.embedding import TimestepEmbedder
from guided_diffusion.trilatent import TriLatentTokenizer
from nsr.attention import CrossAttention, FeedForward, ProjectionMLP, RMSNorm, SelfAttention, modulate


class ImageCondBlock(nn.Module):
    """RMSNorm + adaLN-single self-attention over [x, DINO tokens] (qk-norm), ungated qk-normed cross-attention to
    CLIP tokens, RMSNorm + adaLN-single MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, clip_dim: int):
        super().__init__()
        self.norm1 = RMSNorm(hidden_size)
        self.attn = SelfAttention(hidden_size, num_heads, qkv_bias=True, qk_norm=True)
        self.cross_attn = CrossAttention(hidden_size, clip_dim, num_heads, head_dim=hidden_size // num_heads,
                                         qk_norm=True)
        self.norm2 = RMSNorm(hidden_size)
        self.mlp = FeedForward(hidden_size, int(hidden_size * mlp_ratio))
        self.modulation_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, t0: torch.Tensor, clip_tokens: torch.Tensor,
                dino_tokens: torch.Tensor) -> torch.Tensor:
        """x `(B, N, D)`, t0 `(B, 6·D)`, clip_tokens `(B, M, clip_dim)`, dino_tokens `(B, M', D)`."""
        mod = self.modulation_table[None] + t0.unflatten(-1, (6, -1))
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.unbind(1)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a), extra_tokens=dino_tokens)
        x = x + self.cross_attn(x, clip_tokens)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class TableFinalLayer(nn.Module):
    """LN (no affine) → shift/scale = `modulation_table (2, D)` + c → Linear to per-token patch values."""

    def __init__(self, hidden_size: int, out_features: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)
        self.linear = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation_table[None] + c[:, None]).unbind(1)
        return self.linear(modulate(self.norm(x), shift, scale))


class PooledEmbed(nn.Module):
    """LayerNorm(affine) → Linear: the pooled CLIP image vector `(B, pooled_dim)` → `(B, D)`."""

    def __init__(self, pooled_dim: int, hidden_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(pooled_dim)
        self.linear = nn.Linear(pooled_dim, hidden_size)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(v))


class I23DDiT(nn.Module):
    """`forward(x (B, P·C, S, S), t (B,), context=dict(crossattn=(B, M, clip_dim + dino_dim), vector=(B, pooled_dim)))
    -> (B, P·C, S, S)`; t is the flow time in [0, 1] for the release."""

    def __init__(
        self,
        *,
        depth: int,
        hidden_size: int,
        num_heads: int,
        patch_size: int = 2,
        mlp_ratio: float = 4.0,
        latent_channels: int = 4,
        latent_size: int = 32,
        planes: int = 3,
        clip_dim: int = 1024,
        dino_dim: int = 1024,
        pooled_dim: int = 768,
        keep_released_unused: bool = False,
    ):
        super().__init__()
        self.clip_dim = clip_dim
        self.tokenizer = TriLatentTokenizer(latent_channels, latent_size, patch_size, hidden_size, planes)
        self.time_embed = TimestepEmbedder(hidden_size)
        self.pooled_embed = PooledEmbed(pooled_dim, hidden_size)
        self.modulation = nn.Linear(hidden_size, 6 * hidden_size)
        self.context_norm = RMSNorm(clip_dim)
        self.dino_proj = ProjectionMLP(dino_dim, hidden_size, hidden_size)
        self.blocks = nn.ModuleList(ImageCondBlock(hidden_size, num_heads, mlp_ratio, clip_dim) for _ in range(depth))
        self.final = TableFinalLayer(hidden_size, patch_size * patch_size * latent_channels)
        if keep_released_unused:
            self.release_unused = nn.ModuleDict({
                "clip_spatial_proj": ProjectionMLP(clip_dim, hidden_size, hidden_size),
                "block_context_norms": nn.ModuleList(RMSNorm(clip_dim) for _ in range(depth)),
            })
        register_latent_statistics(self, latent_channels, latent_size)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        init_dit_weights_(self)
        # Zero-start: the shared adaLN, the pooled-vector path and the output layer.
        for layer in (self.modulation, self.pooled_embed.linear, self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.time_embed(t)
        c = c + self.pooled_embed(context["vector"].to(c.dtype))
        t0 = self.modulation(F.silu(c))
        tokens = context["crossattn"].to(c.dtype)
        clip_tokens = self.context_norm(tokens[..., : self.clip_dim])
        dino_tokens = self.dino_proj(tokens[..., self.clip_dim:])
        h = self.tokenizer(x)
        for block in self.blocks:
            h = block(h, t0, clip_tokens, dino_tokens)
        return self.tokenizer.unpatchify(self.final(h, c)).float()
