"""A tiny DiT memorises a handful of latents under fixed random conditions; sampling under a condition returns the
latent that condition was trained on (the conditioners are stand-in random embeddings)."""
import pytest
import torch

from guided_diffusion.config import I23DConfig, T23DConfig, build_denoiser
from guided_diffusion.ddpm import DDPM
from guided_diffusion.flow_matching import FlowMatching
from guided_diffusion.samplers import sample

N_LATENTS, SIZE = 4, 8


def _setup(kind, g):
    if kind == "t23d":
        model = build_denoiser(T23DConfig(depth=2, hidden_size=64, num_heads=2, latent_size=SIZE, context_dim=32))
        context = {"crossattn": torch.randn(N_LATENTS, 6, 32, generator=g)}
        return model, context, DDPM(), dict(sampler="euler_edm", num_steps=50), 400
    model = build_denoiser(I23DConfig(depth=2, hidden_size=64, num_heads=2, latent_size=SIZE, clip_dim=32,
                                      dino_dim=32, pooled_dim=32))
    context = {"crossattn": torch.randn(N_LATENTS, 6, 64, generator=g),
               "vector": torch.randn(N_LATENTS, 32, generator=g)}
    return model, context, FlowMatching(), dict(sampler="heun", num_steps=20), 300


def _repeat(context, times):
    return {k: v.repeat(times, *[1] * (v.dim() - 1)) for k, v in context.items()}


@pytest.mark.parametrize("kind", ["t23d", "i23d"])
def test_tiny_dit_memorises_and_samples_its_latent_back(kind):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(N_LATENTS, 12, SIZE, SIZE, generator=g)
    model, context, process, sampling, steps = _setup(kind, g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    batch, batch_context = latents.repeat(4, 1, 1, 1), _repeat(context, 4)
    for _ in range(steps):
        loss = process.loss(model, batch, batch_context, generator=g).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    noise = torch.randn(2 * N_LATENTS, 12, SIZE, SIZE, generator=g)
    out = sample(model, process, noise, _repeat(context, 2), **sampling)
    distances = torch.cdist(out.flatten(1), latents.flatten(1))
    own = torch.arange(N_LATENTS).repeat(2)
    assert distances.argmin(1).tolist() == own.tolist()
    others = distances.masked_fill(torch.nn.functional.one_hot(own, N_LATENTS).bool(), float("inf")).amin(1)
    assert torch.all(distances[torch.arange(2 * N_LATENTS), own] < 0.75 * others)
