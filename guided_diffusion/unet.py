"""The ShapeNet/FFHQ stage-2 denoiser: ADM/LDM UNet with spatial transformers and LSGM's mixing logit (spec §6).

Release (ShapeNet car/chair/plane): 12 → 12 channels on the 32 × 32 latent (no roll-out), 320 base channels,
multipliers (1, 2, 4, 4), 2 residual blocks per level, scale-shift norm, spatial transformers (8 heads of
channels/8, depth 1, CLIP context 768) only at downsample factor 8 and in the middle block.

Layout: `down` stages (the input conv, then per level `num_res_blocks` [ResBlock, (SpatialTransformer)] stages and a
Downsample stage), `mid`, `up` stages (each [ResBlock on the concatenated skip, (SpatialTransformer),
(Upsample)]), then GroupNorm → SiLU → conv. Every `down` stage's output is a skip for one `up` stage, in reverse.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from guided_diffusion.dit_common import register_latent_statistics
from guided_diffusion.embedding import TimestepEmbedder
from nsr.attention import CrossAttention


class GroupNorm32(nn.GroupNorm):
    """32-group GroupNorm computed in float32 (as ADM does, for fp16 stability)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(32, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN → SiLU → conv; GN · (1 + scale) + shift from the time embedding → SiLU → dropout → conv (zero-init);
    plus a 1×1-conv (or identity) skip."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = GroupNorm32(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = GroupNorm32(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(F.silu(emb)).to(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.dropout(F.silu(h)))


class GEGLU(nn.Module):
    """Linear(dim → 2·inner) → a · GELU(gate) → Linear(inner → dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Pre-LN self-attention, cross-attention to the context, GEGLU feed-forward; all residual."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = CrossAttention(dim, dim, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, context_dim, num_heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = GEGLU(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """GN (eps 1e-6) → 1×1 conv → tokens `(B, H·W, C)` → transformer blocks → 1×1 conv (zero-init), residual."""

    def __init__(self, channels: int, num_heads: int, depth: int, context_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.blocks = nn.ModuleList(TransformerBlock(channels, num_heads, channels // num_heads, context_dim)
                                    for _ in range(depth))
        self.proj_out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.ModuleList):
    """Layers applied in order; each takes what it needs of (emb, context)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """`forward(x (B, in_channels, S, S), t (B,), context=dict(crossattn=(B, M, context_dim))) -> (B, out_channels,
    S, S)`. t is embedded as given (the release feeds index/1000). `mixing_logit` `(1, out_channels, 1, 1)` is
    LSGM's learned blend of the network's ε with the Gaussian ε of x_t; the diffusion process applies it."""

    def __init__(
        self,
        *,
        in_channels: int = 12,
        out_channels: int = 12,
        model_channels: int = 320,
        channel_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_downsample: tuple[int, ...] = (8,),
        num_heads: int = 8,
        transformer_depth: int = 1,
        context_dim: int = 768,
        latent_size: int = 32,
        dropout: float = 0.0,
        mixing_logit_init: float = -3.0,
    ):
        super().__init__()
        emb_dim = 4 * model_channels
        self.mixing_logit = nn.Parameter(torch.full((1, out_channels, 1, 1), mixing_logit_init))
        register_latent_statistics(self, in_channels, latent_size)
        self.time_embed = TimestepEmbedder(emb_dim, frequency_dim=model_channels)

        def attention(ch: int) -> SpatialTransformer:
            return SpatialTransformer(ch, num_heads, transformer_depth, context_dim)

        ch, ds = model_channels, 1
        self.down = nn.ModuleList([Stage([nn.Conv2d(in_channels, ch, 3, padding=1)])])
        skips = [ch]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, mult * model_channels, emb_dim, dropout)]
                ch = mult * model_channels
                if ds in attention_downsample:
                    layers.append(attention(ch))
                self.down.append(Stage(layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(Stage([Downsample(ch)]))
                skips.append(ch)
                ds *= 2
        self.mid = Stage([ResBlock(ch, ch, emb_dim, dropout), attention(ch), ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), mult * model_channels, emb_dim, dropout)]
                ch = mult * model_channels
                if ds in attention_downsample:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.up.append(Stage(layers))
        self.out_norm = GroupNorm32(ch)
        self.out_conv = _zero(nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.time_embed(t)
        ctx = context["crossattn"].to(emb.dtype)
        h, skips = x, []
        for stage in self.down:
            h = stage(h, emb, ctx)
            skips.append(h)
        h = self.mid(h, emb, ctx)
        for stage in self.up:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, ctx)
        return self.out_conv(F.silu(self.out_norm(h))).float()
