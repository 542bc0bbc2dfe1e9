"""Speed and memory benchmark: text/image-to-3D end to end, decode, rendering, mesh extraction and training.

    python scripts/benchmark.py --out bench.json --device cuda --preset-size release --compile reduce-overhead
    python scripts/benchmark.py --out cpu.json --device cpu --preset-size small --stages t23d --batch-sizes 1 \\
        --samplers fast

Every number is the median of `--repeats` runs after `--warmup` runs, timed with `torch.cuda.synchronize()`;
peak GPU memory is `torch.cuda.max_memory_allocated()` over the measured runs (reset per configuration; it includes
the weights resident at the time, reported as `resident_gib`). On a CPU only wall time is reported.

Preset sizes: `release` builds the released architectures (objaverse VAE, DiT-L/2 T23D and I23D denoisers) on the
meta device and fills them on the target device with the golden fixture's random recipe; the pretrained CLIP /
DINOv2 conditioners are not available offline, so their exact architectures are built with random weights
(HF CLIPTextModel from a ViT-L/14 config with open_clip's bundled tokenizer; open_clip ViT-L/14 + timm DINOv2-L
reg4). `small` loads the embedded checkpoint `checkpoints/procedural`. `tiny` builds CPU-test-sized random nets.

Random weights decode to a noise field with no object, whose iso-surface would have millions of faces; for `release`
and `tiny` the mesh is therefore extracted from the VAE's field plus an analytic sphere in σ (the network is still
queried at every grid point), so marching cubes and the GLB see an object-like surface. The JSON is rewritten
atomically after every configuration, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

import torch
from torch import nn

from checkpoints.loader import LoadedModels, load_models
from guided_diffusion.acceleration import Acceleration, GuardedForward, accelerate
from guided_diffusion.config import Process, build_denoiser, build_process, preset
from guided_diffusion.pipeline import GenerationSettings, Pipeline, samplers_for, triplane_mesh, turntable_frames
from guided_diffusion.trainer import Stage2Model
from ldm.base import Conditioner, FrozenConditioner
from ldm.image import CLIPDinoImageConditioner
from ldm.registry import build_conditioner
from ldm.text import CLIPTextConditioner
from nsr.cameras import turntable
from nsr.config import vae_config
from nsr.mesh import DEFAULT_CHUNK, EmptyMeshError, save_mesh
from nsr.rendering.field_mlp import EqualizedLinear
from nsr.rendering.patches import PatchLayout
from nsr.trainer import VAETrainingForward, encoder_resolution, preset_train_config, vae_param_groups
from nsr.vae import TriplaneVAE
from utils.checkpoint import atomic_write_json
from utils.training import autocast, build_adamw, clip_gradients

# The order of `--stages all`: the quick stages first, so that a time budget cuts the long generation sweeps last.
STAGES = ("vae-decode", "render", "mesh", "train-dit", "train-vae", "t23d", "i23d")
PRESET_SIZES = ("release", "small", "tiny")
VARIANTS = tuple(a.value for a in Acceleration if a is not Acceleration.EAGER)
# Sampler groups per diffusion process: the released samplers and the fast ones, with their step counts.
SAMPLER_GROUPS = {
    "released": {Process.DDPM: [("euler_edm", 250)], Process.FLOW_MATCHING: [("dopri5", 250)]},
    "fast": {Process.DDPM: [("dpm_solver_pp", 25)], Process.FLOW_MATCHING: [("heun", 25), ("euler", 50)]},
}
VAE_PRESETS = {"release": "objaverse", "small": "small", "tiny": "tiny"}  # also the VAE training recipe names
# Stage-2 presets per size, with the context widths that match the size's conditioners.
STAGE2_PRESETS = {
    "release": {"t23d": ("t23d", {}), "i23d": ("i23d", {})},
    "small": {"t23d": ("t23d-small", {}), "i23d": ("i23d-small", {})},
    "tiny": {"t23d": ("t23d-tiny", {"context_dim": 128}),
             "i23d": ("i23d-tiny", {"clip_dim": 64, "dino_dim": 64, "pooled_dim": 128})},
}
TRAIN_BATCH = {"release": {"vae": 2, "dit": 16}, "small": {"vae": 16, "dit": 32}, "tiny": {"vae": 1, "dit": 2}}
PROMPTS = ("a red chair with a blue seat", "a tall green table", "a small yellow lamp", "a white mug with a handle")
# The analytic object added to random fields for meshing: σ = field + level + slope·(radius − |p|). With the random
# fields' σ within about ±1, the surface is a sphere of radius 0.3 with bumps of about ±0.02.
PRIOR_RADIUS, PRIOR_SLOPE = 0.3, 50.0
GIB = 2.0**30
# Budget a first torch.compile of a release-size denoiser needs (on the order of a minute, plus its runs): with less
# left, the configuration is skipped rather than started, so the run ends near its budget.
COMPILE_RESERVE_S = 150.0


# ---------------------------------------------------------------------------------------------------------------
# Timing, memory, budget, report


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: list[dict]) -> dict:
    """Per-key medians of the measured runs: counts stay integers (the lower median), times are rounded."""
    out = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        out[key] = statistics.median_low(values) if isinstance(value, int) else round(median(values), 5)
    return out


def autocast_for(device: torch.device, dtype: str):
    """The denoiser's precision: bf16 autocast on CUDA as the pipeline runs it, or autocast off for fp32. On a CPU
    the pipeline never autocasts."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16")


