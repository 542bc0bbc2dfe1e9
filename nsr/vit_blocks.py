"""DINOv2-style ViT pieces for the ShapeNet / FFHQ VAEs (spec §3): pre-LN blocks with LayerScale, the U-ViT long
skips, and the 3D-aware "axis" attention that lets each triplane token see one row and one column of the other planes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nsr.attention import FeedForward, SelfAttention


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class ViTBlock(nn.Module):
    """x + γ₁·attn(LN(x)), then x + γ₂·MLP(LN(x)); MLP with biases and exact GELU (DINOv2 block).

    `attn` is plain multi-head self-attention over `(N, L, C)` unless another module is passed in (the ShapeNet
    decoder puts a whole residual `TriplaneAxisAttentionBlock` there, spec §3.1).
    """

    def __init__(self, dim: int, num_heads: int, attn: nn.Module | None = None):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=True) if attn is None else attn
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.norm2 = _layer_norm(dim)
        self.mlp = FeedForward(dim, 4 * dim, bias=True)
        self.mlp_scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(N, L, C)` → `(N, L, C)`."""
        x = x + self.attn_scale * self.attn(self.norm1(x))
        return x + self.mlp_scale * self.mlp(self.norm2(x))


class TriplaneAxisAttention(nn.Module):
    """Each token of plane i at (row r, col c) attends to row r of plane (i+1)%3 and column c of plane (i+2)%3.

    q from the token itself, k/v (one fused projection, k first) from the 2·p gathered tokens; no self key. Input and
    output `(B, 3, p·p, C)` with tokens row-major.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, length, c = x.shape
        p = math.isqrt(length)
        grid = x.reshape(b, n, p, p, c)
        nxt, nxt2 = grid.roll(-1, dims=1), grid.roll(-2, dims=1)
        rows = nxt[:, :, :, None].expand(b, n, p, p, p, c)  # [..., r, c, j] = plane i+1 at (r, j)
        cols = nxt2.transpose(2, 3)[:, :, None].expand(b, n, p, p, p, c)  # [..., r, c, j] = plane i+2 at (j, c)
        context = torch.cat([rows, cols], dim=4).reshape(b * n * length, 2 * p, c)
        q = self.q(x.reshape(b * n * length, 1, c)).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        k, v = self.kv(context).unflatten(-1, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, length, c)
        return self.proj(out)


class TriplaneAxisAttentionBlock(nn.Module):
    """Residual pre-LN wrapper around `TriplaneAxisAttention` taking planes folded into the batch, `(B·3, L, C)`.

    In the ShapeNet decoder it replaces the self-attention inside a `ViTBlock`, so that block computes
    x + γ₁·(y + axis_attn(LN'(y))) with y = LN(x): the nesting of the released network, kept as is.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm = _layer_norm(dim)
        self.attn = TriplaneAxisAttention(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = x.unflatten(0, (-1, 3))
        return (planes + self.attn(self.norm(planes))).flatten(0, 1)


def uvit_forward(blocks, x: torch.Tensor, skip_projs) -> torch.Tensor:
    """Run `blocks` U-ViT style: the outputs of the first half − 1 blocks (and the input) are pushed on a stack; each
    block of the second half first adds `skip_proj(cat(x, stack.pop()))`. `skip_projs[i]` belongs to `blocks[i]`
    (None in the first half)."""
    half = len(blocks) // 2
    skips = [x]
    for i, block in enumerate(blocks):
        if i >= half:
            x = x + skip_projs[i](torch.cat([x, skips.pop()], dim=-1))
        x = block(x)
        if i < half - 1:
            skips.append(x)
    return x


def resize_pos_table(table: torch.Tensor, grid: int) -> torch.Tensor:
    """A square `(1, g·g, C)` position table bicubically resized to `(1, grid·grid, C)` the way DINOv2 does
    (scale factor (grid + 0.1)/g, so the output is exactly grid × grid)."""
    g = math.isqrt(table.shape[1])
    if g == grid:
        return table
    img = table.reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    scale = (grid + 0.1) / g
    img = F.interpolate(img, scale_factor=(scale, scale), mode="bicubic")
    return img.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(table.dtype)
