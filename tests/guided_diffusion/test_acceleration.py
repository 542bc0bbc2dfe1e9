"""Denoiser accelerations: mode checks, the eager fallback, and (on CUDA) graphs that reproduce eager."""
import pytest
import torch
from torch import nn

from guided_diffusion.acceleration import Acceleration, CUDAGraphForward, GuardedForward, accelerate
from guided_diffusion.config import build_denoiser, preset


class Affine(nn.Module):
    """A denoiser-shaped module: (x, t, context) → x·w + t + mean(context)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))

    def forward(self, x, t, context):
        return x * self.w + t[:, None, None, None] + context["c"].mean()


def _inputs(device="cpu", batch=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 8, 8, generator=g).to(device)
    return x, torch.rand(batch, generator=g).to(device), {"c": torch.randn(batch, 3, generator=g).to(device)}


def test_eager_is_the_module_itself_and_modes_are_checked():
    model = Affine()
    assert accelerate(model, "eager", "cpu") is model
    assert [a.value for a in Acceleration] == ["eager", "cudagraphs", "reduce-overhead"]
    with pytest.raises(ValueError, match=r"^unknown --compile mode 'fast'; choose from eager, cudagraphs, "
                                         r"reduce-overhead$"):
        accelerate(model, "fast", "cpu")
    with pytest.raises(ValueError, match=r"^--compile cudagraphs needs a CUDA device, not cpu; use --compile eager "
                                         r"or reduce-overhead$"):
        accelerate(model, "cudagraphs", "cpu")
    assert isinstance(accelerate(model, "reduce-overhead", "cpu"), GuardedForward)


def test_failing_build_falls_back_to_eager_once_and_says_why(capsys):
    model = Affine()
    builds = []

    def broken():
        builds.append(1)
        raise RuntimeError("no compiler here\nsecond line")

    forward = GuardedForward(broken, model)
    x, t, c = _inputs()
    torch.testing.assert_close(forward(x, t, c), model(x, t, c), rtol=0, atol=0)
    forward(x, t, c)
    assert builds == [1] and forward.fallback == "RuntimeError: no compiler here"
    assert capsys.readouterr().err.count("falling back to eager (RuntimeError: no compiler here)") == 1


def test_pipeline_records_the_acceleration(tiny_pipeline_dir):
    from guided_diffusion.pipeline import Pipeline

    pipeline = Pipeline.from_checkpoint(tiny_pipeline_dir, "t23d", "cpu")
    assert pipeline.acceleration is Acceleration.EAGER and pipeline.denoiser is pipeline.models.denoiser
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Pipeline.from_checkpoint(tiny_pipeline_dir, "t23d", "cpu", acceleration="cudagraphs")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_reproduce_eager_per_shape():
    torch.manual_seed(0)
    stage2 = preset("t23d-tiny")
    model = build_denoiser(stage2.denoiser).cuda().eval()
    for p in model.parameters():  # fresh DiTs zero their output layers; make the output depend on the input
        p.data.normal_(0, 0.02)
    graphed = CUDAGraphForward(model)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for batch in (2, 4, 2):
            x = torch.randn(batch, *model_latent_shape(stage2), device="cuda")
            t = torch.rand(batch, device="cuda") * 999
            context = {k: torch.randn(batch, *v.shape[1:], device="cuda")
                       for k, v in example_context(stage2, batch).items()}
            torch.testing.assert_close(graphed(x, t, context), model(x, t, context), rtol=0, atol=0)
    assert len(graphed.graphs) == 2


def model_latent_shape(stage2) -> tuple[int, int, int]:
    d = stage2.denoiser
    return (d.planes * d.latent_channels, d.latent_size, d.latent_size)


def example_context(stage2, batch: int) -> dict[str, torch.Tensor]:
    d = stage2.denoiser
    return {"crossattn": torch.zeros(batch, 77, d.context_dim)}
