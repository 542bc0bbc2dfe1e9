"""Evaluation suite on held-out procedural objects: VAE reconstruction, text-to-3D and image-to-3D generation.

    python scripts/evaluate.py --ckpt checkpoints/procedural --out outputs/eval --num-objects 24 --device cpu

Held-out objects come from the training grammar (dataset --data-seed 0) at indices from --start-index (1 000 000),
disjoint from the 0..1999 the embedded model trained on; they are generated and rendered on the fly. Categories
cycle with the index, so N consecutive objects are balanced over the 12 categories.

- vae: each object's encoder views (the rig views the VAE trained on, `nsr.encoding`) are encoded to the posterior
  mean and decoded; --novel-views are rendered deterministically at --render-resolution and compared with the
  ground truth (PSNR, SSIM, and LPIPS when its backbone is on disk); the marching-cubes mesh (--mesh-level on raw σ)
  is compared with ground-truth surface samples (Chamfer-L1, F-score at --fscore-threshold, in the units of the
  [-0.45, 0.45]³ box).
- t23d: each object's canonical caption is a prompt. Samples are meshed for COV / MMD / 1-NNA against the held-out
  ground-truth point clouds (per category and their mean), and rendered at --judge-views for the attribute
  classifier, which is trained on ground-truth renders of other procedural objects and reads category and main
  colour; prompt accuracy compares its reading with the prompt's labels.
- i23d: each object's --condition-view render is the input image. Samples are scored by PSNR / SSIM at the input
  camera and at the novel views, by Chamfer / F-score against the input object, and by COV / MMD / 1-NNA.
- FID / KID of the generated renders (`evaluations.fid`; skipped, with the reason, without Inception weights).

Writes OUT/metrics.json (settings, per-phase timings, per-object records, aggregates, the issue's targets against
the measured values), a Markdown report (--report-md, default OUT/results.md) and its pictures (--figures, default
OUT/figures). metrics.json is rewritten atomically after the ground truth and after every task, so a run cut short
keeps what it measured ("finished": false, "completed_tasks" lists what is in it); it is only ever replaced while it
still holds this run's "run_id". --report-only rewrites the report from an existing OUT/metrics.json, e.g. after
editing --notes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

import numpy as np
import torch
from tqdm import tqdm

from checkpoints.hub import resolve_checkpoint
from checkpoints.loader import TASKS, load_vae_folder
from datasets.multiview import target_tensors
from datasets.procedural import COLOR_NAMES, GenerationConfig, render_records, sample_surface
from datasets.procedural.grammar import CATEGORY_NAMES, generate_object
from evaluations.attribute_classifier import AttributeClassifier, prompt_accuracy, train_attribute_classifier
from evaluations.fid import compute_fid_kid
from evaluations.generation_metrics import generation_metrics, generation_metrics_by_category, point_clouds
from evaluations.image_metrics import lpips_backbone_path, lpips_distance, psnr, ssim
from evaluations.point_distances import PointSet, chamfer, distance_device, f_score, nearest_distances, prepare
from evaluations.report import format_value, markdown_section, plot_metric, write_markdown, write_metrics_json
from guided_diffusion.cli import main_guard, pick_device
from guided_diffusion.pipeline import GenerationSettings, Pipeline, triplane_mesh
from nsr.encoding import default_encoder_views, parse_view_ids, record_encoder_input
from nsr.mesh import DEFAULT_CHUNK, EmptyMeshError, mesh_to_points, rotate_to_y_up
from nsr.trainer import encoder_resolution
from nsr.vae import TriplaneVAE
from utils.checkpoint import CheckpointError
from utils.media import contact_sheet, write_image
from utils.validation import SEED, check_args

METRICS_FILE = "metrics.json"
# The judge learns from objects of the same grammar at indices far from both the training set and the held-out set.
JUDGE_START_INDEX = 2_000_000
FSCORE_CURVE = (0.005, 0.01, 0.02, 0.05)
FIGURE_TILE = 80  # report pictures are downscaled to this side so docs stay small
LOSS_KEYS = ("loss", "total")  # stage-2 logs name their objective "loss", the VAE log "total"
# On a CPU, marching rays and querying the field in smaller pieces keeps the field MLP's temporaries in cache: 2,048
# rays per render chunk and 2^15 points per mesh chunk ran 1.7-1.9x faster than the defaults (16,384 rays, 2^17 points)
# on the 2-core CPU, with bitwise-identical renders and meshes (deterministic renders do not depend on the chunk;
# docs/BENCHMARKS.md, "evaluate.py speed"). On a GPU the defaults stand: bigger chunks mean fewer launches.
CPU_RENDER_CHUNK = 2048
CPU_MESH_CHUNK = 2**15


class PhaseTimer:
    """Wall time per named phase, summed over its uses: `with timer("vae.render_s"): ...`. Phases nest (an outer
    phase includes its inner ones). CUDA work is synchronised at each phase's end, so kernels queued asynchronously
    are charged to the phase that queued them, not to the next one that waits for a result."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.seconds.setdefault(name, 0.0)  # first use fixes the key order: outer phases before their inner ones
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start


