"""Web demo: text-to-3D and image-to-3D in the browser, one object per request.

    python scripts/gradio_app.py                                  # the embedded default model, http://127.0.0.1:7860
    python scripts/gradio_app.py --ckpt released-i23d --device cuda --share

Every control takes effect (seed, CFG scale, steps, sampler, mesh resolution and iso-level; the released demo ignored
the last two). Each request writes its video, meshes and JSON record to a fresh folder under --output-dir, so
concurrent users never see each other's files. Requests run one at a time through a queue; a task's model is loaded
on its first request.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import gradio as gr
from safetensors import safe_open

from checkpoints.convert.dit import JOINT_PREFIX
from checkpoints.hub import resolve_checkpoint
from checkpoints.loader import TASKS
from guided_diffusion.acceleration import Acceleration, check_acceleration
from guided_diffusion.cli import USER_ERRORS, error_line, pick_device, slug
from guided_diffusion.config import Stage2Config, preset
from guided_diffusion.pipeline import (
    GenerationSettings,
    Pipeline,
    check_fits_device,
    export_object,
    non_finite_latent,
    samplers_for,
)
from utils.checkpoint import CONFIG_FILE, CheckpointError, read_json, resolve_model_folder
from utils.images import preprocess_image, rembg_unavailable_reason

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PROMPTS = REPO / "assets" / "prompts.txt"
EXAMPLE_IMAGES = REPO / "assets" / "i23d_examples"
DOWNLOADS = ("glb", "obj", "ply", "json")
TAB_TITLES = {"t23d": "Text to 3D", "i23d": "Image to 3D"}
CONDITION_SIZE = 256  # as the image CLI's default
RECENTRE_RATIO = 0.85  # as the released demo
# gradio injects a live progress tracker into any handler argument whose default is a gr.Progress.
PROGRESS = gr.Progress()

log = logging.getLogger("ln3diff.gradio")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None,
                        help="pipeline folder, stage-2 run, released file or alias released-t23d / released-i23d "
                             "(default: the embedded procedural model)")
    parser.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for the whole network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--output-dir", type=Path, default=Path(tempfile.gettempdir()) / "ln3diff-gradio",
                        help="each request writes to its own folder under this one")
    parser.add_argument("--queue-size", type=int, default=16, help="requests that may wait; more are turned away")
    parser.add_argument("--video-views", type=int, default=GenerationSettings.video_views)
    parser.add_argument("--video-resolution", type=int, default=GenerationSettings.video_resolution)
    parser.add_argument("--compile", default=Acceleration.EAGER.value, choices=[a.value for a in Acceleration],
                        help="denoiser acceleration; a server gains most from cudagraphs (CUDA) or reduce-overhead")
    return parser.parse_args(argv)


def stage2_config(ckpt: Path, task: str) -> Stage2Config:
    """The stage-2 config `load_models` would build for `task`, read without loading weights.

    Raises CheckpointError naming what is missing when the checkpoint has no model for `task`.
    """
    if ckpt.is_file():  # a released joint file: the release preset of the task it holds
        if ckpt.suffix == ".safetensors":
            with safe_open(str(ckpt), "pt") as weights:  # reads the header only
                released = "i23d" if f"{JOINT_PREFIX}cap_embedder.0.weight" in weights.keys() else "t23d"
            if released != task:
                raise CheckpointError(f"this checkpoint ({ckpt.name}) is the released {released} model")
        return preset(task)
    folder = ckpt / task if (ckpt / "vae").is_dir() else ckpt
    if not folder.is_dir():
        raise CheckpointError(f"this checkpoint ({ckpt}) has no {task} model")
    config = read_json(resolve_model_folder(folder) / CONFIG_FILE)
    if config.get("task") not in (None, task):
        raise CheckpointError(f"this checkpoint ({ckpt}) holds a {config['task']} model, not {task}")
    return Stage2Config.from_dict(config["stage2"])


class Backend:
    """The models (loaded lazily, once per task) and one request's work: generate, export, summarise."""

    def __init__(self, ckpt: str | None, device: str, output_dir: Path, video_views: int, video_resolution: int,
                 acceleration: str = Acceleration.EAGER.value):
        self.ckpt = ckpt
        self.device = pick_device(device)
        check_acceleration(acceleration, self.device)  # a mode the device cannot run fails at start-up
        self.acceleration = acceleration
        self.output_dir = output_dir
        self.video = {"video_views": video_views, "video_resolution": video_resolution}
        self._pipelines: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def pipeline(self, task: str) -> Pipeline:
        with self._lock:
            if task not in self._pipelines:
                t0 = time.perf_counter()
                self._pipelines[task] = Pipeline.from_checkpoint(self.ckpt, task, self.device, self.acceleration)
                log.info("loaded the %s model in %.1f s", task, time.perf_counter() - t0)
            return self._pipelines[task]

    def request_dir(self) -> Path:
        folder = self.output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def run(self, task: str, condition, label: str, inputs: dict, controls: tuple, progress: gr.Progress):
        """→ (video, glb or None, download files, status markdown) for the UI."""
        seed, cfg_scale, steps, sampler, mesh_resolution, mesh_level = controls
        progress(0.0, desc=f"loading the {task} model" if task not in self._pipelines else "sampling")
        pipeline = self.pipeline(task)
        settings = pipeline.resolve(GenerationSettings(
            seed=_integer(seed, "seed"), cfg_scale=_number(cfg_scale, "CFG scale"), steps=_integer(steps, "steps"),
            sampler=sampler or None, mesh_resolution=_integer(mesh_resolution, "mesh resolution"),
            mesh_level=_number(mesh_level, "iso-level"), video_formats=("mp4",), **self.video))
        check_fits_device(settings, pipeline.device)  # before sampling, as the CLIs
        progress(0.1, desc="sampling")
        (obj,) = pipeline.generate([condition], [label], settings)
        problem = non_finite_latent(obj)
        if problem is not None:  # as the CLIs: no garbage video for a NaN sample
            raise ValueError(problem)
        progress(0.6, desc="rendering and meshing")
        out_dir = self.request_dir()
        result = export_object(pipeline, obj, out_dir, f"{slug(label)}_seed{settings.seed}", settings,
                               {"inputs": inputs})
        paths, record = result["paths"], result["record"]
        log.info("%s %r → %s", task, label, out_dir)
        return (paths["mp4"], paths.get("glb"), [paths[k] for k in DOWNLOADS if k in paths], summary(record))


