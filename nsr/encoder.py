"""Stage-1 encoders: multi-view images → posterior moments `(B, 2·3·latent_channels, h, w)`, plane-major groups.

`MultiViewConvEncoder` is the Objaverse encoder (spec §2.3; §2.7 with `view_fusion="conv"`); `ViTImageEncoder` the
single-view DINOv2-style encoder of the ShapeNet / FFHQ VAEs (§3). Both feed `GaussianPosteriorHead`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nsr.attention import CrossAttention
from nsr.config import ConvEncoderConfig, VAEConfig, ViTEncoderConfig
from nsr.conv_blocks import Downsample, ResnetBlock, group_norm
from nsr.vit_blocks import ViTBlock, resize_pos_table, uvit_forward


class GEGLUFeedForward(nn.Module):
    """Linear(dim → 2·hidden) split into value and gate, value·GELU(gate), then Linear(hidden → dim)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden_dim)
        self.out = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(value * F.gelu(gate))


class MultiViewTransformer(nn.Module):
    """GN → 1×1 conv → one pre-LN transformer block → zero-initialised 1×1 conv, plus the input residual.

    The block's first attention runs over the tokens of all V views of an instance jointly (so views exchange
    information), the second within each view, then a GEGLU feed-forward. No view embedding: the output is
    equivariant to the order of the views.
    """

    def __init__(self, channels: int, num_heads: int, head_dim: int):
        super().__init__()
        inner = num_heads * head_dim
        self.norm = group_norm(channels)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.norm1 = nn.LayerNorm(inner)
        self.attn_across_views = CrossAttention(inner, inner, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(inner)
        self.attn_within_view = CrossAttention(inner, inner, num_heads, head_dim)
        self.norm3 = nn.LayerNorm(inner)
        self.ff = GEGLUFeedForward(inner, 4 * inner)
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        """x `(B·V, C, H, W)`, views of an instance consecutive → `(B·V, C, H, W)`."""
        bv, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B·V, HW, inner)
        t = t.reshape(bv // num_views, num_views * h * w, -1)
        t = t + self.attn_across_views(self.norm1(t))
        t = t.reshape(bv, h * w, -1)
        t = t + self.attn_within_view(self.norm2(t))
        t = t + self.ff(self.norm3(t))
        return x + self.proj_out(t.transpose(1, 2).reshape(bv, -1, h, w))


class DownLevel(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(num_blocks))
        self.downsample = Downsample(out_channels) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class MultiViewConvEncoder(nn.Module):
    """SD/LDM conv encoder applied to every view, multi-view attention in the middle, then views fused.

    `view_fusion="mean"` averages the V per-view outputs (the released VAE, any V); `"conv"` concatenates exactly
    `num_views` outputs channel-wise (view 0 first) and fuses them with a 3×3 conv (the older release).
    """

    def __init__(self, cfg: ConvEncoderConfig, out_channels: int):
        super().__init__()
        self.view_fusion_mode = cfg.view_fusion
        self.num_views = cfg.num_views
        mult = (1, *cfg.channel_mult)
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.base_channels, 3, padding=1)
        self.down = nn.ModuleList(
            DownLevel(cfg.base_channels * mult[i], cfg.base_channels * mult[i + 1], cfg.num_res_blocks,
                      downsample=i != len(cfg.channel_mult) - 1)
            for i in range(len(cfg.channel_mult)))
        width = cfg.base_channels * cfg.channel_mult[-1]
        self.mid_block1 = ResnetBlock(width, width)
        self.mid_attention = MultiViewTransformer(width, cfg.attention_heads, cfg.attention_head_dim)
        self.mid_block2 = ResnetBlock(width, width)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)
        if cfg.view_fusion == "conv":
            self.view_fusion = nn.Conv2d(cfg.num_views * out_channels, out_channels, 3, padding=1)
        elif cfg.view_fusion != "mean":
            raise ValueError(f"view_fusion must be 'mean' or 'conv', got {cfg.view_fusion!r}")

    def per_view(self, x: torch.Tensor) -> torch.Tensor:
        """x `(B, V, Cin, H, W)` → per-view moments `(B, V, Cout, H/2^(L−1), W/2^(L−1))`."""
        b, v = x.shape[:2]
        h = self.conv_in(x.flatten(0, 1))
        for level in self.down:
            h = level(h)
        h = self.mid_block2(self.mid_attention(self.mid_block1(h), num_views=v))
        h = self.conv_out(F.silu(self.norm_out(h)))
        return h.unflatten(0, (b, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(B, V, Cin, H, W)` → `(B, Cout, h, w)`."""
        h = self.per_view(x)
        if self.view_fusion_mode == "mean":
            return h.mean(dim=1)
        if h.shape[1] != self.num_views:
            raise ValueError(f"the conv view fusion reads exactly {self.num_views} views, got {h.shape[1]}")
        return self.view_fusion(h.flatten(1, 2))


class ViTImageEncoder(nn.Module):
    """DINOv2-style ViT (class token, learned position table, LayerScale blocks) with U-ViT long skips on the second
    half of the blocks, final LN, class token dropped; then a linear map of each patch token to a p×p patch of
    posterior moments on all three planes (spec §3.1).
    """

    def __init__(self, cfg: ViTEncoderConfig, latent_channels: int, latent_size: int):
        super().__init__()
        self.grid = cfg.image_size // cfg.patch_size
        self.latent_patch = latent_size // self.grid
        if self.latent_patch * self.grid != latent_size:
            raise ValueError(f"latent size {latent_size} is not a multiple of the token grid {self.grid}")
        self.moment_channels = 2 * latent_channels
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_grid ** 2 + 1, cfg.width))
        self.patch_embed = nn.Conv2d(cfg.in_channels, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.blocks = nn.ModuleList(ViTBlock(cfg.width, cfg.num_heads) for _ in range(cfg.depth))
        for block in self.blocks[cfg.depth // 2:]:
            block.skip_proj = nn.Linear(2 * cfg.width, cfg.width)
            nn.init.zeros_(block.skip_proj.weight)
            nn.init.zeros_(block.skip_proj.bias)
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.to_latent = nn.Linear(cfg.width, self.latent_patch ** 2 * 3 * self.moment_channels)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        """image `(B, Cin, H, W)` → patch tokens after the final norm `(B, (H/p)·(W/p), width)`."""
        x = self.patch_embed(image).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        pos = self.pos_embed
        grid = math.isqrt(x.shape[1] - 1)
        x = x + torch.cat([pos[:, :1], resize_pos_table(pos[:, 1:], grid)], dim=1)
        skips = [getattr(block, "skip_proj", None) for block in self.blocks]
        x = self.norm(uvit_forward(self.blocks, x, skips))
        return x[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(B, 1, Cin, H, W)` (one view) → moments `(B, 3·2·latent_channels, h, w)`, channel = plane·2C + c."""
        if x.shape[1] != 1:
            raise ValueError(f"the ViT encoder reads one view per instance, got {x.shape[1]}")
        tokens = self.to_latent(self.tokens(x[:, 0]))  # (B, g·g, p·p·3·2C)
        b, p, c = tokens.shape[0], self.latent_patch, self.moment_channels
        g = math.isqrt(tokens.shape[1])
        out = tokens.reshape(b, g, g, p, p, 3, c).permute(0, 5, 6, 1, 3, 2, 4)  # (B, 3, 2C, g, p, g, p)
        return out.reshape(b, 3 * c, g * p, g * p)


def build_encoder(cfg: VAEConfig) -> nn.Module:
    moments = 3 * 2 * cfg.latent_channels
    if isinstance(cfg.encoder, ConvEncoderConfig):
        return MultiViewConvEncoder(cfg.encoder, moments)
    return ViTImageEncoder(cfg.encoder, cfg.latent_channels, cfg.latent_size)