class Memory:
    """Peak allocated GPU memory since `reset`, and what was resident at the reset (nothing on a CPU)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resident: float | None = None

    def reset(self) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.resident = torch.cuda.memory_allocated(self.device) / GIB

    def report(self) -> dict:
        if self.device.type != "cuda":
            return {}
        return {"peak_memory_gib": round(torch.cuda.max_memory_allocated(self.device) / GIB, 3),
                "resident_gib": round(self.resident, 3)}


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.seconds > 0 and self.elapsed() >= self.seconds

    def left(self) -> float:
        return self.seconds - self.elapsed() if self.seconds > 0 else math.inf

    def reason(self) -> str:
        return f"time budget of {self.seconds:g} s spent ({self.elapsed():.0f} s elapsed)"


class Report:
    """The JSON document, rewritten atomically after every result."""

    def __init__(self, path: Path, meta: dict, budget: Budget):
        self.path = path
        self.budget = budget
        self.data = {"meta": meta, "status": "running", "models": {}, "results": []}
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.budget.elapsed(), 2)
        atomic_write_json(self.path, self.data)

    def model(self, name: str, info: dict) -> None:
        self.data["models"][name] = info
        self.save()

    def add(self, stage: str, name: str, config: dict, status: str, metrics: dict | None = None,
            headline: float | None = None, reason: str | None = None) -> None:
        entry = {"stage": stage, "name": name, "config": config, "status": status, "reason": reason,
                 "metrics": metrics or {}, "headline_s": headline, "at_s": round(self.budget.elapsed(), 2)}
        self.data["results"].append(entry)
        self.save()
        line = f"{name}: {status}" + (f" {headline:.4g} s" if headline is not None else "")
        print(line + (f" ({reason})" if reason else ""), flush=True)


def effective_dtype(args: argparse.Namespace, device: torch.device) -> str:
    """What actually runs: the pipeline never autocasts on a CPU, and CPU training stays fp32."""
    return args.dtype if device.type == "cuda" else "fp32"


def machine_meta(args: argparse.Namespace, argv: list[str], device: torch.device) -> dict:
    gpu = {}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        gpu = {"gpu_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / GIB, 1),
               "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    else:
        name = f"{os.cpu_count()}-core CPU ({platform.machine()})"
    return {
        "command": shlex.join(["python", "scripts/benchmark.py", *argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        **gpu,
        "dtype": effective_dtype(args, device),
        "preset_size": args.preset_size,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }


# ---------------------------------------------------------------------------------------------------------------
# Models


@torch.no_grad()
def fill_like_golden_(module: nn.Module, seed: int) -> None:
    """Random weights by the golden fixture's recipe (shared/reference/golden/fill_weights.py): normalisation weights
    1 + 0.02·N, Linear/Conv weights N/√fan-in, equalised-lr weights N (they scale by 1/√in at run time), everything
    else (biases, embeddings, float buffers) 0.02·N. Unlike the default init, which zeroes the adaLN and output
    layers, every layer then acts: the denoiser's output depends on its input (so dopri5 takes a realistic number of
    steps) and the decoded field varies in space. Drawn on the module's device, so filling costs no host time."""
    device = next(module.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    for m in module.modules():
        tensors = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
        for name, t in tensors:
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=generator, device=device, dtype=torch.float32)
            if name == "weight" and "Norm" in type(m).__name__:
                r = 1.0 + 0.02 * r
            elif name == "weight" and isinstance(m, EqualizedLinear):
                pass
            elif name == "weight" and isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                r = r / math.sqrt(math.prod(t.shape[1:]))
            else:
                r = 0.02 * r
            t.copy_(r)


def random_network(factory: Callable[[], nn.Module], device: torch.device, seed: int) -> nn.Module:
    """Built on the meta device (no default init), materialised on `device` and filled there."""
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device=device)
    fill_like_golden_(module, seed)
    return module.eval()


class RandomCLIPText(CLIPTextConditioner):
    """The released text conditioner's architecture (CLIP ViT-L/14 text transformer, 77 tokens) with random weights.
    Tokens come from open_clip's bundled copy of the same BPE, padded with EOT as CLIP-L's tokenizer pads."""

    def __init__(self):
        import open_clip
        from transformers import CLIPTextConfig, CLIPTextModel

        FrozenConditioner.__init__(self, context_dim=768, vector_dim=768, num_tokens=77)
        config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
                                hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
        self.source = "random-weights"
        self.max_length = 77
        self.bpe = open_clip.tokenizer.SimpleTokenizer(context_length=77)
        self.text_model = CLIPTextModel(config)
        self.freeze()

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        ids = self.bpe(prompts)
        return torch.where(ids == 0, torch.full_like(ids, self.bpe.eot_token_id), ids)


class RandomCLIPDinoImage(CLIPDinoImageConditioner):
    """The released image conditioner's architectures (open_clip ViT-L/14 QuickGELU + timm DINOv2-L/14 reg4 at 224)
    with random weights; `forward` (preprocessing included) is the real conditioner's."""

    def __init__(self):
        import open_clip
        import timm

        config = {k: v for k, v in open_clip.get_model_config("ViT-L-14").items() if k != "custom_text"}
        visual = open_clip.CLIP(**config, quick_gelu=True).visual
        visual.output_tokens = True
        dino = timm.create_model("vit_large_patch14_reg4_dinov2", pretrained=False, img_size=224, num_classes=0)
        FrozenConditioner.__init__(self, context_dim=visual.transformer.width + dino.embed_dim,
                                   vector_dim=visual.output_dim, num_tokens=256)
        self.clip_visual = visual
        self.dino = dino
        self.settings = {"clip_weights": "random", "dino_weights": "random", "clip_arch": "ViT-L-14",
                         "clip_quick_gelu": True, "dino_arch": "vit_large_patch14_reg4_dinov2", "image_size": 224,
                         "antialias": True}
        self.freeze()