class MetricsFile:
    """OUT/metrics.json of one run, rewritten after every task. The first write refuses an existing file; later
    writes replace it only while it still holds this run's id, so a previous run's file, or one another run put in
    its place meanwhile, is never overwritten."""

    def __init__(self, path: Path):
        self.path = path
        self.run_id = uuid.uuid4().hex

    def owner(self) -> str | None:
        try:
            return json.loads(self.path.read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            return None

    def write(self, metrics: dict) -> Path:
        owned = False
        if self.path.exists():
            owned = self.owner() == self.run_id
            if not owned:
                raise FileExistsError(f"{self.path} exists and is not this run's (run_id {self.run_id}); pass a new "
                                      "--out (or --report-only)")
        return write_metrics_json(self.path, {**metrics, "run_id": self.run_id}, overwrite=owned)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="pipeline folder (default: the embedded procedural model)")
    p.add_argument("--out", required=True, help="output folder; must not hold a metrics.json yet")
    p.add_argument("--tasks", default=None,
                   help="comma-separated subset of vae,t23d,i23d (default: every stage the checkpoint has)")
    p.add_argument("--num-objects", type=int, default=24, help="held-out objects")
    p.add_argument("--start-index", type=int, default=1_000_000, help="first held-out object index")
    p.add_argument("--data-seed", type=int, default=0, help="procedural dataset seed (the training data's: 0)")
    p.add_argument("--samples-per-prompt", type=int, default=1, help="generated samples per prompt / input image")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--sampler", default=None, help="sampler name (default: the checkpoint's)")
    p.add_argument("--cfg-scale", type=float, default=None, help="guidance scale (default: the checkpoint's)")
    p.add_argument("--render-resolution", type=int, default=128, help="side of the scored VAE / I23D renders")
    p.add_argument("--novel-views", type=parse_view_ids, default=(27, 4, 13),
                   help="rig views scored as novel views (default 27,4,13: lower ring 0°, upper ring 60° and 195°; "
                        "none is a VAE encoder view)")
    p.add_argument("--condition-view", type=int, default=0, help="rig view given to image-to-3D as its input")
    p.add_argument("--judge-views", type=parse_view_ids, default=(0, 9, 27, 33),
                   help="rig views the attribute classifier reads (its probabilities are averaged over them)")
    p.add_argument("--judge-resolution", type=int, default=64, help="side of the classifier's images")
    p.add_argument("--mesh-resolution", type=int, default=128, help="marching-cubes grid side")
    p.add_argument("--mesh-level", type=float, default=10.0, help="iso-level on raw density (the release's 10)")
    p.add_argument("--points", type=int, default=4096, help="points per cloud for COV / MMD / 1-NNA")
    p.add_argument("--surface-points", type=int, default=50_000,
                   help="points per surface for Chamfer / F-score (dense enough that a perfect mesh scores "
                        "F@0.01 ≈ 1; the sampling floor is measured and recorded)")
    p.add_argument("--fscore-threshold", type=float, default=0.01, help="F-score distance, in box units")
    p.add_argument("--classifier-objects", type=int, default=400, help="objects the attribute classifier trains on")
    p.add_argument("--classifier-steps", type=int, default=300, help="attribute classifier training steps")
    p.add_argument("--seed", type=int, default=0, help="generation, surface sampling and classifier seed")
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--report-md", type=Path, default=None, help="Markdown report path (default OUT/results.md)")
    p.add_argument("--figures", type=Path, default=None, help="folder of the report's pictures (default OUT/figures)")
    p.add_argument("--figure-rows", type=int, default=12, help="objects shown per picture (one per category first)")
    p.add_argument("--notes", type=Path, default=None, help="Markdown file inserted into the report as discussion")
    p.add_argument("--training-logs", type=Path, nargs="*", default=[],
                   help="training log .jsonl files summarised (table + loss plot) in the report")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from OUT/metrics.json")
    args = p.parse_args(argv)
    check_args("evaluate.py", args, {"--seed": SEED, "--data-seed": SEED})  # before any model or data
    args.argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args.out = Path(args.out)
    args.report_md = args.report_md or args.out / "results.md"
    args.figures = args.figures or args.out / "figures"
    positive = ("num_objects", "samples_per_prompt", "render_resolution", "judge_resolution", "mesh_resolution",
                "points", "surface_points", "classifier_objects", "classifier_steps", "figure_rows")
    for name in positive:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.surface_points < args.points:
        p.error(f"--surface-points ({args.surface_points}) must be at least --points ({args.points})")
    return args


# ---------------------------------------------------------------------------------------------------------------
# Held-out ground truth


@dataclass
class HeldOutObject:
    """One held-out object: its labels, the VAE's encoder input, and ground-truth views and surface samples."""

    index: int
    category: str
    colour: str  # main colour, the one the prompt names first
    caption: str  # canonical phrasing, the T23D prompt
    encoder_input: torch.Tensor  # (V, 10, He, He)
    novel_cameras: torch.Tensor  # (N, 25)
    novel_rgb: torch.Tensor  # (N, 3, R, R) in [-1, 1]
    condition_camera: torch.Tensor | None  # (25,); None when image-to-3D is not evaluated
    condition_rgb: torch.Tensor | None  # (3, R, R) in [-1, 1]; None likewise
    judge_cameras: torch.Tensor | None  # (K, 25); None when text-to-3D is not evaluated
    judge_rgb: torch.Tensor | None  # (K, 3, r, r) in [-1, 1]; None likewise
    surface: np.ndarray  # (P, 3) surface samples, y-up like extracted meshes
    floor: np.ndarray  # (P, 3) a second, independent sample of the same surface


def view_images(records, views: tuple[int, ...], resolution: int) -> list[dict[str, torch.Tensor]]:
    """target_tensors (`target_rgb`, `target_cameras`, ...) of `views` of every record."""
    return [target_tensors(r.select(views), resolution) for r in records]


def surface_points(index: int, data_seed: int, count: int, seed: int) -> np.ndarray:
    """`count` ground-truth surface points of object `index`, rotated y-up as `nsr.mesh.extract_mesh` outputs."""
    samples = sample_surface(generate_object(data_seed, index), count, seed=seed)
    return rotate_to_y_up(samples.points.double().numpy())


def held_out_objects(args: argparse.Namespace, vae: TriplaneVAE, device: torch.device, tasks: list[str],
                     timer: PhaseTimer) -> list[HeldOutObject]:
    """Render the held-out objects: encoder views at the encoder's side (as the VAE trained), scored views at
    --render-resolution, judge views at --judge-resolution; then sample their surfaces. Views only a task not in
    `tasks` reads are not rendered: the condition view serves image-to-3D, the judge views text-to-3D."""
    indices = list(range(args.start_index, args.start_index + args.num_objects))
    render_device = str(device) if device.type == "cuda" else "cpu"  # the tracer runs on CUDA or the CPU

    def render(views: tuple[int, ...], resolution: int):
        config = GenerationConfig(seed=args.data_seed, resolution=resolution, view_ids=tuple(dict.fromkeys(views)),
                                  device=render_device)
        return render_records(indices, config)

    encoder_views = default_encoder_views(vae.config)
    condition, judge = "i23d" in tasks, "t23d" in tasks
    first_novel = 1 if condition else 0  # scored views: [condition view,] novel views
    scored_views = ((args.condition_view,) if condition else ()) + tuple(args.novel_views)
    with timer("ground_truth.render_s"):
        encoder_records = render(encoder_views, encoder_resolution(vae.config))
        scored = view_images(render(scored_views, args.render_resolution), scored_views, args.render_resolution)
        judged = view_images(render(args.judge_views, args.judge_resolution), args.judge_views,
                             args.judge_resolution) if judge else None
    objects = []
    for k, record in enumerate(tqdm(encoder_records, desc="ground truth", unit="object")):
        with timer("ground_truth.surface_s"):
            surface = surface_points(indices[k], args.data_seed, args.surface_points, args.seed)
            floor = surface_points(indices[k], args.data_seed, args.surface_points, args.seed + 1)
        objects.append(HeldOutObject(
            index=indices[k], category=record.labels["category"], colour=record.labels["main_color"],
            caption=record.caption, encoder_input=record_encoder_input(record, encoder_views, vae.config),
            novel_cameras=scored[k]["target_cameras"][first_novel:], novel_rgb=scored[k]["target_rgb"][first_novel:],
            condition_camera=scored[k]["target_cameras"][0] if condition else None,
            condition_rgb=scored[k]["target_rgb"][0] if condition else None,
            judge_cameras=judged[k]["target_cameras"] if judge else None,
            judge_rgb=judged[k]["target_rgb"] if judge else None, surface=surface, floor=floor))
    return objects


def label_ids(categories: list[str], colours: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([CATEGORY_NAMES.index(c) for c in categories]),
            torch.tensor([COLOR_NAMES.index(c) for c in colours]))


# ---------------------------------------------------------------------------------------------------------------
# Scores


def image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """PSNR / SSIM per view and their means, LPIPS mean (None without its backbone), of (N, 3, H, W) in [-1, 1]."""
    psnr_views = psnr(pred, target, data_range=2.0, reduction="none").tolist()
    ssim_views = ssim(pred, target, value_range=(-1.0, 1.0), reduction="none").tolist()
    lpips = lpips_distance(pred, target)
    return {"psnr": float(np.mean(psnr_views)), "ssim": float(np.mean(ssim_views)),
            "lpips": None if lpips is None else lpips.item(), "psnr_views": psnr_views, "ssim_views": ssim_views}


def geometry_scores(pred: np.ndarray | None, truth: PointSet, threshold: float,
                    device: torch.device | None = None) -> dict:
    """Chamfer-L1 / L2 and F-score (at `threshold` and along FSCORE_CURVE) of predicted surface points (P, 3)
    against ground-truth ones (Q, 3), in box units; every value None when there is no predicted surface.

    One nearest-neighbour search serves every value. device: its route (`point_distances.distance_device`; None for
    KD-trees). truth may be `point_distances.prepare(points, device)`, built once for a truth scored several times.
    """
    if pred is None:
        return {"chamfer_l1": None, "chamfer_l2": None, "f_score": None, "precision": None, "recall": None,
                "f_curve": None}
    d_pred, d_truth = nearest_distances(pred, truth, device)
    l1, l2 = chamfer(d_pred, d_truth)
    main = f_score(d_pred, d_truth, threshold)
    return {"chamfer_l1": l1.item(), "chamfer_l2": l2.item(), "f_score": main["f"],
            "precision": main["precision"], "recall": main["recall"],
            "f_curve": {str(t): f_score(d_pred, d_truth, t)["f"] for t in FSCORE_CURVE}}


def mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def aggregate(records: list[dict], keys: tuple[str, ...]) -> dict:
    """Means of `keys` over records (None values left out) overall and per category, with counts."""
    by_category = defaultdict(list)
    for r in records:
        by_category[r["category"]].append(r)
    summarise = lambda rs: {**{k: mean_or_none(r[k] for r in rs) for k in keys}, "count": len(rs)}
    return {"mean": summarise(records),
            "per_category": {c: summarise(by_category[c]) for c in CATEGORY_NAMES if c in by_category}}


def mesh_surface(vae: TriplaneVAE, triplane: torch.Tensor, args: argparse.Namespace, seed: int,
                 timer: PhaseTimer, task: str):
    """(surface points (P, 3) or None, mesh record) of the marching-cubes mesh of `triplane` (1, 3F, R, R); the
    extraction is timed as `<task>.mesh_s`, the surface sampling as `<task>.surface_points_s`."""
    chunk = CPU_MESH_CHUNK if triplane.device.type == "cpu" else DEFAULT_CHUNK
    try:
        with timer(f"{task}.mesh_s"):
            mesh = triplane_mesh(vae, triplane, args.mesh_resolution, args.mesh_level, chunk=chunk)
    except EmptyMeshError as err:
        return None, {"surface": False, "error": str(err)}
    record = {"surface": True, "vertices": mesh.stats.vertices, "faces": mesh.stats.faces,
              "watertight": mesh.stats.watertight}
    with timer(f"{task}.surface_points_s"):
        points = mesh_to_points(mesh, args.surface_points, seed=seed)
    return points, record


@torch.no_grad()
def render_rgb(vae: TriplaneVAE, triplane: torch.Tensor, cameras: torch.Tensor, resolution: int) -> torch.Tensor:
    """Deterministic renders (N, 3, R, R) in [-1, 1], on the CPU, of `triplane` (1, 3F, R', R') from cameras (N, 25)."""
    chunk = {"chunk": CPU_RENDER_CHUNK} if triplane.device.type == "cpu" else {}
    out = vae.render(triplane, cameras[None].to(triplane.device), resolution, deterministic=True, **chunk)
    return out["rgb"][0].float().cpu().clamp(-1.0, 1.0)


def generation_scores(samples: list[tuple[str, np.ndarray | None]], objects: list[HeldOutObject],
                      args: argparse.Namespace, device: torch.device) -> dict:
    """COV / MMD / 1-NNA of sample surfaces [(category, points or None)] against the held-out objects' surfaces,
    per category (samples against references of their category), their mean over categories, and pooled ("all").
    Samples without a surface are left out and counted."""
    chamfer_device = distance_device(device)
    refs = point_clouds([o.surface for o in objects], args.points, seed=args.seed)
    valid = [(c, p) for c, p in samples if p is not None]
    result = {"failed_samples": len(samples) - len(valid), "points": args.points}
    if not valid:
        return {**result, "skipped": f"no sample has a surface at mesh level {args.mesh_level:g}"}
    clouds = point_clouds([p for _, p in valid], args.points, seed=args.seed)
    ref_categories = [o.category for o in objects]
    sample_categories = [c for c, _ in valid]
    present = [c for c in CATEGORY_NAMES if c in sample_categories]
    pick = lambda tensor, labels, c: tensor[[i for i, label in enumerate(labels) if label == c]]
    per_category = generation_metrics_by_category(
        {c: pick(clouds, sample_categories, c) for c in present}, {c: pick(refs, ref_categories, c) for c in present},
        device=chamfer_device)
    return {**result, "mean": per_category.pop("mean"), "all": generation_metrics(clouds, refs, chamfer_device),
            "per_category": per_category,
            "categories_without_samples": sorted(set(ref_categories) - set(sample_categories))}


def fid_scores(real: torch.Tensor, fake: torch.Tensor, args: argparse.Namespace, device: torch.device) -> dict:
    metrics, reason = compute_fid_kid(real, fake, seed=args.seed, device=device)
    return metrics if metrics is not None else {"skipped": reason}


# ---------------------------------------------------------------------------------------------------------------
# Branches


def evaluate_vae(vae: TriplaneVAE, objects: list[HeldOutObject], args: argparse.Namespace, timer: PhaseTimer,
                 judge_views: bool) -> tuple[dict, list, torch.Tensor | None]:
    """(VAE metrics, per-object (ground-truth novel views, reconstructed views) for the picture, reconstructions
    rendered at the judge views (M, K, 3, r, r): how well the attribute classifier can read what this VAE decodes).
    The judge-view renders serve only text-to-3D's stage-1 ceiling: without `judge_views` they are skipped (None),
    a quarter of the branch's rendering at the default views."""
    device = next(vae.parameters()).device
    nn_device = distance_device(device)
    records, views, judged = [], [], []
    for k, obj in enumerate(tqdm(objects, desc="vae", unit="object")):
        start = time.perf_counter()
        with timer("vae.encode_decode_s"), torch.no_grad():
            latent = vae.encode(obj.encoder_input[None].to(device)).latent(sample=False)
            triplane = vae.decode(latent)
        with timer("vae.render_s"):
            pred = render_rgb(vae, triplane, obj.novel_cameras, args.render_resolution)
            if judge_views:
                judged.append(render_rgb(vae, triplane, obj.judge_cameras, args.judge_resolution))
        points, mesh = mesh_surface(vae, triplane, args, args.seed + k, timer, "vae")
        with timer("vae.image_scores_s"):
            scores = image_scores(pred, obj.novel_rgb)
        with timer("vae.geometry_s"):
            truth = prepare(obj.surface, nn_device)  # one index of the truth for the mesh and the floor
            scores.update(geometry_scores(points, truth, args.fscore_threshold, nn_device))
            floor = geometry_scores(obj.floor, truth, args.fscore_threshold, nn_device)
        records.append({"index": obj.index, "category": obj.category, **scores, "mesh": mesh,
                        "floor_chamfer_l1": floor["chamfer_l1"], "floor_f_score": floor["f_score"],
                        "floor_f_curve": floor["f_curve"], "seconds": time.perf_counter() - start})
        views.append((obj.novel_rgb, pred))
    keys = ("psnr", "ssim", "lpips", "chamfer_l1", "chamfer_l2", "f_score", "precision", "recall",
            "floor_chamfer_l1", "floor_f_score")
    metrics = {**aggregate(records, keys), "views": list(args.novel_views), "resolution": args.render_resolution,
               "mesh_level": args.mesh_level, "meshes_without_surface": sum(not r["mesh"]["surface"] for r in records),
               "f_curve": curve_means(records, "f_curve"), "floor_f_curve": curve_means(records, "floor_f_curve"),
               "objects": records}
    return metrics, views, torch.stack(judged) if judge_views else None


def curve_means(records: list[dict], key: str) -> dict | None:
    curves = [r[key] for r in records if r[key] is not None]
    return {t: float(np.mean([c[t] for c in curves])) for t in curves[0]} if curves else None


def generation_settings(args: argparse.Namespace, position: int) -> GenerationSettings:
    """Settings for the samples of the `position`-th input: sample j uses seed + position·S + j, so every sample of
    the run has its own noise (the pipeline's seed + j alone would give every prompt the same noise)."""
    return GenerationSettings(seed=args.seed + position * args.samples_per_prompt,
                              num_samples=args.samples_per_prompt, steps=args.steps, cfg_scale=args.cfg_scale,
                              sampler=args.sampler, batch_size=args.samples_per_prompt,
                              mesh_resolution=args.mesh_resolution, mesh_level=args.mesh_level)


def resolved_settings(pipeline: Pipeline, args: argparse.Namespace) -> dict:
    s = pipeline.resolve(generation_settings(args, 0))
    return {"sampler": s.sampler, "steps": s.steps, "cfg_scale": s.cfg_scale}


def train_judge(args: argparse.Namespace, device: torch.device,
                timer: PhaseTimer) -> tuple[AttributeClassifier, dict]:
    """The attribute classifier, trained on ground-truth judge-view renders of --classifier-objects objects."""
    start = time.perf_counter()
    indices = range(JUDGE_START_INDEX, JUDGE_START_INDEX + args.classifier_objects)
    config = GenerationConfig(seed=args.data_seed, resolution=args.judge_resolution, view_ids=args.judge_views,
                              device=str(device) if device.type == "cuda" else "cpu")
    with timer("judge.render_s"):
        records = render_records(list(indices), config)
        images = torch.cat([target_tensors(r, args.judge_resolution)["target_rgb"] for r in records])
    views = len(args.judge_views)
    categories, colours = label_ids([r.labels["category"] for r in records for _ in range(views)],
                                    [r.labels["main_color"] for r in records for _ in range(views)])
    with timer("judge.train_s"):
        judge = train_attribute_classifier(images, categories, colours, steps=args.classifier_steps,
                                           seed=args.seed, device=device, num_categories=len(CATEGORY_NAMES),
                                           num_colours=len(COLOR_NAMES), input_size=args.judge_resolution)
    info = {"objects": args.classifier_objects, "first_index": JUDGE_START_INDEX, "images": len(images),
            "views": list(args.judge_views), "resolution": args.judge_resolution, "steps": args.classifier_steps,
            "seconds": time.perf_counter() - start}
    return judge, info


def judge_objects(judge: AttributeClassifier, renders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Category and colour ids of objects from their renders (M, K, 3, r, r): probabilities averaged over views."""
    m, k = renders.shape[:2]
    _, _, probs = judge.predict(renders.flatten(0, 1))
    return (probs["category"].reshape(m, k, -1).mean(1).argmax(1), probs["colour"].reshape(m, k, -1).mean(1).argmax(1))


def accuracy_by_category(records: list[dict]) -> dict:
    by_category = defaultdict(list)
    for r in records:
        by_category[r["category"]].append(r)
    return {c: prompt_accuracy(*ids_of(by_category[c])) for c in CATEGORY_NAMES if c in by_category}


def ids_of(records: list[dict]) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((predicted category ids, colour ids), (prompt category ids, colour ids)) of judged records."""
    return (label_ids([r["pred_category"] for r in records], [r["pred_colour"] for r in records]),
            label_ids([r["category"] for r in records], [r["colour"] for r in records]))


def evaluate_t23d(pipeline: Pipeline, judge: AttributeClassifier, objects: list[HeldOutObject],
                  args: argparse.Namespace, reconstructions: torch.Tensor | None,
                  timer: PhaseTimer) -> tuple[dict, list]:
    """(T23D metrics, per-prompt sample renders at the judge views for the picture). reconstructions: the VAE
    branch's judge-view renders, whose prompt accuracy bounds what samples decoded by this VAE can reach."""
    vae = pipeline.models.vae
    records, renders, surfaces = [], [], []
    for k, obj in enumerate(tqdm(objects, desc="t23d", unit="prompt")):
        settings = generation_settings(args, k)
        with timer("t23d.sampling_s"):
            samples = pipeline.generate([obj.caption], [obj.caption], settings)
        for sample in samples:
            start = time.perf_counter()
            with timer("t23d.render_s"):
                renders.append(render_rgb(vae, sample.triplane, obj.judge_cameras, args.judge_resolution))
            points, mesh = mesh_surface(vae, sample.triplane, args, args.seed + k, timer, "t23d")
            surfaces.append((obj.category, points))
            records.append({"index": obj.index, "prompt": obj.caption, "category": obj.category,
                            "colour": obj.colour, "seed": settings.seed + sample.sample_index, "mesh": mesh,
                            "timings_s": {**sample.timings, "render_mesh_s": time.perf_counter() - start}})
    renders = torch.stack(renders)
    with timer("t23d.judge_s"):
        pred_cat, pred_col = judge_objects(judge, renders)
        for r, c, col in zip(records, pred_cat.tolist(), pred_col.tolist()):
            r["pred_category"], r["pred_colour"] = CATEGORY_NAMES[c], COLOR_NAMES[col]
        truth = torch.stack([o.judge_rgb for o in objects])
        gt_pred = judge_objects(judge, truth)
        gt_target = label_ids([o.category for o in objects], [o.colour for o in objects])
        accuracy = {"generated": prompt_accuracy(*ids_of(records)),
                    "ground_truth": prompt_accuracy(gt_pred, gt_target)}
        if reconstructions is not None:
            accuracy["vae_reconstructions"] = prompt_accuracy(judge_objects(judge, reconstructions), gt_target)
    with timer("t23d.generation_metrics_s"):
        generation = generation_scores(surfaces, objects, args, pipeline.device)
    with timer("t23d.fid_s"):
        fid = fid_scores(truth.flatten(0, 1), renders.flatten(0, 1), args, pipeline.device)
    metrics = {
        **resolved_settings(pipeline, args),
        "prompt_accuracy": {**accuracy, "per_category": accuracy_by_category(records)},
        "generation": generation,
        "fid": fid,
        "meshes_without_surface": sum(not r["mesh"]["surface"] for r in records),
        "seconds_per_sample": mean_or_none(r["timings_s"]["sampling_s"] for r in records),
        "samples": records,
    }
    return metrics, [renders[i * args.samples_per_prompt:(i + 1) * args.samples_per_prompt]
                     for i in range(len(objects))]


def evaluate_i23d(pipeline: Pipeline, objects: list[HeldOutObject], args: argparse.Namespace,
                  timer: PhaseTimer) -> tuple[dict, list]:
    """(I23D metrics, per-input (input view, sample renders at input + novel cameras) for the picture)."""
    vae = pipeline.models.vae
    nn_device = distance_device(pipeline.device)
    records, surfaces, fakes, views = [], [], [], []
    for k, obj in enumerate(tqdm(objects, desc="i23d", unit="image")):
        settings = generation_settings(args, k)
        with timer("i23d.sampling_s"):
            samples = pipeline.generate([obj.condition_rgb], [f"object {obj.index}"], settings)
        truth = None
        for sample in samples:
            start = time.perf_counter()
            cameras = torch.cat([obj.condition_camera[None], obj.novel_cameras])
            with timer("i23d.render_s"):
                rgb = render_rgb(vae, sample.triplane, cameras, args.render_resolution)
            points, mesh = mesh_surface(vae, sample.triplane, args, args.seed + k, timer, "i23d")
            surfaces.append((obj.category, points))
            fakes.append(rgb[1:])
            views.append((obj, rgb))
            with timer("i23d.image_scores_s"):
                input_view = image_scores(rgb[:1], obj.condition_rgb[None])
                novel = image_scores(rgb[1:], obj.novel_rgb)
            with timer("i23d.geometry_s"):
                if truth is None and points is not None:  # one index of the input object for all its samples
                    truth = prepare(obj.surface, nn_device)
                geometry = geometry_scores(points, truth, args.fscore_threshold, nn_device)
            records.append({"index": obj.index, "category": obj.category, "seed": settings.seed + sample.sample_index,
                            "input_psnr": input_view["psnr"], "input_ssim": input_view["ssim"],
                            "novel_psnr": novel["psnr"], "novel_ssim": novel["ssim"], "novel_psnr_views":
                            novel["psnr_views"], **geometry, "mesh": mesh,
                            "timings_s": {**sample.timings, "render_mesh_s": time.perf_counter() - start}})
    keys = ("input_psnr", "input_ssim", "novel_psnr", "novel_ssim", "chamfer_l1", "f_score")
    real = torch.cat([o.novel_rgb for o in objects])
    with timer("i23d.generation_metrics_s"):
        generation = generation_scores(surfaces, objects, args, pipeline.device)
    with timer("i23d.fid_s"):
        fid = fid_scores(real, torch.cat(fakes), args, pipeline.device)
    metrics = {**resolved_settings(pipeline, args), **aggregate(records, keys),
               "condition_view": args.condition_view, "novel_views": list(args.novel_views),
               "resolution": args.render_resolution, "f_curve": curve_means(records, "f_curve"),
               "generation": generation,
               "fid": fid,
               "meshes_without_surface": sum(not r["mesh"]["surface"] for r in records),
               "seconds_per_sample": mean_or_none(r["timings_s"]["sampling_s"] for r in records),
               "samples": records}
    return metrics, views


# ---------------------------------------------------------------------------------------------------------------
# Targets, pictures, report


def issue_targets(metrics: dict) -> list[dict]:
    """The issue's quality targets next to the measured values (None where a task was not run or has no value)."""
    s = metrics["settings"]
    resolution, threshold = s["render_resolution"], s["fscore_threshold"]
    targets = [
        (f"VAE PSNR at {resolution}² (dB)", ("vae", "mean", "psnr"), ">=", 28.0),
        ("VAE mesh Chamfer-L1 (box units)", ("vae", "mean", "chamfer_l1"), "<=", 0.01),
        (f"VAE mesh F-score@{threshold:g}", ("vae", "mean", "f_score"), ">=", 0.9),
        ("T23D category+colour accuracy (%)", ("t23d", "prompt_accuracy", "generated", "both"), ">=", 90.0),
        ("T23D COV (%, mean over categories)", ("t23d", "generation", "mean", "cov"), ">=", 45.0),
        ("T23D 1-NNA (%, mean over categories)", ("t23d", "generation", "mean", "1-nna"), "<=", 65.0),
        ("I23D COV (%, mean over categories)", ("i23d", "generation", "mean", "cov"), ">=", 45.0),
        ("I23D 1-NNA (%, mean over categories)", ("i23d", "generation", "mean", "1-nna"), "<=", 65.0),
        # With few references per category, per-category COV and 1-NNA are coarse (one sample against one
        # reference always scores COV 100 %, 1-NNA 0 %); the pooled set is the more telling number then.
        ("T23D COV (%, pooled)", ("t23d", "generation", "all", "cov"), ">=", 45.0),
        ("T23D 1-NNA (%, pooled)", ("t23d", "generation", "all", "1-nna"), "<=", 65.0),
        ("I23D COV (%, pooled)", ("i23d", "generation", "all", "cov"), ">=", 45.0),
        ("I23D 1-NNA (%, pooled)", ("i23d", "generation", "all", "1-nna"), "<=", 65.0),
    ]
    rows = []
    for name, path, op, goal in targets:
        value = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        met = None if value is None else bool(value >= goal if op == ">=" else value <= goal)
        rows.append({"target": name, "goal": f"{op} {goal:g}", "measured": value,
                     "met": None if met is None else ("yes" if met else "no"),
                     "missed_by": abs(value - goal) if met is False else None})
    return rows


def figure(path: Path, rows: list[list[torch.Tensor]], captions: list[str]) -> Path:
    """A picture of rows of images (3, H, W) in [-1, 1], each row captioned under its first image, tiles at
    FIGURE_TILE², written as a 128-colour PNG (flat renders lose little visibly, the file shrinks 3-4×)."""
    tiles, cell_captions = [], []
    for row, caption in zip(rows, captions):
        for j, image in enumerate(row):
            image = torch.nn.functional.interpolate(image[None].float(), size=(FIGURE_TILE, FIGURE_TILE),
                                                    mode="bilinear", antialias=True, align_corners=False)[0]
            tiles.append(image.add(1).div(2).clamp(0, 1).permute(1, 2, 0))
            cell_captions.append(caption if j == 0 else "")
    sheet = contact_sheet(tiles, columns=len(rows[0]), captions=cell_captions, font_size=12)
    return write_image(path, sheet.quantize(colors=128), overwrite=True)


def showcase(objects: list[HeldOutObject], limit: int) -> list[int]:
    """Positions of up to `limit` objects: the first of every category, then the rest in order."""
    first, seen = [], set()
    for k, obj in enumerate(objects):
        if obj.category not in seen:
            seen.add(obj.category)
            first.append(k)
    rest = [k for k in range(len(objects)) if k not in first]
    return sorted(first[:limit] + rest[:max(0, limit - len(first))])


def vae_figure(path: Path, objects, views, limit: int) -> Path:
    shown = showcase(objects, limit)
    rows = [[im for pair in zip(views[k][0][:2], views[k][1][:2]) for im in pair] for k in shown]
    captions = [f"{objects[k].category}: truth | VAE | truth | VAE" for k in shown]
    return figure(path, rows, captions)


def t23d_figure(path: Path, objects, renders, metrics: dict, limit: int) -> Path:
    shown = showcase(objects, limit)
    samples = metrics["samples"]
    per_prompt = len(renders[0])
    rows, captions = [], []
    for k in shown:
        rows.append([objects[k].judge_rgb[0], *renders[k].flatten(0, 1)])
        judged = samples[k * per_prompt]
        captions.append(f"\"{objects[k].caption}\", judged: {judged['pred_colour']} {judged['pred_category']}")
    return figure(path, rows, captions)


def i23d_figure(path: Path, objects, views, limit: int, per_input: int) -> Path:
    shown = showcase(objects, limit)
    rows, captions = [], []
    for k in shown:
        obj, rgb = views[k * per_input]
        rows.append([obj.condition_rgb, rgb[0], *[im for pair in zip(obj.novel_rgb[:2], rgb[1:3]) for im in pair]])
        captions.append(f"{obj.category}: input | sample | truth | sample | truth | sample")
    return figure(path, rows, captions)


def read_training_log(path: Path) -> dict:
    """Steps, wall time and the loss curve (first key of LOSS_KEYS present) of a training log .jsonl.

    A resumed run appends an event row and restarts its clock and, from the resumed checkpoint, its steps: wall time
    sums the segments, and a step logged twice keeps its later (resumed) value.
    """
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "step" in r]
    key = next((k for k in LOSS_KEYS if steps and k in steps[0]), None)
    if key is None:
        raise ValueError(f"training log {path} has none of the loss keys {', '.join(LOSS_KEYS)}")
    segment_ends, resumes = [0.0], 0
    for r in rows:
        if "step" not in r:
            segment_ends.append(0.0)
            resumes += 1
        elif "time" in r:
            segment_ends[-1] = r["time"]
    curve = sorted({r["step"]: r[key] for r in steps if key in r}.items())
    summary = {"last_step": steps[-1]["step"], "wall_s": sum(segment_ends), "resumes": resumes, "loss_key": key,
               "first_loss": curve[0][1], "last_loss": curve[-1][1], "min_loss": min(v for _, v in curve)}
    if "psnr" in steps[-1]:
        summary["first_train_psnr"], summary["last_train_psnr"] = steps[0]["psnr"], steps[-1]["psnr"]
    return {"summary": summary, "curve": curve}


def training_section(logs: list[Path], figures: Path, report_dir: Path) -> str:
    parsed = {path.stem: read_training_log(path) for path in logs}
    plot = plot_metric(figures / "training_loss.png", {name: log["curve"] for name, log in parsed.items()},
                       title="training objective", x_label="step", y_label="loss", overwrite=True)
    notes = ("Training objective per logged step (`loss` for the diffusion models, the VAE's `total`); the "
             "`*_train_psnr` columns are the VAE's PSNR on its training patches. `wall_s` sums the segments of "
             "resumed runs.")
    rows = {name: log["summary"] for name, log in parsed.items()}
    return markdown_section("Training logs", {"Summary": rows}, [("training objective", plot)], notes,
                            relative_to=report_dir, formats={"wall_s": "{:.0f}"})


def report(metrics: dict, args: argparse.Namespace) -> str:
    """The Markdown report of `metrics` (as written to metrics.json), pictures linked relative to --report-md."""
    report_dir = args.report_md.parent
    figures = metrics.get("figures", {})
    image = lambda name, caption: [(caption, figures[name])] if name in figures else []
    s = metrics["settings"]
    parts = [f"# Evaluation of `{metrics['checkpoint']}`\n",
             f"Generated by `scripts/evaluate.py` ({metrics['device']}, {metrics['timings_s']['total_s'] / 60:.1f} "
             f"min). Evaluation command:\n\n```bash\n{metrics['command']}\n```\n",
             *([f"Report written from its metrics.json by:\n\n```bash\n"
                f"{shlex.join(['python', 'scripts/evaluate.py', *args.argv])}\n```\n"] if args.report_only else []),
             f"Held-out objects: {s['num_objects']} procedural objects of dataset seed {s['data_seed']}, indices "
             f"{s['start_index']}–{s['start_index'] + s['num_objects'] - 1} (the training set is indices 0–1999 of "
             "seed 0), balanced over the 12 categories.\n"]
    if not metrics.get("finished", True):  # files written before the run-wide flag existed were always complete
        missing = [t for t in metrics["tasks"] if t not in metrics.get("completed_tasks", [])]
        parts.append(f"**Partial run**: it stopped before finishing {', '.join(missing)}; the sections below hold "
                     "the tasks it completed.\n")
    targets = {t["target"]: {k: v for k, v in t.items() if k != "target"} for t in metrics["targets"]}
    parts.append(markdown_section("Issue targets", {"Measured against the targets": targets}, level=2))
    if args.notes is not None:
        if not args.notes.is_file():
            raise FileNotFoundError(f"--notes file {args.notes} does not exist")
        parts.append(args.notes.read_text().strip() + "\n")
    formats = {"psnr": "{:.2f}", "ssim": "{:.3f}", "chamfer_l1": "{:.4f}", "f_score": "{:.3f}", "cov": "{:.1f}",
               "1-nna": "{:.1f}", "mmd": "{:.3g}", "input_psnr": "{:.2f}", "novel_psnr": "{:.2f}"}
    if "vae" in metrics:
        v = metrics["vae"]
        notes = (f"Encoder views → posterior mean → triplane; rig views {v['views']} rendered at {v['resolution']}² "
                 f"and compared with the ground truth. Mesh: marching cubes at level {v['mesh_level']:g} on raw σ "
                 f"({s['mesh_resolution']}³ grid), {s['surface_points']} surface points per side; the `floor_*` "
                 "columns compare two independent samplings of the true surface (the best any mesh can score). "
                 f"Meshes without a surface at that level: {v['meshes_without_surface']}. LPIPS: "
                 f"{metrics.get('lpips_skipped') or 'computed'}.")
        tables = {"Mean": {"all objects": v["mean"]}, "Per category": v["per_category"]}
        parts.append(markdown_section("VAE reconstruction", tables, image("vae", "truth | reconstruction")
                                      + image("f_curve", "F-score against distance threshold"), notes,
                                      relative_to=report_dir, formats=formats))
    if "t23d" in metrics:
        t = metrics["t23d"]
        acc = t["prompt_accuracy"]
        notes = (f"Sampler {t['sampler']}, {t['steps']} steps, guidance {t['cfg_scale']:g}, "
                 f"{s['samples_per_prompt']} sample(s) per prompt, {t['seconds_per_sample']:.1f} s per sample. "
                 f"Judge: {metrics['judge']['objects']} objects × {len(metrics['judge']['views'])} views at "
                 f"{metrics['judge']['resolution']}², {metrics['judge']['steps']} steps. Its accuracy on the held-out "
                 "objects' ground-truth renders is the ceiling of what it can confirm; on their VAE reconstructions, "
                 "the ceiling of any sample this VAE decodes. "
                 f"Meshes without a surface: {t['meshes_without_surface']}. FID/KID: "
                 f"{t['fid'].get('skipped') or t['fid']}.")
        rows = {"generated": acc["generated"], "ground-truth renders (judge ceiling)": acc["ground_truth"]}
        if "vae_reconstructions" in acc:
            rows["VAE reconstructions (stage-1 ceiling)"] = acc["vae_reconstructions"]
        tables = {"Prompt accuracy (%)": rows,
                  "Prompt accuracy per category (%)": acc["per_category"], **generation_tables(t["generation"])}
        parts.append(markdown_section("Text-to-3D", tables, image("t23d", "prompt | truth | sample views"), notes,
                                      relative_to=report_dir, formats=formats))
    if "i23d" in metrics:
        i = metrics["i23d"]
        notes = (f"Input: rig view {i['condition_view']} at {i['resolution']}²; scored at the input camera and at "
                 f"views {i['novel_views']}; geometry against the input object. Sampler {i['sampler']}, "
                 f"{i['steps']} steps, guidance {i['cfg_scale']:g}, {i['seconds_per_sample']:.1f} s per sample. "
                 f"Meshes without a surface: {i['meshes_without_surface']}. FID/KID: "
                 f"{i['fid'].get('skipped') or i['fid']}.")
        tables = {"Mean": {"all inputs": i["mean"]}, "Per category": i["per_category"],
                  **generation_tables(i["generation"])}
        parts.append(markdown_section("Image-to-3D", tables, image("i23d", "input | sample | truth | sample"), notes,
                                      relative_to=report_dir, formats=formats))
    if args.training_logs:
        parts.append(training_section(args.training_logs, args.figures, report_dir))
    parts.append(markdown_section("Settings and timings", {
        "Settings": {k: {"value": str(v)} for k, v in s.items()},
        "Timings (s)": {k: {"seconds": v} for k, v in metrics["timings_s"].items()}}, formats={"seconds": "{:.1f}"}))
    return "\n".join(parts)


def generation_tables(g: dict) -> dict:
    if "skipped" in g:
        return {f"COV / MMD / 1-NNA: skipped ({g['skipped']})": {}}
    rows = {**g["per_category"], "mean over categories": g["mean"], "all (pooled)": g["all"]}
    return {f"COV / MMD / 1-NNA ({g['points']} points, MMD in Chamfer-L2 units²)": rows}


# ---------------------------------------------------------------------------------------------------------------
# Driver


def checkpoint_tasks(ckpt: str | None) -> tuple[Path, list[str]]:
    """(the checkpoint folder, the stages it has: 'vae' plus the generation tasks)."""
    path = resolve_checkpoint(ckpt)
    if not (path.is_dir() and (path / "vae").is_dir()):
        raise CheckpointError(f"{path} is not a pipeline folder (<dir>/vae plus <dir>/t23d and/or <dir>/i23d); "
                              "evaluate.py reads the layout scripts/export_pipeline.py writes")
    return path, ["vae", *[t for t in TASKS if (path / t).is_dir()]]


def pick_tasks(requested: str | None, available: list[str], path: Path) -> list[str]:
    if requested is None:
        return available
    tasks = [t.strip() for t in requested.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in ("vae", *TASKS)]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r} in --tasks; choose from vae, {', '.join(TASKS)}")
    missing = [t for t in tasks if t not in available]
    if missing:
        raise CheckpointError(f"{path} has no {missing[0]} model; it has {', '.join(available)}")
    return tasks


