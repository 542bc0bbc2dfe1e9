"""`TriplaneVAE`: multi-view images → Gaussian posterior over a 3-plane latent → triplane → volume renders.

API (docs/ARCHITECTURE.md): `encode`, `decode`, `render`, `query`, and `forward(batch)` for training.
"""
from __future__ import annotations

import torch
from torch import nn

from nsr.config import VAEConfig, vae_config
from nsr.decoder import build_decoder
from nsr.encoder import build_encoder
from nsr.posterior import GaussianPosteriorHead, Posterior
from nsr.renderer import TriplaneRenderer
from nsr.rendering.patches import PatchLayout


class TriplaneVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.posterior_head = GaussianPosteriorHead(config.latent_channels)
        self.decoder = build_decoder(config)
        self.renderer = TriplaneRenderer(config.renderer, config.plane_channels)

    @classmethod
    def from_preset(cls, preset: str, overrides: dict | None = None) -> TriplaneVAE:
        return cls(vae_config(preset, overrides))

    def encode(self, enc_input: torch.Tensor) -> Posterior:
        """enc_input `(B, V, Cin, H, W)` → Posterior (mean/logvar `(B, C, 3, h·w)`)."""
        return self.posterior_head(self.encoder(enc_input))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent `(B, 3·C, h, w)` channel-major → triplane `(B, 3·F, R, R)` plane-major."""
        return self.decoder(latent)

    def render(self, triplane: torch.Tensor, cameras: torch.Tensor, resolution: int,
               patch: PatchLayout | None = None, deterministic: bool = False,
               generator: torch.Generator | None = None, chunk: int | None = 16384) -> dict:
        """See `TriplaneRenderer.render`: rgb `(B, N, 3, P, P)` in [-1, 1], depth, alpha, weights.

        Rays are marched `chunk` per batch item at a time (about 2.5 GB of float32 temporaries at 128 samples), so
        any resolution fits without grad; deterministic renders do not depend on `chunk`. None: one pass.
        """
        return self.renderer.render(triplane, cameras, resolution, patch=patch, deterministic=deterministic,
                                    generator=generator, chunk=chunk)

    def query(self, triplane: torch.Tensor, points: torch.Tensor, chunk: int | None = 65536) -> dict:
        """Raw σ `(B, P, 1)` and rgb `(B, P, 3)` in [0, 1] (±0.001) at world points `(B, P, 3)`."""
        out = self.renderer.query(triplane, points, chunk=chunk)
        return {"sigma": out["sigma"], "rgb": out["rgb"][..., :3]}

    def forward(self, batch: dict, patch: PatchLayout | None = None, resolution: int | None = None,
                sample_posterior: bool = True, generator: torch.Generator | None = None) -> dict:
        """Training pass: encode `batch["enc_input"]`, decode, render `batch["target_cameras"]`.

        `resolution` defaults to the side of `batch["target_rgb"]`; with `patch` only each view's window is
        rendered (crop the targets with `patch.crop`). Returns the render dict plus posterior, latent, triplane.
        """
        posterior = self.encode(batch["enc_input"])
        latent = posterior.latent(sample=sample_posterior, generator=generator)
        triplane = self.decode(latent)
        if resolution is None:
            resolution = batch["target_rgb"].shape[-1]
        out = self.render(triplane, batch["target_cameras"], resolution, patch=patch, generator=generator)
        out.update(posterior=posterior, latent=latent, triplane=triplane)
        return out
