"""End-to-end generation: condition → latent sampling → VAE decode → turntable video and mesh.

`Pipeline.from_checkpoint(ckpt, task)` loads any supported checkpoint (see `checkpoints/loader.py`);
`pipeline.generate(inputs, settings)` returns one `GeneratedObject` per (input, sample); `export_object` writes its
video, mesh, preview and JSON record. The CLIs (`scripts/sample_*.py`) and the gradio app are thin layers over this.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from checkpoints.loader import LoadedModels, load_models
from guided_diffusion.acceleration import Acceleration, accelerate, check_acceleration
from guided_diffusion.config import DiffusionConfig, Process, build_process, from_diffusion_latent
from guided_diffusion.samplers import DDPM_SAMPLERS, Sampler, sample
from nsr.cameras import turntable
from nsr.mesh import DEFAULT_CHUNK, MESH_FORMATS, EmptyMeshError, Mesh, extract_mesh, extraction_bytes, save_mesh
from nsr.vae import TriplaneVAE
from utils.media import compose_rgb_depth, write_image, write_json_record, write_video
from utils.validation import SEED, Limit, available_memory, check_numbers

VIDEO_FORMATS = ("mp4", "gif")
MESH_FILE_TYPES = tuple(MESH_FORMATS.values())  # glb, obj, ply


@dataclass
class GenerationSettings:
    """Every knob of one generation run; stored verbatim in each output's JSON record."""

    seed: int = 0
    num_samples: int = 1
    steps: int | None = None  # None: the checkpoint's default
    cfg_scale: float | None = None  # None: the checkpoint's default
    sampler: str | None = None  # None: the checkpoint's default (released: euler_edm / dopri5)
    batch_size: int = 4
    video_views: int = 24
    video_resolution: int | None = None  # None: 256 on GPU (as released), 128 on CPU (the main job stays fast)
    video_fps: float = 15.0
    video_formats: tuple[str, ...] = VIDEO_FORMATS  # each costs ~0.5 s per object to encode
    mesh_resolution: int = 192
    mesh_level: float = 10.0
    mesh_chunk: int = DEFAULT_CHUNK
    mesh_formats: tuple[str, ...] = MESH_FILE_TYPES  # ~0.3 s each per 300 k faces
    mesh_faces: int | None = None  # decimate to at most this many faces


# What each numeric setting accepts (utils/validation.py): the lower bounds are what the code can run, the upper
# ones what is certainly a mistake; the CLIs check these before loading a model, `resolve` again for every caller.
GENERATION_LIMITS: dict[str, Limit] = {
    "seed": dataclasses.replace(SEED, why="seeds are 32-bit; sample j uses seed + j"),
    "num_samples": Limit(1, 1000, whole=True),
    "steps": Limit(1, 10000, whole=True),
    "cfg_scale": Limit(0, 100),
    "batch_size": Limit(1, 1024, whole=True),
    "video_views": Limit(1, 3600, whole=True),
    "video_resolution": Limit(2, 2048, whole=True),
    "video_fps": Limit(0.01, 1000),
    "mesh_resolution": Limit(2, 1024, whole=True, why="the density grid grows with its cube: 1024³ is a billion "
                                                      "field queries"),
    "mesh_level": Limit(),
    "mesh_chunk": Limit(1, 2**27, whole=True),
    "mesh_faces": Limit(4, whole=True),
}
SETTING_FLAGS = {"mesh_chunk": "--chunk-size"}  # where a flag is not named after its setting


def setting_flag(name: str) -> str:
    return SETTING_FLAGS.get(name, "--" + name.replace("_", "-"))


def check_settings(settings: GenerationSettings, extra: dict[str, tuple[object, Limit]] | None = None) -> None:
    """Raise `InputErrors` (a ValueError, one line per problem) for every numeric setting out of its limits;
    `extra`: a caller's own inputs as {flag: (value, limit)}."""
    extra = extra or {}
    check_numbers({**{setting_flag(k): getattr(settings, k) for k in GENERATION_LIMITS},
                   **{flag: value for flag, (value, _) in extra.items()}},
                  {**{setting_flag(k): limit for k, limit in GENERATION_LIMITS.items()},
                   **{flag: limit for flag, (_, limit) in extra.items()}})


# Share of the device's free memory one mesh extraction may plan on: the rest covers its triangles, the renderer
# and what other processes take meanwhile.
MESH_MEMORY_SHARE = 0.8