class RandomContextConditioner(Conditioner):
    """Random context of the released conditioner's shapes, the stand-in when its architecture cannot be built
    (a library missing on the machine): the denoiser is then timed all the same, with conditioning left out."""

    name = "random-context"
    trainable = False

    def __init__(self, task: str, device: torch.device):
        dims = (77, 768, 768) if task == "t23d" else (256, 2048, 768)
        super().__init__(context_dim=dims[1], vector_dim=dims[2], num_tokens=dims[0])
        self.target = device

    def forward(self, inputs) -> dict[str, torch.Tensor]:
        batch = len(inputs)
        return {"crossattn": torch.randn(batch, self.num_tokens, self.context_dim, device=self.target),
                "vector": torch.randn(batch, self.vector_dim, device=self.target)}

    def null_condition(self, batch_size: int, device=None) -> dict[str, torch.Tensor]:
        return super().null_condition(batch_size, self.target if device is None else device)

    def config(self) -> dict:
        return {}


def stage2_config(size: str, task: str):
    name, widths = STAGE2_PRESETS[size][task]
    stage2 = preset(name)
    stage2.denoiser = dataclasses.replace(stage2.denoiser, **widths)
    return stage2


def build_conditioner_for(size: str, task: str, device: torch.device) -> Conditioner:
    if size == "release":
        try:
            # built on the device: the libraries' own init then runs there, and their integer buffers stay valid
            with torch.device(device):
                conditioner = RandomCLIPText() if task == "t23d" else RandomCLIPDinoImage()
        except Exception as err:  # any failure to build a third-party architecture: time the rest without it
            print(f"warning: {task} conditioner architecture not built ({type(err).__name__}: {err}); using random "
                  f"context tensors", file=sys.stderr)
            return RandomContextConditioner(task, device)
    else:
        conditioner = build_conditioner("offline-text" if task == "t23d" else "offline-image", preset="tiny")
    return conditioner.to(device).eval()


def count_params(module: nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


class Models:
    """Builds the networks of one preset size on first use. The VAE is shared by every inference stage; one task's
    denoiser and conditioner are resident at a time, so each stage's peak memory holds only what it needs."""

    def __init__(self, size: str, device: torch.device, report: Report):
        self.size, self.device, self.report = size, device, report
        self._vae: TriplaneVAE | None = None
        self._task: tuple[str, LoadedModels] | None = None

    def _timed_build(self, name: str, build: Callable[[], object], describe: Callable[[object], dict]):
        sync(self.device)
        t0 = time.perf_counter()
        built = build()
        sync(self.device)
        self.report.model(name, {"build_s": round(time.perf_counter() - t0, 3), **describe(built)})
        return built

    @property
    def vae(self) -> TriplaneVAE:
        if self._vae is None:
            if self.size == "small":
                build = lambda: load_models(None, "t23d", self.device).vae
                source = "checkpoints/procedural"
            else:
                preset_name = VAE_PRESETS[self.size]
                build = lambda: random_network(lambda: TriplaneVAE(vae_config(preset_name)), self.device, 1)
                source = f"{preset_name} preset, golden-style random fill"
            self._vae = self._timed_build("vae", build, lambda m: {"params_m": count_params(m), "source": source})
        return self._vae

    def task(self, task: str) -> LoadedModels:
        if self._task is not None and self._task[0] == task:
            return self._task[1]
        self.release_task()
        vae = self.vae
        if self.size == "small":
            def build():
                loaded = load_models(None, task, self.device)
                return dataclasses.replace(loaded, vae=vae)

            source = "checkpoints/procedural"
        else:
            def build():
                stage2 = stage2_config(self.size, task)
                denoiser = random_network(lambda: build_denoiser(stage2.denoiser), self.device, 2)
                conditioner = build_conditioner_for(self.size, task, self.device)
                return LoadedModels(task, vae, denoiser, conditioner, stage2, f"random {self.size}")

            source = f"{stage2_config(self.size, task).name} preset, golden-style random fill; conditioner " + (
                "architecture with random weights" if self.size == "release" else "offline, default init")
        loaded = self._timed_build(task, build, lambda m: {
            "denoiser_params_m": count_params(m.denoiser), "conditioner_params_m": count_params(m.conditioner),
            "conditioner": type(m.conditioner).__name__, "source": source})
        self._task = (task, loaded)
        return loaded

    def release_task(self) -> None:
        self._task = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def release_all(self) -> None:
        self._vae = None
        self.release_task()


# ---------------------------------------------------------------------------------------------------------------
# Denoiser variants and probes


class DenoiserProbe:
    """Stands in for the denoiser inside the pipeline: counts forward calls and the batch rows they process (with
    CFG one call carries the conditional and unconditional rows), under the benchmark's autocast."""

    def __init__(self, forward: Callable, device: torch.device, dtype: str):
        self.forward, self.device, self.dtype = forward, device, dtype
        self.calls = self.rows = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: dict) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        with autocast_for(self.device, self.dtype):
            return self.forward(x, t, context)


class TimedConditioner:
    """Stands in for the conditioner inside the pipeline and times its calls, synchronised, so conditioning can be
    told apart from sampling."""

    def __init__(self, conditioner: Conditioner, device: torch.device):
        self.conditioner, self.device = conditioner, device
        self.seconds = 0.0

    def __call__(self, inputs):
        sync(self.device)
        t0 = time.perf_counter()
        out = self.conditioner(inputs)
        sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out

    def null_condition(self, batch_size: int, device=None) -> dict:
        return self.conditioner.null_condition(batch_size, device)


