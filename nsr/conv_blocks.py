"""Stable-Diffusion/LDM-style convolutional blocks, shared by the multi-view conv encoder and the conv upsampler.

GroupNorm(32 groups, eps 1e-6, affine) and swish everywhere, no timestep embedding, dropout 0 (spec §2.3, §2.5d).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """The LDM normalisation: 32 groups, eps 1e-6; `channels` must be a multiple of 32."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm → swish → conv3×3 → norm → swish → conv3×3, plus a 1×1 shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(N, Cin, H, W)` → `(N, Cout, H, W)`."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 conv3×3 (LDM's asymmetric downsampling): `(N,C,H,W)` → `(N,C,H/2,W/2)`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest ×2 then conv3×3: `(N,C,H,W)` → `(N,C,2H,2W)`."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConvSelfAttention(nn.Module):
    """Single-head self-attention over all pixels with 1×1-conv q/k/v/out projections, plus the input residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(N, C, H, W)` → `(N, C, H, W)`."""
        n, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]
        return x + self.proj_out(out.transpose(1, 2).reshape(n, c, h, w))


class UpLevel(nn.Module):
    """One resolution level of `ConvDecoder`: `num_blocks` ResnetBlocks, then (except at the top level) Upsample."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(num_blocks))
        self.upsample = Upsample(out_channels) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.upsample is None else self.upsample(x)


class ConvDecoder(nn.Module):
    """The LDM `Decoder` without attention inside the levels: conv_in → Res/attention/Res → up levels → norm, swish,
    conv_out. Upsamples by 2^(len(channel_mult) − 1).

    `up[i]` is level i counted from the output (full) resolution, as in the released state dict; levels run from the
    last to the first. Each level has `num_res_blocks + 1` ResnetBlocks.
    """

    def __init__(self, in_channels: int, out_channels: int, base_channels: int, channel_mult: tuple[int, ...],
                 num_res_blocks: int):
        super().__init__()
        width = base_channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.mid_block1 = ResnetBlock(width, width)
        self.mid_attention = ConvSelfAttention(width)
        self.mid_block2 = ResnetBlock(width, width)
        levels = []
        for level in reversed(range(len(channel_mult))):
            level_width = base_channels * channel_mult[level]
            levels.insert(0, UpLevel(width, level_width, num_res_blocks + 1, upsample=level != 0))
            width = level_width
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z `(N, Cin, h, w)` → `(N, Cout, h·2^(L−1), w·2^(L−1))`."""
        h = self.mid_block2(self.mid_attention(self.mid_block1(self.conv_in(z))))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))