def check_fits_device(settings: GenerationSettings, device: torch.device) -> None:
    """Refuse (one line with a resolution that fits) a mesh extraction the device cannot hold, before any work:
    otherwise it fails with an out-of-memory traceback after the video is written, and no JSON record. Callers
    run it once per request before sampling (not in `resolve`, which runs again mid-export)."""
    free = available_memory(device)
    need = extraction_bytes(settings.mesh_resolution, settings.mesh_chunk)
    if free is None or need <= MESH_MEMORY_SHARE * free:
        return
    budget = MESH_MEMORY_SHARE * free - 1024 * settings.mesh_chunk
    fits = int((max(budget, 0) / 7) ** (1 / 3))  # the resolution whose estimate fits the share
    raise ValueError(f"--mesh-resolution {settings.mesh_resolution} needs about {need / 2**30:.1f} GiB for mesh "
                     f"extraction, but the {device.type} device has {free / 2**30:.1f} GiB free; pass "
                     f"--mesh-resolution {fits} or less (or a smaller --chunk-size)")


@dataclass
class GeneratedObject:
    """One sample: its VAE latent `(3C, h, w)`, triplane `(3F, R, R)`, and how long each stage took."""

    label: str  # prompt or image name
    sample_index: int
    latent: torch.Tensor
    triplane: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)