def count_host_syncs(device: torch.device, fn: Callable[[], object]) -> tuple[object, int | None]:
    """Run `fn` counting the operations that block the host on the GPU (CUDA's sync debug mode); None on a CPU."""
    if device.type != "cuda":
        return fn(), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return out, sum("synchroniz" in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------------------------
# Inputs and meshing


def image_inputs(count: int) -> list[torch.Tensor]:
    """Object-like conditioning images (3, 256, 256) in [-1, 1]: a coloured disc on white, one colour per item."""
    axis = torch.linspace(-1, 1, 256)
    disc = (axis[None, :] ** 2 + axis[:, None] ** 2 < 0.4).float()
    images = []
    for i in range(count):
        colour = torch.tensor([math.cos(i), math.sin(i), math.cos(2 * i)]) * 0.8
        images.append(torch.ones(3, 256, 256) * (1 - disc) + colour[:, None, None] * disc)
    return images


class ObjectPriorField:
    """A VAE whose density is the field plus an analytic sphere (see the module docstring); used in place of the VAE
    by `triplane_mesh` for random-weight presets."""

    def __init__(self, vae: TriplaneVAE, level: float):
        self.vae, self.level, self.config = vae, level, vae.config

    def query(self, triplane: torch.Tensor, points: torch.Tensor, chunk: int | None = 65536) -> dict:
        out = self.vae.query(triplane, points, chunk=chunk)
        radius = points.float().norm(dim=-1, keepdim=True)
        return {"sigma": out["sigma"] + self.level + PRIOR_SLOPE * (PRIOR_RADIUS - radius), "rgb": out["rgb"]}


class Bench:
    def __init__(self, args: argparse.Namespace, device: torch.device, report: Report, budget: Budget):
        self.args, self.device, self.report, self.budget = args, device, report, budget
        self.models = Models(args.preset_size, device, report)
        self.memory = Memory(device)
        self.settings = GenerationSettings(mesh_resolution=args.mesh_resolution, mesh_chunk=args.mesh_chunks[0])
        self.forwards: dict[tuple[str, str], Callable] = {}
        self.eager_latents: dict[tuple, torch.Tensor] = {}  # what each optimised variant is compared with
        self.scratch = tempfile.TemporaryDirectory(prefix="ln3diff-bench-")  # the GLBs written while timing
        self.workdir = Path(self.scratch.name)
        self._latent: torch.Tensor | None = None

    # -- shared helpers -----------------------------------------------------------------------------------------

    def mesh_field(self, vae: TriplaneVAE):
        return vae if self.args.preset_size == "small" else ObjectPriorField(vae, self.settings.mesh_level)

    def mesh(self, vae: TriplaneVAE, triplane: torch.Tensor, chunk: int):
        s = self.settings
        return triplane_mesh(self.mesh_field(vae), triplane, s.mesh_resolution, s.mesh_level, chunk)

    def reference_latent(self) -> torch.Tensor:
        """One VAE latent for the decode, render and mesh stages: a sampled object for the trained checkpoint, a
        standard normal draw for random weights (whose samples are no better)."""
        if self._latent is None:
            if self.args.preset_size == "small":
                pipeline = Pipeline(self.models.task("t23d"), self.device)
                self._latent = pipeline.sample_latents([PROMPTS[0]], GenerationSettings())
            else:
                shape = self.models.vae.config.latent_shape
                self._latent = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)).to(self.device)
        return self._latent

    def measure(self, fn: Callable[[], object], warmup: int | None = None,
                repeats: int | None = None) -> tuple[list, dict]:
        """Run `fn` `warmup` times (default --warmup), then up to `repeats` times (default --repeats; fewer once the
        budget is spent, at least one); returns the measured runs and {first_run_s, repeats, memory}. Peak memory
        is reset before the measured runs."""
        warmup = self.args.warmup if warmup is None else warmup
        repeats = self.args.repeats if repeats is None else repeats
        info = {}
        for i in range(warmup):
            t0 = time.perf_counter()
            fn()
            if i == 0:
                info["first_run_s"] = round(time.perf_counter() - t0, 4)
        self.memory.reset()
        runs = []
        for _ in range(repeats):
            if runs and self.budget.spent():
                info["cut_short"] = self.budget.reason()
                break
            runs.append(fn())
        info["repeats"] = len(runs)
        return runs, {**info, **self.memory.report()}

    def run_config(self, stage: str, name: str, config: dict, body: Callable[[], tuple[dict, float]]) -> None:
        """Run one configuration unless the budget is spent; record its metrics, or the error that stopped it."""
        if self.budget.spent():
            self.report.add(stage, name, config, "skipped", reason=self.budget.reason())
            return
        try:
            metrics, headline = body()
        except Exception as err:  # one failing configuration (e.g. out of memory) must not end the run
            self.report.add(stage, name, config, "error", reason=f"{type(err).__name__}: {err}"[:500])
        else:
            self.report.add(stage, name, config, "ok", metrics, headline)
        finally:
            if self.device.type == "cuda":  # what the configuration built (training models, graphs) is garbage now
                torch.cuda.empty_cache()

    # -- generation ---------------------------------------------------------------------------------------------

    def forward_for(self, task: str, variant: str, denoiser: nn.Module) -> Callable:
        key = (task, variant)
        if key not in self.forwards:
            self.forwards[key] = accelerate(denoiser, variant, self.device)
        return self.forwards[key]

    def samplers(self, models: LoadedModels) -> list[tuple[str, int | None]]:
        process = models.stage2.diffusion.process
        valid = samplers_for(models.stage2.diffusion)
        chosen = []
        for token in self.args.samplers:
            if token in SAMPLER_GROUPS:
                chosen += SAMPLER_GROUPS[token][process]
            else:
                name, _, steps = token.partition(":")
                if name in valid:
                    chosen.append((name, int(steps) if steps else None))
        return list(dict.fromkeys(chosen))

    def drop_forwards(self, keep_task: str | None = None) -> None:
        """Forget compiled / graphed denoisers of other tasks, so their models and graph memory can be freed."""
        dropped = [k for k in self.forwards if k[0] != keep_task]
        for key in dropped:
            del self.forwards[key]
        if any(variant == "reduce-overhead" for _, variant in dropped):
            torch._dynamo.reset()

    def generation(self, task: str) -> None:
        self.drop_forwards(keep_task=task)
        models = self.models.task(task)
        conditions = (list(PROMPTS) if task == "t23d" else image_inputs(len(PROMPTS)))
        samplers = self.samplers(models)
        if not samplers:
            self.report.add(task, task, {}, "skipped", reason=f"no sampler of --samplers applies to {task}")
            return
        for sampler, steps in samplers:
            for batch in self.args.batch_sizes:
                for variant in self.args.variants:
                    inputs = [conditions[i % len(conditions)] for i in range(batch)]
                    settings = dataclasses.replace(self.settings, sampler=sampler, steps=steps, batch_size=batch)
                    config = {"sampler": sampler, "steps": steps or models.stage2.diffusion.num_steps,
                              "cfg_scale": models.stage2.diffusion.guidance_scale, "batch_size": batch,
                              "variant": variant, "mesh_resolution": settings.mesh_resolution,
                              "mesh_chunk": settings.mesh_chunk}
                    name = f"{task} {sampler}x{config['steps']} b{batch} {variant}"
                    if variant == "cudagraphs" and self.device.type != "cuda":
                        self.report.add(task, name, config, "skipped", reason="CUDA graphs need a CUDA device")
                        continue
                    compiles = variant == "reduce-overhead" and (task, variant) not in self.forwards
                    if compiles and not self.budget.spent() and self.budget.left() < COMPILE_RESERVE_S:
                        self.report.add(task, name, config, "skipped", reason=(
                            f"{self.budget.left():.0f} s of the time budget left, too little to compile"))
                        continue
                    self.run_config(task, name, config,
                                    functools.partial(self._generation, task, models, inputs, settings, variant))

    def _generation(self, task: str, models: LoadedModels, inputs: list, settings: GenerationSettings,
                    variant: str) -> tuple[dict, float]:
        forward = self.forward_for(task, variant, models.denoiser)
        probe = DenoiserProbe(forward, self.device, self.args.dtype)
        conditioner = TimedConditioner(models.conditioner, self.device)
        pipeline = Pipeline(dataclasses.replace(models, denoiser=probe, conditioner=conditioner), self.device)
        batch = len(inputs)
        syncs: list[int | None] = []
        last: dict[str, torch.Tensor] = {}

        def once() -> dict:
            probe.calls = probe.rows = 0
            conditioner.seconds = 0.0
            sync(self.device)
            t0 = time.perf_counter()
            if variant == "eager" and not syncs and self.args.warmup > 0:
                latents, count = count_host_syncs(self.device, lambda: pipeline.sample_latents(inputs, settings))
                syncs.append(count)
            else:
                latents = pipeline.sample_latents(inputs, settings)
            last["latents"] = latents
            sync(self.device)
            t1 = time.perf_counter()
            triplanes = pipeline.decode(latents)
            sync(self.device)
            t2 = time.perf_counter()
            parts = {"mesh_s": 0.0, "mesh_density_s": 0.0, "mesh_marching_cubes_s": 0.0, "mesh_color_s": 0.0,
                     "mesh_finish_s": 0.0, "glb_write_s": 0.0}
            faces, empty = [], 0
            for i in range(batch):
                ta = time.perf_counter()
                try:
                    mesh = self.mesh(models.vae, triplanes[i:i + 1], settings.mesh_chunk)
                except EmptyMeshError:
                    parts["mesh_s"] += time.perf_counter() - ta
                    empty += 1
                    continue
                tb = time.perf_counter()
                save_mesh(mesh, self.workdir / f"{task}-{i}.glb", overwrite=True)
                parts["glb_write_s"] += time.perf_counter() - tb
                parts["mesh_s"] += tb - ta
                for key in ("density", "marching_cubes", "color", "finish"):
                    parts[f"mesh_{key}_s"] += mesh.stats.timings[f"{key}_s"]
                faces.append(mesh.stats.faces)
            total = time.perf_counter() - t0
            return {"conditioning_s": conditioner.seconds, "sampling_s": t1 - t0 - conditioner.seconds,
                    "decode_s": t2 - t1, **parts, "total_s": total, "per_object_s": total / batch,
                    "denoiser_calls": probe.calls, "network_evaluations_per_object": probe.rows // batch,
                    "mesh_faces": statistics.median_low(faces) if faces else 0, "empty_meshes": empty}

        runs, info = self.measure(once)
        metrics = summarise(runs)
        metrics["per_object_s_runs"] = [round(r["per_object_s"], 4) for r in runs]
        metrics["denoiser_calls_runs"] = [r["denoiser_calls"] for r in runs]
        if syncs and syncs[0] is not None:
            metrics["host_syncs_per_sampling_run"] = syncs[0]
        if isinstance(forward, GuardedForward) and forward.fallback:
            metrics["fallback_to_eager"] = forward.fallback
        # same seeds, so an optimised variant should reproduce eager's latents up to its arithmetic differences
        latents = last["latents"].float().cpu()
        key = (task, settings.sampler, settings.steps, batch)
        if variant == "eager":
            self.eager_latents[key] = latents
        elif key in self.eager_latents:
            reference = self.eager_latents[key]
            metrics["latent_rel_diff_vs_eager"] = round(float((latents - reference).norm() / reference.norm()), 6)
        return {**metrics, **info}, metrics["per_object_s"]

    # -- VAE decode, rendering, mesh ----------------------------------------------------------------------------

    def vae_decode(self) -> None:
        vae = self.models.vae
        for batch in self.args.batch_sizes:
            for precision in ("fp32", "bf16"):
                if precision == "bf16" and self.device.type != "cuda":
                    continue
                latents = self.reference_latent().expand(batch, -1, -1, -1).contiguous()
                config = {"batch_size": batch, "precision": precision}
                name = f"vae-decode b{batch} {precision}" + (" (pipeline)" if precision == "fp32" else "")

                def body(latents=latents, batch=batch, precision=precision):
                    def once():
                        sync(self.device)
                        t0 = time.perf_counter()
                        with torch.no_grad(), autocast(self.device, precision == "bf16"):
                            vae.decode(latents)
                        sync(self.device)
                        return time.perf_counter() - t0

                    runs, info = self.measure(once)
                    seconds = median(runs)
                    return {"decode_s": round(seconds, 5), "per_object_s": round(seconds / batch, 5), **info}, seconds

                self.run_config("vae-decode", name, config, body)

    def render(self) -> None:
        vae = self.models.vae
        triplane = self.decode_reference()
        res, views = self.args.render_resolution, self.args.render_views
        camera = turntable(1).to(self.device)[None]

        def one_view():
            def once():
                sync(self.device)
                t0 = time.perf_counter()
                with torch.no_grad():
                    vae.render(triplane, camera, res, deterministic=True)
                sync(self.device)
                return time.perf_counter() - t0

            runs, info = self.measure(once)
            return {"view_s": round(median(runs), 5), **info}, median(runs)

        def video():
            def once():
                t0 = time.perf_counter()
                turntable_frames(vae, triplane, views, res)  # ends with host copies of every frame
                return time.perf_counter() - t0

            runs, info = self.measure(once)
            return {"turntable_s": round(median(runs), 5), "per_view_s": round(median(runs) / views, 5), **info}, \
                median(runs)

        samples = vae.config.renderer.depth_samples, vae.config.renderer.importance_samples
        self.run_config("render", f"render 1 view {res}px", {"resolution": res, "samples": samples}, one_view)
        self.run_config("render", f"render turntable {views}x{res}px (pipeline frames)",
                        {"resolution": res, "views": views, "samples": samples}, video)

    def decode_reference(self) -> torch.Tensor:
        with torch.no_grad():
            return self.models.vae.decode(self.reference_latent())

    def mesh_stage(self) -> None:
        vae = self.models.vae
        triplane = self.decode_reference()
        res = self.args.mesh_resolution
        for chunk in self.args.mesh_chunks:
            config = {"resolution": res, "chunk": chunk, "level": self.settings.mesh_level,
                      "object_prior": self.args.preset_size != "small"}

            def body(chunk=chunk):
                def once():
                    t0 = time.perf_counter()
                    mesh = self.mesh(vae, triplane, chunk)
                    t1 = time.perf_counter()
                    path = save_mesh(mesh, self.workdir / "mesh.glb", overwrite=True)
                    return {**mesh.stats.timings, "extract_s": t1 - t0,
                            "glb_write_s": time.perf_counter() - t1, "faces": mesh.stats.faces,
                            "vertices": mesh.stats.vertices, "glb_mib": path.stat().st_size / 2**20}

                runs, info = self.measure(once)
                metrics = summarise(runs)
                return {**metrics, **info}, metrics["extract_s"] + metrics["glb_write_s"]

            self.run_config("mesh", f"mesh {res}^3 chunk {chunk}", config, body)

    # -- training -----------------------------------------------------------------------------------------------

    def train_steps(self, step: Callable[[], None], batch: int) -> tuple[dict, float]:
        def once():
            sync(self.device)
            t0 = time.perf_counter()
            step()
            sync(self.device)
            return time.perf_counter() - t0

        # one warm-up step at least: the first step allocates the optimiser state
        runs, info = self.measure(once, warmup=max(1, self.args.warmup), repeats=self.args.train_steps)
        seconds = median(runs)
        return {"step_s": round(seconds, 5), "samples_per_s": round(batch / seconds, 3), "batch_size": batch,
                "steps": info.pop("repeats"), **info}, seconds

    def train_dit(self) -> None:
        self.drop_forwards()
        self.models.release_all()
        for size in self.args.train_sizes:
            batch = self.args.train_batch_dit or TRAIN_BATCH[size]["dit"]
            for task in ("t23d", "i23d"):
                stage2 = stage2_config(size, task)
                config = {"preset": stage2.name, "batch_size": batch,
                          "dtype": effective_dtype(self.args, self.device),
                          "optimizer": f"AdamW(fused={self.device.type == 'cuda'})",
                          "conditioner": "precomputed random context (frozen CLIP not timed)" if size == "release"
                          else "offline, trained jointly"}
                self.run_config("train-dit", f"train-dit {stage2.name} b{batch}", config,
                                functools.partial(self._train_dit, size, task, stage2, batch))

    def _train_dit(self, size: str, task: str, stage2, batch: int) -> tuple[dict, float]:
        device = self.device
        denoiser = random_network(lambda: build_denoiser(stage2.denoiser), device, 3)
        trainable = size != "release"
        conditioner = build_conditioner_for(size, task, device) if trainable else None
        model = Stage2Model(denoiser, build_process(stage2.diffusion), conditioner,
                            stream_dropout=stage2.diffusion.condition_dropout if task == "i23d" else 0.0,
                            crossattn_split=getattr(stage2.denoiser, "clip_dim", None)).train()
        optimizer = build_adamw(model.parameters(), device, lr=1e-4, weight_decay=0.05)
        g = torch.Generator(device=device).manual_seed(0)
        latents = torch.randn(batch, 3 * stage2.denoiser.latent_channels, stage2.denoiser.latent_size,
                              stage2.denoiser.latent_size, generator=g, device=device)
        if trainable:
            condition = [PROMPTS[i % len(PROMPTS)] for i in range(batch)] if task == "t23d" else \
                torch.stack(image_inputs(batch)).to(device)
        elif task == "t23d":
            width = stage2.denoiser.context_dim
            condition = {"crossattn": torch.randn(batch, 77, width, generator=g, device=device),
                         "vector": torch.randn(batch, width, generator=g, device=device)}
        else:
            d = stage2.denoiser
            condition = {"crossattn": torch.randn(batch, 256, d.clip_dim + d.dino_dim, generator=g, device=device),
                         "vector": torch.randn(batch, d.pooled_dim, generator=g, device=device)}

        def step():
            with autocast(device, self.args.dtype == "bf16"):
                loss = model(latents, condition).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model.parameters(), 5.0)
            optimizer.step()

        metrics, seconds = self.train_steps(step, batch)
        return {**metrics, "params_m": count_params(denoiser)}, seconds

    def train_vae(self) -> None:
        from nsr.rendering import triton_lookup

        self.drop_forwards()
        self.models.release_all()
        lookups = [x for x in self.args.vae_lookups
                   if x == "grid_sample" or (self.device.type == "cuda" and triton_lookup.available())]
        for size in self.args.train_sizes:
            batch = self.args.train_batch_vae or TRAIN_BATCH[size]["vae"]
            # LPIPS needs a pretrained backbone that is not available offline; every other term of the recipe is on
            cfg = preset_train_config(VAE_PRESETS[size], loss={"lpips_weight": 0.0})
            for lookup in lookups:
                config = {"recipe": VAE_PRESETS[size], "batch_size": batch, "triplane_lookup": lookup,
                          "tf32": self.args.train_tf32,
                          "dtype": effective_dtype(self.args, self.device), "render_resolution": cfg.render_resolution,
                          "patch_size": cfg.patch_size, "target_views": cfg.num_target_views,
                          "discriminator": cfg.loss.uses_discriminator, "lpips": False,
                          "optimizer": f"AdamW(fused={self.device.type == 'cuda'})"}
                name = f"train-vae {VAE_PRESETS[size]} b{batch} {lookup}"
                name += " tf32" * self.args.train_tf32
                previous = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = self.args.train_tf32  # as train_vae.py --tf32
                try:
                    self.run_config("train-vae", name, config,
                                    functools.partial(self._train_vae, cfg, batch, lookup == "fused", name))
                finally:  # the later stages measure what they would without it
                    torch.backends.cuda.matmul.allow_tf32 = previous

    def _train_vae(self, cfg, batch: int, fused_lookup: bool, name: str) -> tuple[dict, float]:
        from nsr.losses import VAELoss

        device = self.device
        vcfg = vae_config(cfg.preset, cfg.vae_overrides)
        vae = random_network(lambda: TriplaneVAE(vcfg), device, 4).train()
        vae.renderer.fused_lookup = fused_lookup
        forward = VAETrainingForward(vae)
        loss_fn = VAELoss(cfg.loss).to(device).train()
        optimizer = build_adamw(vae_param_groups(vae, cfg), device)
        disc_optimizer = None
        if loss_fn.discriminator is not None:
            disc_optimizer = build_adamw(loss_fn.discriminator.parameters(), device, betas=(0.0, 0.999),
                                         lr=cfg.disc_lr, weight_decay=0.01)
        g = torch.Generator(device=device).manual_seed(0)
        views, res = vcfg.encoder.num_views, encoder_resolution(vcfg)
        t, r = cfg.num_target_views, cfg.render_resolution
        p = cfg.patch_size if 0 < cfg.patch_size < r else r
        enc_input = torch.rand(batch, views, 10, res, res, generator=g, device=device) * 2 - 1
        cameras = turntable(t).to(device)[None].expand(batch, -1, -1).contiguous()
        corner = lambda: torch.randint(0, r - p + 1, (batch, t), generator=g, device=device)
        patch = PatchLayout(corner(), corner(), p) if p < r else None
        n = batch * t
        targets = {"rgb": torch.rand(n, 3, p, p, generator=g, device=device) * 2 - 1,
                   "depth": 1 + torch.rand(n, 1, p, p, generator=g, device=device),
                   "alpha": torch.rand(n, 1, p, p, generator=g, device=device)}
        late = 10**6  # a step at which every annealed or delayed loss term is active

        def render(module):
            with autocast(device, self.args.dtype == "bf16"):
                out, kl = module(enc_input, cameras, r, patch, True)
            return {k: out[k].flatten(0, 1).float() for k in ("rgb", "depth", "alpha")}, kl.float()

        def step():
            # VAETrainer.generator_step, then its discriminator_step (it draws a fresh batch; this one is reused)
            pred, kl = render(forward)
            with autocast(device, self.args.dtype == "bf16"):
                loss, _ = loss_fn(pred, targets, kl, late)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(vae.parameters(), cfg.grad_clip)
            optimizer.step()
            if disc_optimizer is not None:
                with torch.no_grad():
                    fake, _ = render(forward)
                with autocast(device, self.args.dtype == "bf16"):
                    d_loss, _ = loss_fn.discriminator_loss(fake["rgb"], targets["rgb"])
                disc_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                clip_gradients(loss_fn.discriminator.parameters(), cfg.grad_clip)
                disc_optimizer.step()

        metrics, seconds = self.train_steps(step, batch)
        if self.args.profile_dir is not None:
            metrics["profile"] = str(self.profile(step, name.replace(" ", "_")))
        return {**metrics, "params_m": count_params(vae)}, seconds

    def profile(self, step: Callable[[], None], name: str, steps: int = 3) -> Path:
        """torch.profiler over `steps` calls of `step` (after the timed runs): the ops by device time, as text."""
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with torch_profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            sync(self.device)
        key = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60)
        self.args.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.args.profile_dir / f"{name}.txt"
        path.write_text(f"# {steps} steps of {name}, sorted by {key}\n{table}\n")
        return path

    def run(self, stage: str) -> None:
        """One stage; a failure outside its configurations (e.g. building its models) is recorded, not raised. With
        the budget spent the stage is skipped as a whole, before building anything."""
        if self.budget.spent():
            self.report.add(stage, stage, {}, "skipped", reason=self.budget.reason())
            return
        body = {"vae-decode": self.vae_decode, "render": self.render, "mesh": self.mesh_stage,
                "t23d": lambda: self.generation("t23d"), "i23d": lambda: self.generation("i23d"),
                "train-dit": self.train_dit, "train-vae": self.train_vae}[stage]
        try:
            body()
        except Exception as err:  # the remaining stages still run
            self.report.add(stage, stage, {}, "error", reason=f"{type(err).__name__}: {err}"[:500])


