"""Text-to-3D denoiser: DiT with adaLN-Zero from t and cross-attention to text tokens (spec §5.2).

Release: DiT-L/2 (24 blocks, width 1024, 16 heads, patch 2) on the (12, 32, 32) tri-latent, CLIP-L text tokens
(77 × 768). The pooled text vector is accepted in `context` but not used, as in the release.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from guided_diffusion.dit_common import init_dit_weights_, register_latent_statistics
from guided_diffusion.embedding import TimestepEmbedder
from guided_diffusion.trilatent import TriLatentTokenizer
from nsr.attention import CrossAttention, FeedForward, ProjectionMLP, SelfAttention, modulate


class TextCondBlock(nn.Module):
    """adaLN-Zero self-attention, ungated cross-attention on the un-normalised stream, adaLN-Zero MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads, qkv_bias=True)
        self.cross_attn = CrossAttention(hidden_size, hidden_size, num_heads, head_dim=hidden_size // num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(hidden_size, int(hidden_size * mlp_ratio))
        self.modulation = nn.Linear(hidden_size, 6 * hidden_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x `(B, N, D)`, c `(B, D)` timestep embedding, context `(B, M, D)` projected text tokens."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(F.silu(c)).chunk(6, dim=-1)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        x = x + self.cross_attn(x, context)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class AdaLNFinalLayer(nn.Module):
    """LN (no affine) → adaLN shift/scale from c → Linear to per-token patch values."""

    def __init__(self, hidden_size: int, out_features: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(hidden_size, 2 * hidden_size)
        self.linear = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class T23DDiT(nn.Module):
    """`forward(x (B, P·C, S, S), t (B,), context=dict(crossattn=(B, M, context_dim), ...)) -> (B, P·C, S, S)`.

    t is what the diffusion process feeds the network: the integer DDPM index 0..999 for the release.
    """

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
        context_dim: int = 768,
    ):
        super().__init__()
        self.tokenizer = TriLatentTokenizer(latent_channels, latent_size, patch_size, hidden_size, planes)
        self.time_embed = TimestepEmbedder(hidden_size)
        self.context_proj = ProjectionMLP(context_dim, hidden_size, hidden_size)
        self.blocks = nn.ModuleList(TextCondBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final = AdaLNFinalLayer(hidden_size, patch_size * patch_size * latent_channels)
        register_latent_statistics(self, latent_channels, latent_size)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        init_dit_weights_(self)
        # adaLN-Zero: every block starts as the identity and the output as zero.
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        for layer in (self.final.modulation, self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.time_embed(t)
        text = self.context_proj(context["crossattn"].to(c.dtype))
        h = self.tokenizer(x)
        for block in self.blocks:
            h = block(h, c, text)
        return self.tokenizer.unpatchify(self.final(h, c)).float()
