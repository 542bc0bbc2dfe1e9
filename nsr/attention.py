"""Transformer layers shared by the VAE's DiT2 decoder and the stage-2 DiTs.

All attention goes through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU), with the
default 1/sqrt(head_dim) scale. Names describe what a layer is; mapping the released key names onto them is the
job of `checkpoints/convert`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · weight, computed in float32 (as the released apex/fallback norm did)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.float()).to(x.dtype)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """`(B, N, H·D)` → `(B, H, N, D)`."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (`(B, N, 3, H, D)` layout) and optional qk-norm.

    `extra_tokens (B, M, C)` are appended to the sequence for keys and values only: the I23D DiT attends to DINOv2
    tokens this way, and their outputs are dropped.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, extra_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """x `(B, N, C)` → `(B, N, C)`."""
        n = x.shape[1]
        seq = x if extra_tokens is None else torch.cat([x, extra_tokens.to(x.dtype)], dim=1)
        q, k, v = self.qkv(seq).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q[:, :, :n]), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(2))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: bias-free q/k/v, output projection with bias, optional per-head qk-norm."""

    def __init__(self, dim: int, context_dim: int, num_heads: int, head_dim: int = 64, qk_norm: bool = False):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.q_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x `(B, N, C)`, context `(B, M, Cc)` (None: self-attention) → `(B, N, C)`."""
        context = x if context is None else context.to(x.dtype)
        q = self.q_norm(_heads(self.to_q(x), self.num_heads))
        k = self.k_norm(_heads(self.to_k(context), self.num_heads))
        v = _heads(self.to_v(context), self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """Linear → exact GELU → Linear.

    Bias-free by default: the DiT MLP as the released weights were trained (spec §13). `bias=True` gives the
    ViT (DINOv2) MLP, which keeps its biases.
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ProjectionMLP(nn.Module):
    """Linear → tanh-GELU → Linear, both with bias: the context projectors (text tokens, DINOv2 tokens)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation x·(1 + scale) + shift; shift/scale broadcast as `(B, C)` or per token `(B, N, C)`."""
    if shift.dim() == 2:
        shift, scale = shift[:, None], scale[:, None]
    return x * (1 + scale) + shift