# ---------------------------------------------------------------------------------------------------------------
# Plot


def write_plot(data: dict, path: Path) -> None:
    """Horizontal bars of every measured configuration's headline time (PIL; matplotlib is not installed)."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [r for r in data["results"] if r["status"] == "ok" and r["headline_s"] is not None]
    font = ImageFont.load_default()
    label_w, bar_w, row_h, top = 420, 460, 18, 40
    img = Image.new("RGB", (label_w + bar_w + 110, top + row_h * max(1, len(rows)) + 10), "white")
    draw = ImageDraw.Draw(img)
    meta = data["meta"]
    draw.text((8, 6), f"ln3diff benchmark · {meta['device_name']} · {meta['dtype']} · torch {meta['torch']}",
              fill="black", font=font)
    draw.text((8, 20), "seconds: per object (t23d/i23d), per step (training), per call (others)", fill="gray",
              font=font)
    longest = max((r["headline_s"] for r in rows), default=1.0) or 1.0
    palette = {"t23d": "#3b6fb6", "i23d": "#6a3bb6", "vae-decode": "#3bb67a", "render": "#b6913b",
               "mesh": "#b63b3b", "train-dit": "#3bb0b6", "train-vae": "#7a7a7a"}
    for i, r in enumerate(rows):
        y = top + i * row_h
        draw.text((8, y + 3), r["name"][:68], fill="black", font=font)
        width = max(1, round(bar_w * r["headline_s"] / longest))
        draw.rectangle([label_w, y + 2, label_w + width, y + row_h - 3], fill=palette.get(r["stage"], "#444444"))
        draw.text((label_w + width + 4, y + 3), f"{r['headline_s']:.3g} s", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def comma_list(kind: Callable[[str], object]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return items

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="results JSON (rewritten after every configuration)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--stages", type=comma_list(str), default=["all"],
                   help=f"comma list of {', '.join(STAGES)} or all (run in the order given)")
    p.add_argument("--preset-size", choices=PRESET_SIZES, default="release")
    p.add_argument("--batch-sizes", type=comma_list(int), default=[1, 4])
    p.add_argument("--samplers", type=comma_list(str), default=["released", "fast"],
                   help="released (euler_edm 250 / dopri5), fast (dpm_solver_pp 25 / heun 25, euler 50) or "
                        "NAME[:STEPS]; each applies to the tasks whose process it fits")
    p.add_argument("--compile", nargs="?", const="reduce-overhead", default="", type=str,
                   help="also run optimised denoisers next to eager: comma list of reduce-overhead "
                        "(torch.compile: Inductor + CUDA graphs) and cudagraphs (the eager forward captured in "
                        "CUDA graphs, no compile time); a bare --compile means reduce-overhead")
    p.add_argument("--repeats", type=int, default=3, help="measured runs per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs first (compilation happens here)")
    p.add_argument("--mesh-resolution", type=int, default=256)
    p.add_argument("--mesh-chunks", type=comma_list(int), default=[DEFAULT_CHUNK],
                   help="points per field query; the mesh stage runs each, end to end uses the first")
    p.add_argument("--render-resolution", type=int, default=256)
    p.add_argument("--render-views", type=int, default=24)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                   help="denoiser autocast and training precision on CUDA (the VAE and renderer run fp32)")
    p.add_argument("--train-steps", type=int, default=5, help="measured training steps")
    p.add_argument("--train-sizes", type=comma_list(str), default=None,
                   help="preset sizes whose training is timed, e.g. release,small (default: --preset-size); "
                        "training always starts from random weights")
    p.add_argument("--train-batch-vae", type=int, default=None, help="objects per VAE step (default per size)")
    p.add_argument("--train-batch-dit", type=int, default=None, help="latents per DiT step (default per size)")
    p.add_argument("--vae-lookups", type=comma_list(str), default=["grid_sample", "fused"],
                   help="triplane lookups timed in train-vae: grid_sample (the release's op) and fused (the Triton "
                        "kernel; CUDA only)")
    p.add_argument("--train-tf32", action="store_true", help="train-vae with TF32 matmuls (train_vae.py --tf32)")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="also write a torch.profiler op table per train-vae configuration into this folder")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds (from start, model building included) after which remaining configurations are "
                        "skipped and recorded as such; 0: no limit")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--plot", type=Path, default=None, help="bar chart PNG of the results")
    args = p.parse_args(argv)
    stages = STAGES if "all" in args.stages else args.stages
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)} or all")
    args.stages = list(dict.fromkeys(stages))
    modes = [m for m in args.compile.split(",") if m]
    bad = [m for m in modes if m not in VARIANTS]
    if bad:
        p.error(f"unknown --compile mode(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    args.variants = ["eager", *dict.fromkeys(modes)]
    args.train_sizes = list(dict.fromkeys(args.train_sizes or [args.preset_size]))
    if not set(args.train_sizes) <= set(PRESET_SIZES):
        p.error(f"--train-sizes takes {', '.join(PRESET_SIZES)}")
    bad = [x for x in args.vae_lookups if x not in ("grid_sample", "fused")]
    if bad:
        p.error(f"unknown --vae-lookups {', '.join(bad)}; choose from grid_sample, fused")
    for name in ("repeats", "train_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for but no CUDA device is visible")
    return torch.device(name)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    budget = Budget(args.time_budget)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    report = Report(args.out, machine_meta(args, argv, device), budget)
    # an outer `timeout` sends SIGTERM: end through the `finally` below, so the JSON and plot say so
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated by SIGTERM"))
    bench = Bench(args, device, report, budget)
    try:
        for stage in args.stages:
            bench.run(stage)
        report.data["status"] = "complete"
    except BaseException as err:
        report.data["status"] = f"failed: {type(err).__name__}: {err}"[:500]
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        bench.scratch.cleanup()
        skipped = sum(r["status"] == "skipped" for r in report.data["results"])
        report.data["skipped"] = skipped
        report.save()
        if args.plot is not None:
            write_plot(report.data, args.plot)
    print(f"wrote {args.out} ({len(report.data['results'])} results, {skipped} skipped, "
          f"{budget.elapsed():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