def fscore_figure(results: dict, figures: Path) -> Path | None:
    """The F-score-against-threshold picture of the curves measured so far (None before any)."""
    curves = {name: results[task][key] for name, task, key in (
        ("VAE reconstruction", "vae", "f_curve"), ("I23D vs input object", "i23d", "f_curve"),
        ("sampling floor", "vae", "floor_f_curve")) if task in results and results[task][key] is not None}
    if not curves:
        return None
    series = {name: [(float(t), f) for t, f in curve.items()] for name, curve in curves.items()}
    return plot_metric(figures / "fscore_curve.png", series, title="F-score against threshold",
                       x_label="threshold (box units)", y_label="F-score", overwrite=True)


def evaluate(args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    metrics_file = MetricsFile(args.out / METRICS_FILE)
    if metrics_file.path.exists():
        raise FileExistsError(f"{metrics_file.path} exists; pass a new --out (or --report-only)")
    if args.start_index < JUDGE_START_INDEX + args.classifier_objects and \
            JUDGE_START_INDEX < args.start_index + args.num_objects:
        raise ValueError(f"held-out indices overlap the classifier's objects {JUDGE_START_INDEX}.."
                         f"{JUDGE_START_INDEX + args.classifier_objects - 1}; pick another --start-index")
    path, available = checkpoint_tasks(args.ckpt)
    tasks = pick_tasks(args.tasks, available, path)
    device = pick_device(args.device)
    timer = PhaseTimer(device)
    with timer("load_vae_s"):
        vae = load_vae_folder(path / "vae", device)
    with timer("ground_truth_s"):
        objects = held_out_objects(args, vae, device, tasks, timer)
    settings = {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items() if k not in ("argv", "out", "report_md", "figures", "notes",
                                                             "training_logs", "report_only")}
    lpips_path = lpips_backbone_path("alex")
    header = {"command": shlex.join(["python", "scripts/evaluate.py", *args.argv]),
              "checkpoint": str(args.ckpt or path), "device": str(device), "tasks": tasks, "settings": settings,
              "lpips_skipped": None if lpips_path.is_file() else f"LPIPS backbone weights not at {lpips_path}"}
    results, figures, completed = {}, {}, []

    def save(finished: bool) -> dict:
        """Write metrics.json as it stands: every finished task, timings so far, the targets measured so far."""
        curve_figure = fscore_figure(results, args.figures)
        if curve_figure is not None:
            figures["f_curve"] = curve_figure
        metrics = {**header, "finished": finished, "completed_tasks": list(completed), **results,
                   "figures": {k: str(v) for k, v in figures.items()},
                   "timings_s": {**timer.seconds, "total_s": time.perf_counter() - t_start}}
        metrics["targets"] = issue_targets(metrics)
        metrics_file.write(metrics)
        return metrics

    save(finished=False)  # claims OUT/metrics.json for this run before the long work
    reconstructions = None
    if "vae" in tasks:
        with timer("vae_s"):
            results["vae"], views, reconstructions = evaluate_vae(vae, objects, args, timer, "t23d" in tasks)
            with timer("vae.figure_s"):
                figures["vae"] = vae_figure(args.figures / "vae_reconstructions.png", objects, views,
                                            args.figure_rows)
        completed.append("vae")
        save(finished=False)
    if "t23d" in tasks:
        with timer("judge_s"):
            judge, results["judge"] = train_judge(args, device, timer)
        with timer("t23d_s"):
            with timer("t23d.load_s"):
                pipeline = Pipeline.from_checkpoint(path, "t23d", device)
            results["t23d"], renders = evaluate_t23d(pipeline, judge, objects, args, reconstructions, timer)
            with timer("t23d.figure_s"):
                figures["t23d"] = t23d_figure(args.figures / "t23d_samples.png", objects, renders, results["t23d"],
                                              args.figure_rows)
        del pipeline, judge
        completed.append("t23d")
        save(finished=False)
    if "i23d" in tasks:
        with timer("i23d_s"):
            with timer("i23d.load_s"):
                pipeline = Pipeline.from_checkpoint(path, "i23d", device)
            results["i23d"], views = evaluate_i23d(pipeline, objects, args, timer)
            with timer("i23d.figure_s"):
                figures["i23d"] = i23d_figure(args.figures / "i23d_samples.png", objects, views, args.figure_rows,
                                              args.samples_per_prompt)
        del pipeline
        completed.append("i23d")
    return save(finished=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    def go():
        if args.report_only:
            path = args.out / METRICS_FILE
            if not path.is_file():
                raise FileNotFoundError(f"--report-only needs {path}; run the evaluation first")
            metrics = json.loads(path.read_text())
        else:
            metrics = evaluate(args)
        write_markdown(args.report_md, report(metrics, args), overwrite=True)
        for t in metrics["targets"]:
            if t["measured"] is not None:
                verdict = "met" if t["met"] == "yes" else f"missed by {format_value(t['missed_by'])}"
                print(f"{t['target']}: {format_value(t['measured'])} (target {t['goal']}, {verdict})")
        print(f"evaluate.py: metrics → {args.out / METRICS_FILE}, report → {args.report_md}")

    return main_guard(go)


if __name__ == "__main__":
    sys.exit(main())
