"""The interface every conditioner shares.

A conditioner maps a batch of prompts (text) or images (B, 3, H, W) in [-1, 1] to
`dict(crossattn=(B, num_tokens, context_dim), vector=(B, vector_dim))`, float32, on the conditioner's device.
The classifier-free-guidance null condition is all zeros of those shapes, as the released samplers use.

Pretrained conditioners are frozen: no gradients, always in eval mode, `trainable = False`, and their weights are
not part of our checkpoints (`describe()` names where they came from instead). Offline conditioners are ordinary
trainable modules whose `state_dict()` is saved next to the denoiser.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn


class Conditioner(nn.Module, ABC):
    name: ClassVar[str]
    modality: ClassVar[str]  # "text" or "image": what `forward` takes
    trainable: ClassVar[bool]

    def __init__(self, context_dim: int, vector_dim: int, num_tokens: int):
        super().__init__()
        self._context_dim = context_dim
        self._vector_dim = vector_dim
        self._num_tokens = num_tokens

    @property
    def context_dim(self) -> int:
        """Channels C of `crossattn (B, num_tokens, C)`."""
        return self._context_dim

    @property
    def vector_dim(self) -> int:
        """Channels Cv of `vector (B, Cv)`."""
        return self._vector_dim

    @property
    def num_tokens(self) -> int:
        """Sequence length of `crossattn`."""
        return self._num_tokens

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def null_condition(self, batch_size: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """All-zero context `dict(crossattn (B, L, C), vector (B, Cv))` for classifier-free guidance."""
        device = self.device if device is None else device
        return {
            "crossattn": torch.zeros(batch_size, self.num_tokens, self.context_dim, device=device),
            "vector": torch.zeros(batch_size, self.vector_dim, device=device),
        }

    @abstractmethod
    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this conditioner (JSON-serialisable)."""

    def describe(self) -> dict:
        """`{"name": ..., **config}`: what a checkpoint's config.json stores; `build_conditioner(**d)` rebuilds it."""
        return {"name": self.name, **self.config()}


class FrozenConditioner(Conditioner):
    """A pretrained conditioner: parameters frozen and the module pinned to eval mode (dropout, if any, stays off)."""

    trainable = False

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenConditioner:
        return super().train(False)


def as_prompt_list(prompts: list[str] | tuple[str, ...]) -> list[str]:
    """Checks the batch is a sequence of strings: a bare string would otherwise be read as one prompt per character."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got a single str; wrap it as [prompt]")
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be a non-empty list of strings")
    return prompts


def check_images(images: torch.Tensor) -> None:
    """Images must be a float batch (B, 3, H, W); the [-1, 1] range is the caller's contract and is not checked."""
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a float tensor (B, 3, H, W) in [-1, 1], got {shape}")
