"""Classifier-free guidance at sampling time and condition dropout at training time.

Sampling: the conditional and unconditional passes run as one doubled batch [uncond, cond] and are combined as
out_u + s·(out_c − out_u). What `out` is depends on the process: the denoised estimate D for DDPM (the T23D
release guides D, sgm `VanillaCFG`), the velocity for flow matching (I23D). The null condition is all zeros.

Training: T23D replaces captions by the empty string (p = 0.1) before the text encoder; I23D zeroes each
conditioning stream independently. The released I23D dropout ran twice at rate 0.1 (conditioner `ucg_rate` plus
the embedders' own), so each stream was dropped with p = 1 − 0.9² = 0.19.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# (x (B, ...), time (B,), context) -> prediction (B, ...): the denoiser D for DDPM, the velocity for flow.
PredictionFn = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]

T23D_CAPTION_DROP = 0.1
I23D_STREAM_DROP = 1 - (1 - 0.1) ** 2  # 0.19: two independent drops at 0.1 each


def null_context(context: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The unconditional context: zeros of the same shapes."""
    return {k: torch.zeros_like(v) for k, v in context.items()}


def guided(fn: PredictionFn, context: dict[str, torch.Tensor], scale: float,
           uncond: dict[str, torch.Tensor] | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Bind `context` and apply CFG with `scale`: returns g(x, time) → out_u + scale·(out_c − out_u).

    At scale 1 the guided prediction is the conditional one, so the unconditional pass is skipped.
    `uncond` defaults to `null_context(context)`.
    """
    if scale == 1.0:
        return lambda x, time: fn(x, time, context)
    uncond = null_context(context) if uncond is None else uncond
    doubled = {k: torch.cat([uncond[k], context[k]]) for k in context}

    def g(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        out_u, out_c = fn(torch.cat([x, x]), torch.cat([time, time]), doubled).chunk(2)
        return out_u + scale * (out_c - out_u)

    return g


def drop_captions(captions: Sequence[str], p: float = T23D_CAPTION_DROP,
                  generator: torch.Generator | None = None) -> list[str]:
    """T23D training dropout: each caption becomes "" with probability p (before the text encoder)."""
    keep = torch.rand(len(captions), generator=generator) >= p
    return [c if k else "" for c, k in zip(captions, keep.tolist())]


def drop_streams(context: dict[str, torch.Tensor], p: float = I23D_STREAM_DROP,
                 crossattn_split: int | None = None,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """I23D training dropout: zero each stream of each sample independently with probability p.

    Streams are the context entries; with `crossattn_split` the channels of `crossattn` before and after it
    (CLIP tokens | DINOv2 tokens) are two separate streams. Returns a new dict.
    """
    out = {}
    for key, value in context.items():
        splits = [crossattn_split] if key == "crossattn" and crossattn_split is not None else []
        parts = torch.tensor_split(value, splits, dim=-1) if splits else (value,)
        kept = []
        for part in parts:
            keep = torch.rand(value.shape[0], generator=generator) >= p
            kept.append(part * keep.to(part.device, part.dtype).reshape(-1, *([1] * (part.dim() - 1))))
        out[key] = torch.cat(kept, dim=-1) if len(kept) > 1 else kept[0]
    return out
