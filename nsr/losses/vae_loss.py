"""The stage-1 VAE objective (spec §2.9): photometric + LPIPS + annealed KL + hinged depth + alpha + adversarial.

`VAELoss.forward` is the generator objective on rendered patches; `VAELoss.discriminator_loss` is the
discriminator's hinge objective. Every weight is a `VAELossConfig` field; a zero weight skips its term entirely.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from nsr.losses.depth import hinged_depth_loss, scale_shift_invariant_depth_loss
from nsr.losses.discriminator import (
    NLayerDiscriminator,
    PairedDiscriminator,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)
from nsr.losses.kl import KLSchedule
from nsr.losses.perceptual import build_lpips
from nsr.losses.photometric import l1, masked_mse, mse


@dataclass
class VAELossConfig:
    """Loss weights and switches. Defaults follow the Objaverse XL recipe (`ln3diff-vae-175K_debug.sh`)."""

    l2_weight: float = 0.0
    fg_mse: bool = True  # l2 term = masked MSE (fg / bg normalised separately) instead of plain MSE
    bg_weight: float = 1.0
    l1_weight: float = 1.0
    lpips_weight: float = 0.8
    lpips_net: str = "alex"
    lpips_backbone: str | None = None  # None: torchvision's cache (`~/.cache/torch/hub/checkpoints`)
    lpips_start_step: int = 100
    kl_weight: float = 1e-6
    kl_anneal: bool = True
    kl_anneal_start: int = 5000
    kl_anneal_length: int = 25000
    depth_weight: float = 0.1
    depth_hinge: float = 0.2
    depth_gradient_weight: float = 0.5
    alpha_weight: float = 1.0
    disc_factor: float = 1.0
    disc_weight: float = 0.08  # generator-side weight of −D(fake); 0 disables the discriminator entirely
    disc_start_step: int = 0
    disc_ndf: int = 64
    disc_layers: int = 3

    @property
    def uses_discriminator(self) -> bool:
        return self.disc_weight > 0 and self.disc_factor > 0


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Gradients flow through `module` to its input but not into its parameters."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class VAELoss(nn.Module):
    """Generator loss on rendered patches, plus the discriminator and its loss when the adversarial term is on.

    pred / target: dicts with `rgb (N, 3, P, P)` in [-1, 1], `depth (N, 1, P, P)` camera-z (target 0 = background)
    and `alpha (N, 1, P, P)` in [0, 1]; N = batch × rendered views. kl: per-sample KL `(B,)`.
    """

    def __init__(self, config: VAELossConfig):
        super().__init__()
        self.config = config
        self.kl_schedule = KLSchedule(config.kl_weight, config.kl_anneal, config.kl_anneal_start,
                                      config.kl_anneal_length)
        self.lpips = build_lpips(config.lpips_net, config.lpips_backbone) if config.lpips_weight > 0 else None
        self.discriminator = (NLayerDiscriminator(3, config.disc_ndf, config.disc_layers)
                              if config.uses_discriminator else None)

    def adversarial_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.disc_start_step

    def forward(self, pred: dict, target: dict, kl: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        """Returns the total generator loss (scalar) and a dict of detached terms for logging."""
        c = self.config
        terms: dict[str, torch.Tensor] = {}
        total = pred["rgb"].new_zeros(())

        if c.l2_weight > 0:
            if c.fg_mse:
                terms["mse"] = masked_mse(pred["rgb"], target["rgb"], target["alpha"], c.bg_weight)
            else:
                terms["mse"] = mse(pred["rgb"], target["rgb"])
            total = total + c.l2_weight * terms["mse"]
        if c.l1_weight > 0:
            terms["l1"] = l1(pred["rgb"], target["rgb"])
            total = total + c.l1_weight * terms["l1"]
        if self.lpips is not None and step >= c.lpips_start_step:
            terms["lpips"] = self.lpips(pred["rgb"], target["rgb"])
            total = total + c.lpips_weight * terms["lpips"]

        kl_weight = self.kl_schedule(step)
        terms["kl"] = kl.mean()
        terms["kl_weight"] = torch.tensor(kl_weight)
        if kl_weight > 0:
            total = total + kl_weight * terms["kl"]

        if c.depth_weight > 0:
            valid = (target["depth"] > 0) & (target["alpha"] > 0.5)
            terms["depth"] = scale_shift_invariant_depth_loss(pred["depth"], target["depth"], valid,
                                                              c.depth_gradient_weight)
            total = total + hinged_depth_loss(terms["depth"], c.depth_weight, c.depth_hinge)
        if c.alpha_weight > 0:
            terms["alpha"] = l1(pred["alpha"], target["alpha"])
            total = total + c.alpha_weight * terms["alpha"]

        if self.adversarial_active(step):
            with _frozen(self.discriminator) as disc:
                terms["g_adv"] = generator_adversarial_loss(disc(pred["rgb"]))
            total = total + c.disc_factor * c.disc_weight * terms["g_adv"]

        terms["total"] = total
        return total, {k: v.detach() for k, v in terms.items()}

    def discriminator_loss(self, fake_rgb: torch.Tensor, real_rgb: torch.Tensor,
                           paired_discriminator: nn.Module | None = None) -> tuple[torch.Tensor, dict]:
        """disc_factor × hinge loss of D on real vs rendered patches `(N, 3, P, P)` (renders detached).

        `paired_discriminator` lets the trainer pass a DDP wrapper of `PairedDiscriminator(self.discriminator)`.
        """
        pair = PairedDiscriminator(self.discriminator) if paired_discriminator is None else paired_discriminator
        logits_real, logits_fake = pair(real_rgb, fake_rgb.detach())
        loss = self.config.disc_factor * hinge_discriminator_loss(logits_real, logits_fake)
        return loss, {"d_loss": loss.detach(), "d_real": logits_real.detach().mean(),
                      "d_fake": logits_fake.detach().mean()}
