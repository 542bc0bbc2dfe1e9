"""Tri-latent tokenisation shared by the stage-2 DiTs (spec §5.1).

The diffusion latent is `(B, P·C, S, S)` in channel-major layout: channel k = c·P + n, with plane n ∈ [0, P) varying
fastest (P = 3 planes, C = 4 channels, S = 32 for the release). Each plane is patchified by one shared conv, the
token sequences are concatenated plane-major, and a fixed 2-D sin-cos table over (plane, token) is added.
"""
from __future__ import annotations

import torch
from torch import nn


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """`(M,)` positions → `(M, dim)` = [sin, cos] of position·10000^(−2i/dim), i < dim/2, in float64."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def trilatent_pos_embed(dim: int, tokens_per_plane: int, planes: int = 3) -> torch.Tensor:
    """Fixed positional table `(planes·tokens_per_plane, dim)` in float32, rows plane-major.

    The first dim/2 channels encode the token index within its plane, the last dim/2 the plane index (the MAE 2-D
    table over a (planes × tokens_per_plane) grid, which is how the released DiTs were built).
    """
    if dim % 4:
        raise ValueError(f"the tri-latent table needs dim divisible by 4, got {dim}")
    token = torch.arange(tokens_per_plane).repeat(planes)
    plane = torch.arange(planes).repeat_interleave(tokens_per_plane)
    return torch.cat([sincos_1d(dim // 2, token), sincos_1d(dim // 2, plane)], dim=1).float()


class TriLatentTokenizer(nn.Module):
    """Channel-major tri-plane latent ↔ plane-major token sequence.

    `forward`: x `(B, P·C, S, S)` → tokens `(B, P·L, D)` with L = (S/p)², pos table added.
    `unpatchify`: per-token patches `(B, P·L, p·p·C_out)` (channel fastest) → `(B, P·C_out, S, S)` channel-major.
    """

    def __init__(self, channels: int, latent_size: int, patch_size: int, hidden_size: int, planes: int = 3):
        super().__init__()
        if latent_size % patch_size:
            raise ValueError(f"latent size {latent_size} is not divisible by patch size {patch_size}")
        self.channels, self.latent_size, self.patch_size, self.planes = channels, latent_size, patch_size, planes
        self.grid = latent_size // patch_size
        self.proj = nn.Conv2d(channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        # Frozen parameter rather than a buffer: the released checkpoints store it as a parameter, so parameter
        # counts and state dicts line up with them one to one.
        table = trilatent_pos_embed(hidden_size, self.grid**2, planes)
        self.pos_embed = nn.Parameter(table[None], requires_grad=False)

    @property
    def num_tokens(self) -> int:
        return self.planes * self.grid**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        # (B, C·P, S, S) → (B·P, C, S, S): plane n takes channels {n, P+n, 2P+n, ...}.
        planes = x.unflatten(1, (self.channels, self.planes)).transpose(1, 2).flatten(0, 1)
        tokens = self.proj(planes).flatten(2).transpose(1, 2)  # (B·P, L, D), row-major over the patch grid
        return tokens.unflatten(0, (b, self.planes)).flatten(1, 2) + self.pos_embed

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        b, g, p = tokens.shape[0], self.grid, self.patch_size
        x = tokens.reshape(b, self.planes, g, g, p, p, -1)  # (B, n, h, w, p, q, c)
        x = x.permute(0, 6, 1, 2, 4, 3, 5)  # (B, c, n, h, p, w, q)
        return x.reshape(b, -1, g * p, g * p)
