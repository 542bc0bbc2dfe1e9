"""What `scripts/sample_t23d.py` and `scripts/sample_i23d.py` share: flags, settings, the output loop, error lines."""
from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import torch
from tqdm import tqdm

from guided_diffusion.acceleration import Acceleration
from guided_diffusion.pipeline import (
    GenerationSettings,
    Pipeline,
    check_fits_device,
    check_settings,
    export_object,
    non_finite_latent,
)
from utils.checkpoint import CheckpointError
from utils.media import check_writable_folder
from utils.validation import InputErrors, Limit

# Errors a user can cause and fix; they end the program with one line instead of a traceback.
# Internal failures (RuntimeError from a kernel, KeyError from a bug) keep their traceback on purpose.
# ImportError: an optional package a chosen output needs is missing (its message names the package).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, CheckpointError,
                                                ImportError)


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    d = GenerationSettings()
    parser.add_argument("--out", required=True, help="output folder (created; existing files are never replaced)")
    parser.add_argument("--ckpt", default=None,
                        help="pipeline folder, stage-2 run, released file or alias released-t23d / released-i23d "
                             "(default: the embedded procedural model)")
    parser.add_argument("--seed", type=int, default=d.seed, help="sample j of every input uses seed + j")
    parser.add_argument("--num-samples", type=int, default=d.num_samples, help="samples per input")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    parser.add_argument("--cfg-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--sampler", default=None, help="sampler name (default: the checkpoint's; see --list-samplers)")
    parser.add_argument("--list-samplers", action="store_true", help="print the samplers this checkpoint accepts")
    parser.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    parser.add_argument("--compile", default=Acceleration.EAGER.value, choices=[a.value for a in Acceleration],
                        help="denoiser acceleration: cudagraphs (CUDA, ~1 s capture per batch shape) or "
                             "reduce-overhead (torch.compile, ~1 min once; for many objects); default eager")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="samples denoised together")
    parser.add_argument("--video-views", type=int, default=d.video_views)
    parser.add_argument("--video-resolution", type=int, default=d.video_resolution,
                        help="turntable side (default: 256 on GPU, 128 on CPU)")
    parser.add_argument("--video-fps", type=float, default=d.video_fps)
    parser.add_argument("--mesh-resolution", type=int, default=d.mesh_resolution)
    parser.add_argument("--mesh-level", type=float, default=d.mesh_level, help="iso-level on raw density")
    parser.add_argument("--mesh-faces", type=int, default=None, help="decimate meshes to at most this many faces")
    parser.add_argument("--chunk-size", type=int, default=d.mesh_chunk, help="points per field query")
    parser.add_argument("--video-formats", type=format_list, default=d.video_formats,
                        help=f"comma list of turntable files to write, from {','.join(d.video_formats)}")
    parser.add_argument("--mesh-formats", type=format_list, default=d.mesh_formats,
                        help=f"comma list of mesh files to write, from {','.join(d.mesh_formats)}")