def samplers_for(diffusion: DiffusionConfig) -> list[str]:
    """Sampler names valid for a diffusion process (DDPM samplers or flow-matching ODE solvers)."""
    ddpm = diffusion.process is Process.DDPM
    return [s.value for s in Sampler if (s in DDPM_SAMPLERS) == ddpm]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pipeline:
    """acceleration: how the denoiser runs (`guided_diffusion.acceleration`); the accelerated forward lives as long
    as the pipeline, so its graphs and compilation are reused by every later call."""

    def __init__(self, models: LoadedModels, device: torch.device,
                 acceleration: Acceleration | str = Acceleration.EAGER):
        self.models = models
        self.device = device
        self.task = models.task
        self.process = build_process(models.stage2.diffusion)
        self.diffusion = models.stage2.diffusion
        self.acceleration = check_acceleration(acceleration, device)
        self.denoiser = accelerate(models.denoiser, self.acceleration, device)

    @classmethod
    def from_checkpoint(cls, ckpt: str | os.PathLike | None = None, task: str = "t23d",
                        device: str | torch.device = "cpu", acceleration: Acceleration | str = Acceleration.EAGER,
                        **conditioner_kwargs) -> Pipeline:
        device = torch.device(device)
        check_acceleration(acceleration, device)  # a bad mode fails before the slow model load
        return cls(load_models(ckpt, task, device, **conditioner_kwargs), device, acceleration)

    @property
    def samplers(self) -> list[str]:
        """Sampler names valid for this checkpoint's diffusion process."""
        return samplers_for(self.diffusion)

    def resolve(self, settings: GenerationSettings) -> GenerationSettings:
        """Fill the checkpoint defaults into `settings` and validate the sampler."""
        sampler = settings.sampler or self.diffusion.sampler.value
        if sampler not in self.samplers:
            raise ValueError(f"unknown sampler {sampler!r} for this {self.task} checkpoint; "
                             f"choose one of {', '.join(self.samplers)}")
        steps = settings.steps if settings.steps is not None else self.diffusion.num_steps
        cfg = settings.cfg_scale if settings.cfg_scale is not None else self.diffusion.guidance_scale
        video_resolution = settings.video_resolution or (256 if self.device.type == "cuda" else 128)
        resolved = GenerationSettings(**{**asdict(settings), "sampler": sampler, "steps": steps, "cfg_scale": cfg,
                                         "video_resolution": video_resolution})
        check_settings(resolved)  # the checkpoint's defaults too, and every caller (the gradio app)
        for name, allowed in (("video_formats", VIDEO_FORMATS), ("mesh_formats", MESH_FILE_TYPES)):
            unknown = [f for f in getattr(settings, name) if f not in allowed]
            if unknown:
                raise ValueError(f"unknown --{name.replace('_', '-')} entry {unknown[0]!r}; choose from "
                                 f"{', '.join(allowed)}")
        return resolved

    def _noise(self, count: int, seed: int) -> torch.Tensor:
        """Seeded N(0, I) latents on the CPU (identical on every device), moved to the device."""
        shape = (count, *self.models.vae.config.latent_shape)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)

    @torch.no_grad()
    def sample_latents(self, conditions: list, settings: GenerationSettings) -> torch.Tensor:
        """VAE latents `(len(conditions)·num_samples, 3C, h, w)`, sample-major per condition.

        conditions: prompts (T23D) or images `(3, H, W)` in [-1, 1] (I23D). Noise for condition i, sample j comes
        from seed `settings.seed + j`, so a prompt's samples do not depend on which other prompts run with it.
        """
        s = self.resolve(settings)
        items = [(c, j) for c in conditions for j in range(s.num_samples)]
        out = []
        for start in range(0, len(items), s.batch_size):
            chunk = items[start:start + s.batch_size]
            if self.task == "t23d":
                context = self.models.conditioner([c for c, _ in chunk])
            else:
                context = self.models.conditioner(torch.stack([c for c, _ in chunk]).to(self.device))
            context = {k: v.to(self.device) for k, v in context.items()}
            noise = torch.cat([self._noise(1, s.seed + j) for _, j in chunk])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                x = sample(self.denoiser, self.process, noise, context, sampler=s.sampler,
                           num_steps=s.steps, guidance_scale=s.cfg_scale,
                           uncond=self.models.conditioner.null_condition(len(chunk), self.device))
            out.append(from_diffusion_latent(x.float(), self.diffusion.latent_divider))
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents `(B, 3C, h, w)` → triplanes `(B, 3F, R, R)`."""
        return self.models.vae.decode(latents.to(self.device))

    def generate(self, conditions: list, labels: list[str], settings: GenerationSettings) -> list[GeneratedObject]:
        s = self.resolve(settings)
        _sync(self.device)
        t0 = time.perf_counter()
        latents = self.sample_latents(conditions, s)
        _sync(self.device)
        t1 = time.perf_counter()
        triplanes = self.decode(latents)
        _sync(self.device)
        t2 = time.perf_counter()
        per_sample = {"sampling_s": (t1 - t0) / len(latents), "decode_s": (t2 - t1) / len(latents)}
        items = [(label, j) for label in labels for j in range(s.num_samples)]
        return [GeneratedObject(label, j, latents[i].cpu(), triplanes[i:i + 1], dict(per_sample))
                for i, (label, j) in enumerate(items)]

    def turntable_frames(self, triplane: torch.Tensor, views: int, resolution: int) -> list[np.ndarray]:
        return turntable_frames(self.models.vae, triplane, views, resolution)

    def mesh(self, triplane: torch.Tensor, settings: GenerationSettings) -> Mesh:
        return triplane_mesh(self.models.vae, triplane, settings.mesh_resolution, settings.mesh_level,
                             settings.mesh_chunk, settings.mesh_faces)

    @torch.no_grad()
    def mesh_seconds(self, settings: GenerationSettings) -> float:
        """Estimated seconds of one object's mesh field queries with `settings` on this device, measured now: one field
        query of up to 2¹⁶ points (the second of two, so warm-up is left out) through a decoded blank latent — the
        field's cost does not depend on its values — scaled to the resolution³ points of the grid. Marching cubes,
        colours and decimation come on top: measured on 2 CPU cores with the embedded model, the estimate is about half
        of the whole extraction (2.3 of 4.4 s at 192³); on the H100 the queries were 0.077 of 0.10 s at 256³."""
        vae = self.models.vae
        triplane = vae.decode(torch.zeros(1, *vae.config.latent_shape, device=self.device))
        points = torch.rand(min(settings.mesh_chunk, 2**16), 3, device=self.device) * 0.9 - 0.45
        for _ in range(2):
            _sync(self.device)
            t0 = time.perf_counter()
            vae.query(triplane, points[None], chunk=settings.mesh_chunk)
            _sync(self.device)
            seconds = time.perf_counter() - t0
        return seconds * settings.mesh_resolution**3 / len(points)


@torch.no_grad()
def turntable_frames(vae: TriplaneVAE, triplane: torch.Tensor, views: int, resolution: int) -> list[np.ndarray]:
    """[RGB | viridis depth] frames `(R, 2R, 3)` uint8 of a deterministic turntable around triplane `(1, 3F, R, R)`."""
    cameras = turntable(views).to(triplane.device)
    frames = []
    for cam in cameras.split(4):
        out = vae.render(triplane, cam[None], resolution, deterministic=True)
        for rgb, depth in zip(out["rgb"][0], out["depth"][0]):
            frames.append(compose_rgb_depth(rgb.float().cpu(), depth.float().cpu()))
    return frames


@torch.no_grad()
def triplane_mesh(vae: TriplaneVAE, triplane: torch.Tensor, resolution: int = 192, level: float = 10.0,
                  chunk: int = DEFAULT_CHUNK, faces: int | None = None) -> Mesh:
    """Marching-cubes mesh of triplane `(1, 3F, R, R)` over the renderer's sampling box (`nsr.mesh.extract_mesh`)."""
    half = vae.config.renderer.sample_bbox or vae.config.renderer.box_warp / 2

    def query(points: torch.Tensor) -> dict:
        # One field evaluation per extraction chunk: `chunk` already bounds its memory, and splitting it further into
        # the VAE's default 65,536-point pieces only multiplies the kernel launches (4× at the default chunk).
        out = vae.query(triplane, points[None].to(triplane.device), chunk=chunk)
        return {"sigma": out["sigma"][0], "rgb": out["rgb"][0]}

    return extract_mesh(query, resolution=resolution, level=level, chunk_size=chunk, bbox=(-half, half),
                        device=triplane.device, target_faces=faces)


