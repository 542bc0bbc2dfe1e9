"""Stage-1 VAE training losses (spec §2.9)."""
from nsr.losses.depth import align_scale_and_shift, hinged_depth_loss, scale_shift_invariant_depth_loss
from nsr.losses.discriminator import (
    NLayerDiscriminator,
    PairedDiscriminator,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)
from nsr.losses.kl import KLSchedule
from nsr.losses.perceptual import LPIPSLoss, build_lpips
from nsr.losses.photometric import l1, masked_mse, mse
from nsr.losses.vae_loss import VAELoss, VAELossConfig

__all__ = [
    "KLSchedule", "LPIPSLoss", "NLayerDiscriminator", "PairedDiscriminator", "VAELoss", "VAELossConfig",
    "align_scale_and_shift", "build_lpips", "generator_adversarial_loss", "hinge_discriminator_loss",
    "hinged_depth_loss", "l1", "masked_mse", "mse", "scale_shift_invariant_depth_loss",
]
