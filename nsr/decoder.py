"""Stage-1 decoders: diffusion latent `(B, 3·C, h, w)` (channel-major) → triplane `(B, 3·F, R, R)` (plane-major).

`DiTTriplaneDecoder` is the Objaverse decoder (spec §2.5): grouped patch-embed → a DiT whose token stream starts as a
learned table and which sees the latent only through per-token adaLN, alternating in-plane and cross-plane attention
→ per-plane LDM conv upsampler. `ViTTriplaneDecoder` is the ShapeNet / FFHQ decoder (spec §3).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nsr.attention import FeedForward, SelfAttention, modulate
from nsr.config import DiTDecoderConfig, VAEConfig, ViTDecoderConfig
from nsr.conv_blocks import ConvDecoder
from nsr.vit_blocks import TriplaneAxisAttention, TriplaneAxisAttentionBlock, ViTBlock, uvit_forward


def sincos_table(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """MAE 2-D sin-cos position table `(grid_h·grid_w, dim)`, row-major; the first half of the channels encodes the
    column, the second half the row, each as [sin, cos] over dim/4 frequencies 1/10000^(k/(dim/4))."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")

    def embed(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([embed(cols), embed(rows)], axis=1)).float()


class LatentPatchEmbed(nn.Module):
    """Conv(3·C → 3·width, k = s = patch, groups 3) → tokens `(B, 3·T², width)`, plane-major (n·T² + row·T + col).

    Output channel o is read as (feature o // 3, plane o % 3). With the channel-major latent, group g reads latent
    channels [g·C, (g+1)·C), which mixes planes: a released quirk kept as is.
    """

    def __init__(self, latent_channels: int, width: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(3 * latent_channels, 3 * width, patch_size, stride=patch_size, groups=3)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.proj(latent)
        b, _, h, w = x.shape
        return x.reshape(b, -1, 3, h * w).flatten(2).transpose(1, 2)


class LatentTokenEmbed(nn.Module):
    """Per-pixel Linear(C → width) shared by the three planes (the FFHQ decoder): latent `(B, 3·C, h, w)`, read
    channel-major as (c, plane), → tokens `(B, 3·h·w, width)` plane-major."""

    def __init__(self, latent_channels: int, width: int):
        super().__init__()
        self.linear = nn.Linear(latent_channels, width)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        b, k, h, w = latent.shape
        return self.linear(latent.reshape(b, k // 3, 3, h * w).permute(0, 2, 3, 1).reshape(b, 3 * h * w, k // 3))


class AdaLNBlock(nn.Module):
    """DiT block with per-token adaLN-Zero: x += g_a·Attn(LN(x)(1+s_a)+b_a); x += g_m·MLP(LN(x)(1+s_m)+b_m).

    LN without affine, eps 1e-6; bias-free exact-GELU MLP (spec §13); modulation = SiLU → Linear (zeroed by
    `TriplaneDiT`, so every block starts as the identity).
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(width, 4 * width)
        self.modulation = nn.Linear(width, 6 * width)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x, cond `(N, L, width)` → `(N, L, width)`."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(F.silu(cond)).chunk(6, dim=-1)
        x = x + gate_a * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class TriplaneDiT(nn.Module):
    """Stack of `AdaLNBlock`s over 3·T² triplane tokens. The input is the learned `pos_embed` table (initialised
    with a sin-cos table over a (3T, T) grid); the latent tokens are the per-token condition. Even blocks attend
    within each plane, odd blocks across all three planes. No final norm."""

    def __init__(self, width: int, depth: int, num_heads: int, tokens_per_side: int):
        super().__init__()
        t = tokens_per_side
        self.pos_embed = nn.Parameter(sincos_table(width, 3 * t, t)[None])
        self.blocks = nn.ModuleList(AdaLNBlock(width, num_heads) for _ in range(depth))
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """cond `(B, 3·T², width)` plane-major → `(B, 3·T², width)`."""
        b, n, c = cond.shape
        in_plane = cond.reshape(3 * b, n // 3, c)
        x = self.pos_embed.expand(b, -1, -1)
        for i, block in enumerate(self.blocks):
            if i % 2 == 0:
                x = block(x.reshape(3 * b, n // 3, c), in_plane).reshape(b, n, c)
            else:
                x = block(x, cond)
        return x


class DiTTriplaneDecoder(nn.Module):
    """latent `(B, 3·C, h, w)` → `LatentPatchEmbed` → `TriplaneDiT` → per-plane `ConvDecoder` → `(B, 3·F, R, R)`."""

    def __init__(self, cfg: DiTDecoderConfig, latent_channels: int, latent_size: int, plane_channels: int):
        super().__init__()
        self.tokens_per_side = latent_size // cfg.patch_size
        self.latent_embed = LatentPatchEmbed(latent_channels, cfg.width, cfg.patch_size)
        self.transformer = TriplaneDiT(cfg.width, cfg.depth, cfg.num_heads, self.tokens_per_side)
        self.upsampler = ConvDecoder(cfg.width, plane_channels, cfg.upsampler_channels, cfg.upsampler_mult,
                                     cfg.upsampler_res_blocks)

    def tokens_to_triplane(self, x: torch.Tensor) -> torch.Tensor:
        """Transformer output `(B, 3·T², width)` → triplane `(B, 3·F, R, R)`, each plane upsampled separately."""
        b, _, c = x.shape
        t = self.tokens_per_side
        planes = x.reshape(3 * b, t, t, c).permute(0, 3, 1, 2)
        out = self.upsampler(planes)
        return out.reshape(b, -1, *out.shape[-2:])

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.tokens_to_triplane(self.transformer(self.latent_embed(latent)))


class ViTStage(nn.Module):
    """Two ViT blocks: the first attends within each plane; the second mixes planes through 3D-aware axis attention
    (nested inside the block, ShapeNet) or is followed by a separate residual axis-attention block (FFHQ)."""

    def __init__(self, width: int, num_heads: int, fusion_after_pair: bool):
        super().__init__()
        self.plane_block = ViTBlock(width, num_heads)
        if fusion_after_pair:
            self.triplane_block = ViTBlock(width, num_heads)
            self.fusion_norm = nn.LayerNorm(width, eps=1e-6)
            self.fusion = TriplaneAxisAttention(width, num_heads)
        else:
            self.triplane_block = ViTBlock(width, num_heads, attn=TriplaneAxisAttentionBlock(width, num_heads))
            self.fusion = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(B·3, T², width)` → `(B·3, T², width)`."""
        x = self.triplane_block(self.plane_block(x))
        if self.fusion is not None:
            planes = x.unflatten(0, (-1, 3))
            x = (planes + self.fusion(self.fusion_norm(planes))).flatten(0, 1)
        return x


class TriplaneViT(nn.Module):
    """Triplane tokens + learned position table → U-ViT over `ViTStage`s (planes folded into the batch) → LN.

    `unused_cls_token` and `unused_patch_embed` are never read: the released decoder was cut out of a DINOv2
    ViT-B whose class token and patch stem stayed in its state dict. They are kept so that the released checkpoint
    maps one-to-one onto this module (and the parameter count matches the release).
    """

    def __init__(self, width: int, depth: int, num_heads: int, tokens_per_side: int, fusion_after_pair: bool):
        super().__init__()
        if depth % 2:
            raise ValueError(f"the ViT decoder groups blocks in pairs; depth must be even, got {depth}")
        t = tokens_per_side
        self.pos_embed = nn.Parameter(sincos_table(width, 3 * t, t)[None])
        self.unused_cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.unused_patch_embed = nn.Conv2d(3, width, 14, stride=14)
        self.stages = nn.ModuleList(ViTStage(width, num_heads, fusion_after_pair) for _ in range(depth // 2))
        for stage in self.stages[len(self.stages) // 2:]:
            stage.skip_proj = nn.Linear(2 * width, width)
            nn.init.zeros_(stage.skip_proj.weight)
            nn.init.zeros_(stage.skip_proj.bias)
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens `(B, 3·T², width)` plane-major → `(B, 3·T², width)`."""
        b, n, c = tokens.shape
        x = (tokens + self.pos_embed).reshape(3 * b, n // 3, c)
        skips = [getattr(stage, "skip_proj", None) for stage in self.stages]
        x = uvit_forward(self.stages, x, skips)
        return self.norm(x).reshape(b, n, c)


class RollOutConv(nn.Module):
    """Rodin roll-out conv: each plane is concatenated with the other two planes mean-pooled along one axis —
    plane (i+1) averaged over its columns (broadcast along W), plane (i+2) averaged over its rows (broadcast along
    H) — then a 3×3 conv with groups=3 (one group per plane). `(B, in_channels, H, W)` → `(B, out_channels, H, W)`,
    both counted over the three planes."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(3 * in_channels, out_channels, 3, padding=1, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = x.unflatten(1, (3, -1))
        row_pool = planes.mean(dim=-1, keepdim=True).expand_as(planes).roll(-1, dims=1)
        col_pool = planes.mean(dim=-2, keepdim=True).expand_as(planes).roll(-2, dims=1)
        return self.conv(torch.stack([planes, row_pool, col_pool], dim=2).flatten(1, 3))


class RollOutUpsampler(nn.Module):
    """The ShapeNet/FFHQ 4× triplane upsampler (spec §3.1 `conv_sr`), plane-major `(B, 3·Cin, r, r)` →
    `(B, 3·Cout, R, R)`:

    residual = per-plane Linear(Cin → Cout), resized bilinearly (antialias) to R; x0 = residual +
    LeakyReLU(conv(x resized to R)); out = x0 + LeakyReLU(RollOutConv(x0)). Two released quirks kept: the main
    branch transposes H and W before resizing, and the residual reads the input channels channel-major
    (c·3 + plane) although they are plane-major.
    """

    def __init__(self, in_channels: int, out_channels: int, resolution: int, rollout_first_conv: bool):
        super().__init__()
        self.resolution = resolution
        self.residual_proj = nn.Linear(in_channels, out_channels)
        if rollout_first_conv:
            self.first_conv = RollOutConv(3 * in_channels, 3 * out_channels)
        else:
            self.first_conv = nn.Conv2d(3 * in_channels, 3 * out_channels, 3, padding=1, groups=3)
        self.rollout_conv = RollOutConv(3 * out_channels, 3 * out_channels)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.resolution:
            return x
        return F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                             antialias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c3, h, w = x.shape
        residual = self.residual_proj(x.reshape(b, c3 // 3, 3, h * w).permute(0, 2, 3, 1))  # (B, 3, hw, Cout)
        residual = self._resize(residual.transpose(2, 3).reshape(b, -1, h, w))
        x0 = residual + F.leaky_relu(self.first_conv(self._resize(x.transpose(2, 3))))
        return x0 + F.leaky_relu(self.rollout_conv(x0))


class ViTTriplaneDecoder(nn.Module):
    """latent → `LatentPatchEmbed` → `TriplaneViT` → Linear to p×p patches of `unpatchify_channels` per plane →
    `RollOutUpsampler` → `(B, 3·F, R, R)`."""

    def __init__(self, cfg: ViTDecoderConfig, latent_channels: int, latent_size: int, plane_channels: int):
        super().__init__()
        self.tokens_per_side = latent_size // cfg.patch_size
        self.unpatchify_size = cfg.unpatchify_size
        self.unpatchify_channels = cfg.unpatchify_channels
        if cfg.latent_embed == "linear":
            if cfg.patch_size != 1:
                raise ValueError("the linear latent embedding needs patch_size 1")
            self.latent_embed = LatentTokenEmbed(latent_channels, cfg.width)
        else:
            self.latent_embed = LatentPatchEmbed(latent_channels, cfg.width, cfg.patch_size)
        self.transformer = TriplaneViT(cfg.width, cfg.depth, cfg.num_heads, self.tokens_per_side,
                                       cfg.fusion_after_pair)
        self.unpatchify_proj = nn.Linear(cfg.width, cfg.unpatchify_size ** 2 * cfg.unpatchify_channels)
        self.upsampler = RollOutUpsampler(cfg.unpatchify_channels, plane_channels, cfg.triplane_resolution,
                                          cfg.rollout_first_conv)

    def tokens_to_triplane(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        t, p, c = self.tokens_per_side, self.unpatchify_size, self.unpatchify_channels
        x = self.unpatchify_proj(x).reshape(b, 3, t, t, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)
        return self.upsampler(x.reshape(b, 3 * c, t * p, t * p))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.tokens_to_triplane(self.transformer(self.latent_embed(latent)))


def build_decoder(cfg: VAEConfig) -> nn.Module:
    if cfg.latent_size % cfg.decoder.patch_size:
        raise ValueError(f"latent size {cfg.latent_size} is not a multiple of patch size {cfg.decoder.patch_size}")
    cls = DiTTriplaneDecoder if isinstance(cfg.decoder, DiTDecoderConfig) else ViTTriplaneDecoder
    return cls(cfg.decoder, cfg.latent_channels, cfg.latent_size, cfg.plane_channels)
