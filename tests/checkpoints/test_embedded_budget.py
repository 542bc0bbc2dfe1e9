"""The embedded default model (VAE `small`, `t23d-small`, `i23d-small`, tiny offline conditioners) fits the 24 MiB
that may be tracked in git when stored in half precision."""
import torch

from guided_diffusion.config import build_denoiser, preset
from ldm.registry import build_conditioner
from nsr.config import vae_config
from nsr.vae import TriplaneVAE

BUDGET_BYTES = 24 * 2**20


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_small_presets_fit_the_shipping_budget_in_half_precision():
    with torch.device("meta"):
        vae = TriplaneVAE(vae_config("small"))
        t23d = build_denoiser(preset("t23d-small").denoiser)
        i23d = build_denoiser(preset("i23d-small").denoiser)
    text = build_conditioner("offline-text", preset="tiny")
    image = build_conditioner("offline-image", preset="tiny")
    assert preset("t23d-small").denoiser.context_dim == text.context_dim
    # the offline image encoder's tokens are split in halves: one stands for CLIP, the other for DINOv2
    assert preset("i23d-small").denoiser.clip_dim + preset("i23d-small").denoiser.dino_dim == image.context_dim
    total = sum(_count(m) for m in (vae, t23d, i23d, text, image))
    assert 2 * total <= BUDGET_BYTES * 0.99, f"{2 * total / 2**20:.1f} MiB leaves no room for headers and configs"