def format_list(text: str) -> tuple[str, ...]:
    """'mp4, GIF' → ('mp4', 'gif'); which names are valid is checked by `Pipeline.resolve`."""
    return tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    names = {f.name for f in fields(GenerationSettings)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["mesh_chunk"] = args.chunk_size
    return GenerationSettings(**values)


def check_generation_args(args: argparse.Namespace, extra: dict[str, tuple[object, Limit]] | None = None) -> None:
    """Every numeric flag against its limits (`GENERATION_LIMITS`, and a script's own `extra`) before any input is
    read or model loaded; raises `InputErrors` naming each bad one."""
    check_settings(settings_from_args(args), extra)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(name)


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe version of a prompt or image name."""
    s = re.sub(r"[^a-zA-Z0-9]+", "_", text.strip().lower()).strip("_")
    return (s[:limit].rstrip("_") or "sample")


def unique_stem(out_dir: Path, base: str) -> str:
    """`base`, or `base-1`, `base-2`, … so that no file `<stem>.*` exists yet in `out_dir`."""
    stem, k = base, 0
    while any(out_dir.glob(f"{glob_escape(stem)}.*")):
        k += 1
        stem = f"{base}-{k}"
    return stem


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


# A mesh extraction estimated above this many seconds per object is announced before the sampling starts.
SLOW_MESH_S = 30.0
# Below this resolution the estimate is not measured (it costs ~1 s on a CPU, on every run): the field queries take
# 2.3 s at 192³ on 2 CPU cores with the embedded model, far from SLOW_MESH_S.
MEASURE_MESH_FROM = 256


def warn_slow_mesh(pipeline: Pipeline, settings, task: str) -> float | None:
    """Say, before any sampling, how long each object's mesh will take when that is long (docs/RELIABILITY.md);
    returns the estimate (None when no mesh is written or it is too small to measure)."""
    if not settings.mesh_formats or settings.mesh_resolution < MEASURE_MESH_FROM:
        return None
    seconds = pipeline.mesh_seconds(settings)
    if seconds > SLOW_MESH_S:
        res = settings.mesh_resolution
        print(f"{task}: the --mesh-resolution {res} mesh's field queries alone will take about {seconds:.0f} s per "
              f"object on {pipeline.device.type} (measured now); --mesh-resolution {res // 2} takes about "
              f"{seconds / 8:.0f} s", file=sys.stderr)
    return seconds


def run(task: str, args: argparse.Namespace, conditions: list, labels: list[str], conditioner_kwargs: dict,
        inputs: dict | None = None) -> list[dict]:
    """Load the pipeline, generate every (input, sample) and export it; returns the export records.

    conditions: prompts or preprocessed images, already validated so a bad input fails before the slow model load;
    labels name them in file names. inputs: input settings outside GenerationSettings, copied into each JSON record.
    """
    device = pick_device(args.device)
    if not args.list_samplers:
        check_writable_folder(args.out)  # before the model load and the sampling, not after
        check_fits_device(settings_from_args(args), device)
    t0 = time.perf_counter()
    pipeline = Pipeline.from_checkpoint(args.ckpt, task, device, args.compile, **conditioner_kwargs)
    if args.list_samplers:
        print(" ".join(pipeline.samplers))
        return []
    settings = pipeline.resolve(settings_from_args(args))
    load_s = time.perf_counter() - t0
    warn_slow_mesh(pipeline, settings, task)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, failed = [], []
    with tqdm(total=len(conditions) * settings.num_samples, desc=f"{task}", unit="object") as bar:
        for start in range(0, len(conditions), max(1, settings.batch_size // settings.num_samples)):
            chunk = slice(start, start + max(1, settings.batch_size // settings.num_samples))
            for obj in pipeline.generate(conditions[chunk], labels[chunk], settings):
                bar.update(1)
                problem = non_finite_latent(obj)
                if problem is not None:
                    failed.append(problem)
                    continue
                stem = unique_stem(out_dir, f"{slug(obj.label)}_seed{settings.seed + obj.sample_index}")
                record = {"command": shlex.join(sys.argv), "inputs": inputs or {}, "load_s": load_s}
                results.append(export_object(pipeline, obj, out_dir, stem, settings, record))
    for r in results:
        mesh = r["record"]["mesh"]
        summary = f"{mesh['faces']} faces" if mesh["surface"] else "no mesh"
        print(f"wrote {r['paths'].get('mp4', r['paths']['json'])} ({summary})")
        if not mesh["surface"]:
            print(f"warning: {mesh['error']}; try a --mesh-level inside that range", file=sys.stderr)
    if failed:  # after the good objects are written: exit status 2, one line per failed object
        raise InputErrors(failed)
    return results


def error_line(err: BaseException) -> str:
    """The one line a user sees for `err` (KeyError's str() would add quotes around its message)."""
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return (message.splitlines() or [type(err).__name__])[0]


def main_guard(fn: Callable[[], object]) -> int:
    """Run `fn`; a user error becomes one line on stderr and exit code 2."""
    try:
        fn()
    except USER_ERRORS as err:
        for line in err.problems if isinstance(err, InputErrors) else [error_line(err)]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    return 0