def non_finite_latent(obj: GeneratedObject) -> str | None:
    """The one-line problem of a sample whose latent holds NaN/inf (its video would be noise and its mesh empty),
    or None. The CLIs and the demo both stop such an object with it."""
    if bool(torch.isfinite(obj.latent).all()):
        return None
    return (f"{obj.label!r} sample {obj.sample_index}: the sampled latent holds NaN/inf, so nothing was written for "
            f"it; the likely cause is the checkpoint (a diverged run) or an extreme --cfg-scale / --steps")


def latent_fingerprint(latent: torch.Tensor) -> dict:
    """Shape, statistics and a hash of a latent: enough to tell from the JSON records whether two runs agree."""
    data = latent.detach().float().cpu().contiguous()
    return {"shape": list(data.shape), "mean": data.mean().item(), "std": data.std().item(),
            "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest()}


def export_object(pipeline: Pipeline, obj: GeneratedObject, out_dir: str | os.PathLike, stem: str,
                  settings: GenerationSettings, record: dict) -> dict:
    """Write `<stem>.{mp4,gif,png,glb,obj,ply,json}` for one sample; never overwrites. Returns the paths + record.

    A field with no surface at `mesh_level` still gets its video, preview and JSON; the record's `mesh` entry then
    says `surface: false` with the σ range, so the user can pick a level that crosses it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = pipeline.resolve(settings)
    paths: dict[str, str] = {}
    t0 = time.perf_counter()
    frames = pipeline.turntable_frames(obj.triplane, s.video_views, s.video_resolution)
    obj.timings["render_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for fmt in s.video_formats:
        paths[fmt] = str(write_video(out_dir / f"{stem}.{fmt}", frames, fps=s.video_fps))
    paths["png"] = str(write_image(out_dir / f"{stem}.png", frames[0]))
    obj.timings["video_write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        mesh = pipeline.mesh(obj.triplane, s)
    except EmptyMeshError as err:
        mesh, mesh_record = None, {"surface": False, "error": str(err)}
    obj.timings["mesh_s"] = time.perf_counter() - t0
    if mesh is not None:
        t0 = time.perf_counter()
        for fmt in s.mesh_formats:
            paths[fmt] = str(save_mesh(mesh, out_dir / f"{stem}.{fmt}"))
        obj.timings["mesh_write_s"] = time.perf_counter() - t0
        mesh_record = {"surface": True, "vertices": mesh.stats.vertices, "faces": mesh.stats.faces,
                       "watertight": mesh.stats.watertight}
    full_record = {
        **record,
        "label": obj.label,
        "sample_index": obj.sample_index,
        "seed": s.seed + obj.sample_index,
        "checkpoint": pipeline.models.source,
        "task": pipeline.task,
        "settings": asdict(s),
        "acceleration": pipeline.acceleration.value,
        **({"acceleration_fallback": pipeline.denoiser.fallback} if getattr(pipeline.denoiser, "fallback", None)
           else {}),
        "latent": latent_fingerprint(obj.latent),
        "mesh": mesh_record,
        "timings_s": obj.timings,
        "files": {k: Path(v).name for k, v in paths.items()},
    }
    paths["json"] = str(write_json_record(out_dir / f"{stem}.json", full_record))
    return {"paths": paths, "record": full_record}
