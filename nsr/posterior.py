"""Diagonal-Gaussian posterior over the triplane latent, in the released layout (spec §2.4).

The encoder's `(B, 2·3·C, h, w)` moments pass a 1×1 conv with groups=3, then output channel k is read as
(k // 3, k % 3) = (moment channel, plane): channel-major, plane fastest. This does not line up with the conv's own
group split (channels 0–7, 8–15, 16–23 for C = 4); the inconsistency is baked into the released weights and kept.
The first C moment channels are the mean, the last C the log-variance.
"""
from __future__ import annotations

import torch
from torch import nn


class Posterior:
    """`mean`, `logvar` `(B, C, 3, h·w)` (the release layout); logvar already soft-clamped to (−20, 20)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor, latent_size: tuple[int, int]):
        self.mean = mean
        self.logvar = logvar
        self.latent_size = latent_size

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def latent(self, sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw (or the mean) as the diffusion latent `(B, 3·C, h, w)`, channel k = c·3 + plane."""
        z = self.mean
        if sample:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + self.std * noise
        return z.reshape(z.shape[0], -1, *self.latent_size)

    def mode(self) -> torch.Tensor:
        return self.latent(sample=False)

    def kl(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) = ½·Σ(μ² + σ² − 1 − log σ²) over all latent elements, `(B,)`."""
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).sum(1)


class GaussianPosteriorHead(nn.Module):
    """The released "quant conv": grouped 1×1 conv on the encoder moments, then the channel-major split."""

    def __init__(self, latent_channels: int, soft_clamp: float = 20.0):
        super().__init__()
        moments = 3 * 2 * latent_channels
        self.conv = nn.Conv2d(moments, moments, 1, groups=3)
        self.soft_clamp = soft_clamp

    def forward(self, moments: torch.Tensor) -> Posterior:
        """moments `(B, 6·C, h, w)` → Posterior with float32 mean/logvar `(B, C, 3, h·w)` (also under autocast,
        so that the KL and the sample are computed in full precision)."""
        b, _, h, w = moments.shape
        m = self.conv(moments).float().reshape(b, -1, 3, h * w)
        mean, logvar = m.chunk(2, dim=1)
        logvar = self.soft_clamp * torch.tanh(logvar / self.soft_clamp)
        return Posterior(mean, logvar, (h, w))