def _number(value, name: str) -> float:
    if value is None:
        raise ValueError(f"{name} is empty; enter a number")
    if not math.isfinite(float(value)):  # NaN would flow through to a garbage video
        raise ValueError(f"{name} must be a finite number, got {float(value)}")
    return float(value)


def _integer(value, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number, got {number:g}")
    return int(number)


def summary(record: dict) -> str:
    s, mesh, t = record["settings"], record["mesh"], record["timings_s"]
    line = (f"seed {record['seed']} · {s['sampler']} · {s['steps']} steps · CFG {s['cfg_scale']:g} · "
            f"{sum(t.values()):.1f} s")
    if mesh["surface"]:
        return f"{line} · mesh {mesh['faces']:,} faces at resolution {s['mesh_resolution']}"
    return f"{line}\n\n**No mesh:** {mesh['error']}. Pick an iso-level inside that range."


def user_errors_as_ui(fn):
    """Run a request; every failure reaches the browser as one line (the traceback goes to the server log only)."""
    @functools.wraps(fn)  # gradio reads the signature (inputs, gr.Progress) through __wrapped__
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as err:
            raise gr.Error(error_line(err), print_exception=False) from None
        except Exception as err:  # a bug: keep the UI to one line, log everything for whoever runs the server
            log.exception("request failed")
            raise gr.Error(f"generation failed ({type(err).__name__}: {error_line(err)}); see the server log",
                           print_exception=False) from None
    return wrapped


def example_prompts() -> list[str]:
    if not EXAMPLE_PROMPTS.is_file():
        return []
    return [line.strip() for line in EXAMPLE_PROMPTS.read_text().splitlines() if line.strip()]


def example_images() -> list[str]:
    return sorted(str(p) for p in EXAMPLE_IMAGES.glob("*.png"))


def controls(task: str, stage2: Stage2Config | None) -> list[gr.components.Component]:
    """Seed, CFG, steps, sampler, mesh resolution, iso-level; defaults from the checkpoint (release values if none)."""
    diffusion = (stage2 or preset(task)).diffusion
    samplers = samplers_for(diffusion)
    defaults = GenerationSettings()
    with gr.Accordion("Settings", open=True, elem_id=f"{task}-settings"):
        with gr.Row():
            seed = gr.Number(defaults.seed, label="Seed", precision=0, elem_id=f"{task}-seed")
            cfg = gr.Slider(0.0, 15.0, diffusion.guidance_scale, step=0.5, label="CFG scale", elem_id=f"{task}-cfg")
            steps = gr.Slider(1, 500, diffusion.num_steps, step=1, label="Sampling steps", elem_id=f"{task}-steps")
            sampler = gr.Dropdown(samplers, value=diffusion.sampler.value, label="Sampler",
                                  elem_id=f"{task}-sampler")
        with gr.Row():
            resolution = gr.Slider(16, 512, defaults.mesh_resolution, step=8, label="Mesh resolution",
                                   info="marching-cubes grid per side", elem_id=f"{task}-mesh-resolution")
            level = gr.Number(defaults.mesh_level, label="Mesh iso-level", info="on the raw density",
                              elem_id=f"{task}-mesh-level")
    return [seed, cfg, steps, sampler, resolution, level]


def outputs(task: str) -> list[gr.components.Component]:
    with gr.Column():
        video = gr.Video(label="Turntable [RGB | depth]", autoplay=True, loop=True, interactive=False,
                         elem_id=f"{task}-video")
        model = gr.Model3D(label="3D model (GLB)", clear_color=(1.0, 1.0, 1.0, 1.0), elem_id=f"{task}-model")
        files = gr.File(label="Downloads (GLB, OBJ, PLY, JSON record)", file_count="multiple", interactive=False,
                        elem_id=f"{task}-files")
        status = gr.Markdown(elem_id=f"{task}-status")
    return [video, model, files, status]


def task_inputs(task: str, usable: bool) -> list[gr.components.Component]:
    if task == "t23d":
        prompt = gr.Textbox(label="Prompt", placeholder="a red chair with a blue seat", interactive=usable,
                            elem_id="t23d-prompt")
        if example_prompts():
            gr.Examples([[p] for p in example_prompts()], [prompt], label="Example prompts", examples_per_page=20)
        return [prompt]
    # A file path keeps the upload as it is (mode, alpha, EXIF), so it is preprocessed exactly as the image CLI does.
    image = gr.Image(label="Input image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                     interactive=usable, elem_id="i23d-image")
    no_rembg = rembg_unavailable_reason()
    remove_background = gr.Checkbox(
        value=no_rembg is None, label="Remove background", interactive=usable and no_rembg is None,
        info="rembg (u2net); images with transparency are used as they are" if no_rembg is None
        else f"unavailable: {no_rembg}; upload a cut-out (transparent) or white-background image",
        elem_id="i23d-remove-background")
    recentre = gr.Checkbox(value=True, label="Recentre", info="frame the object at 85 % of the image",
                           interactive=usable, elem_id="i23d-recentre")
    if example_images():
        gr.Examples([[p] for p in example_images()], [image], label="Example images")
    return [image, remove_background, recentre]


def build_demo(backend: Backend, available: dict[str, Stage2Config | str]) -> gr.Blocks:
    """available: per task, its stage-2 config, or the one-line reason this checkpoint cannot do that task."""

    @user_errors_as_ui
    def text_to_3d(prompt, seed, cfg, steps, sampler, resolution, level, progress=PROGRESS):
        prompt = (prompt or "").strip()
        if not prompt:
            raise ValueError("empty prompt: describe the object to generate, e.g. 'a blue plastic chair'")
        return backend.run("t23d", prompt, prompt, {"prompts": [prompt]},
                           (seed, cfg, steps, sampler, resolution, level), progress)

    @user_errors_as_ui
    def image_to_3d(image, remove_background, recentre, seed, cfg, steps, sampler, resolution, level,
                    progress=PROGRESS):
        if not image:
            raise ValueError("no image: upload one or pick an example")
        condition = preprocess_image(image, size=CONDITION_SIZE, remove_bg=bool(remove_background),
                                     recentre_ratio=RECENTRE_RATIO if recentre else None)
        inputs = {"images": [Path(image).name], "remove_background": bool(remove_background),
                  "recentre": bool(recentre), "condition_size": CONDITION_SIZE}
        return backend.run("i23d", condition, Path(image).stem, inputs,
                           (seed, cfg, steps, sampler, resolution, level), progress)

    handlers = {"t23d": text_to_3d, "i23d": image_to_3d}
    with gr.Blocks(title="LN3Diff") as demo:
        gr.Markdown("# LN3Diff\nLatent neural-field diffusion: a text prompt or an image → a turntable video and a "
                    "coloured mesh.")
        with gr.Tabs():
            for task in TASKS:
                config = available[task]
                usable = not isinstance(config, str)
                with gr.Tab(TAB_TITLES[task], id=task):
                    if not usable:
                        gr.Markdown(f"**{TAB_TITLES[task]} is unavailable:** {config}.", elem_id=f"{task}-notice")
                    with gr.Row():
                        with gr.Column():
                            inputs = task_inputs(task, usable)
                            settings = controls(task, config if usable else None)
                            button = gr.Button("Generate", variant="primary", interactive=usable,
                                               elem_id=f"{task}-generate")
                        results = outputs(task)
                    button.click(handlers[task], inputs + settings, results, api_name=f"{task}",
                                 concurrency_id="generate")
    return demo


def task_availability(ckpt: str | None) -> dict[str, Stage2Config | str]:
    path = resolve_checkpoint(ckpt)
    available: dict[str, Stage2Config | str] = {}
    for task in TASKS:
        try:
            available[task] = stage2_config(path, task)
        except CheckpointError as err:
            available[task] = error_line(err)
    if all(isinstance(v, str) for v in available.values()):
        raise CheckpointError(f"{path} has neither a t23d nor an i23d model")
    return available


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own health checks, one line per request
    try:
        available = task_availability(args.ckpt)
        backend = Backend(args.ckpt, args.device, args.output_dir, args.video_views, args.video_resolution,
                          args.compile)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        demo = build_demo(backend, available)
        demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
        demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                    allowed_paths=[str(args.output_dir)])
    except (*USER_ERRORS, OSError) as err:  # OSError: the port is taken
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
