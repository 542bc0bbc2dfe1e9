"""VAE reconstruction: encode stored objects, render novel views, and score them (spec §7.6).

    python scripts/reconstruct.py --ckpt VAE_DIR --data DATA_DIR --out OUT [--index 0 --index 5 | --object-id ID]
    python scripts/reconstruct.py --ckpt VAE_DIR --mesh FILE_OR_DIR --out OUT [--up y] [--resolution 256]

Per object the encoder views (25, 0, 9, 18, 27, 33, or the first few a smaller VAE trained on) are encoded to the
posterior mean (deterministic; `--sample-posterior` draws a seeded sample instead) and decoded to a triplane; every
other stored view is rendered deterministically and compared with the ground truth (PSNR / SSIM, LPIPS when its
backbone is on disk). Written to `OUT/<object>/`: `views.png` (ground truth above, reconstruction below),
`turntable.mp4`, the mesh, `latent.npy` and `metrics.json`; `OUT/reconstruction.json` holds the settings, every
object's metrics and their means.

`--mesh` takes mesh files instead of a store (every OBJ/glTF/GLB/PLY/OFF/STL under a folder): each is normalised
and rendered on the 40-view G-Objaverse rig by the renderer of scripts/render_meshes.py, and the record adds the
Chamfer distance and F-score between the extracted mesh and the input mesh (both normalised to the box, points
sampled on their surfaces).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

import numpy as np
import torch

from datasets.errors import BadSampleError
from datasets.meshes.load import MESH_SUFFIXES, find_meshes, load_mesh, normalise
from datasets.meshes.records import mesh_object_id, mesh_record
from datasets.multiview import target_tensors
from datasets.rig import NUM_RIG_VIEWS
from datasets.stores import InMemoryStore, ObjectStore, open_store
from evaluations.image_metrics import image_metrics
from guided_diffusion.cli import pick_device, slug
from guided_diffusion.pipeline import GENERATION_LIMITS, triplane_mesh, turntable_frames
from nsr.encoding import default_encoder_views, parse_view_ids, record_encoder_input
from nsr.mesh import (
    EmptyMeshError,
    Mesh,
    MeshStats,
    chamfer_distance,
    f_score,
    mesh_to_points,
    rotate_to_y_up,
    save_mesh,
)
from nsr.vae import TriplaneVAE
from utils.checkpoint import CheckpointError, resolve_model_folder
from utils.media import contact_sheet, write_image, write_json_record, write_video
from utils.training import derive_seed
from utils.validation import SEED, Limit, check_args


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="VAE model folder, checkpoint-* folder or training run directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="dataset directory of any store format (docs/DATA.md)")
    source.add_argument("--mesh", help="a mesh file, or a folder of them, rendered here (scripts/render_meshes.py)")
    p.add_argument("--up", choices=("z", "y"), default="z", help="--mesh: the source's up axis")
    p.add_argument("--points", type=int, default=20000, help="--mesh: surface points per mesh for Chamfer/F-score")
    p.add_argument("--fscore-threshold", type=float, default=0.02, help="--mesh: F-score distance (box units)")
    p.add_argument("--out", required=True, help="output folder (existing files are never replaced)")
    p.add_argument("--index", type=int, action="append", default=[], help="store index of an object (repeatable)")
    p.add_argument("--object-id", action="append", default=[], help="object id, e.g. chair/0/3 (repeatable)")
    p.add_argument("--views", type=parse_view_ids, default=None,
                   help="encoder rig views, comma-separated (default: those the VAE trained on, the first "
                        "encoder num_views of 25,0,9,18,27,33)")
    p.add_argument("--eval-views", type=parse_view_ids, default=None,
                   help="rig views to render and score (default: every stored view that is not encoded)")
    p.add_argument("--resolution", type=int, default=None,
                   help="render / metric resolution (default: the data's; 128 for --mesh)")
    p.add_argument("--sample-posterior", action="store_true", help="decode a seeded posterior sample, not the mean")
    p.add_argument("--seed", type=int, default=0, help="posterior sample seed (with the object id)")
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto")
    p.add_argument("--video-views", type=int, default=24)
    p.add_argument("--video-resolution", type=int, default=128)
    p.add_argument("--video-fps", type=float, default=15.0)
    p.add_argument("--mesh-resolution", type=int, default=192)
    p.add_argument("--mesh-level", type=float, default=10.0, help="iso-level on raw density")
    p.add_argument("--mesh-format", choices=("ply", "obj", "glb"), default="ply")
    p.add_argument("--no-mesh", action="store_true", help="skip mesh extraction")
    args = p.parse_args(argv)
    # before the model load and the renders (docs/RELIABILITY.md); the sampling CLIs' limits where flags are shared
    shared = {f"--{k.replace('_', '-')}": GENERATION_LIMITS[k]
              for k in ("video_views", "video_resolution", "video_fps", "mesh_resolution")}
    check_args("reconstruct.py", args, {**shared, "--seed": SEED, "--points": Limit(1, 10**8, whole=True),
                                        "--resolution": Limit(2, 2048, whole=True),
                                        "--fscore-threshold": Limit(0, 1)})
    if not args.index and not args.object_id and not args.mesh:
        args.index = [0]
    return args


def find_indices(store: ObjectStore, object_ids: list[str]) -> list[int]:
    by_id = {store.object_id(i): i for i in range(len(store))}
    missing = [o for o in object_ids if o not in by_id]
    if missing:
        raise KeyError(f"object {missing[0]!r} is not in {store.location} ({len(store)} objects, e.g. "
                       f"{next(iter(by_id))!r})")
    return [by_id[o] for o in object_ids]


@torch.no_grad()
def reconstruct_object(vae: TriplaneVAE, store: ObjectStore, index: int, args: argparse.Namespace,
                       out_dir: Path, reference: np.ndarray | None = None) -> dict:
    """Encode, decode, render, score and export one object; returns its record. `reference` `(P, 3)`: points on
    the input surface (z-up box) that the extracted mesh is scored against (Chamfer, F-score)."""
    record = store.read(index)
    views = args.views or default_encoder_views(vae.config)
    eval_views = args.eval_views or tuple(int(v) for v in record.view_ids if int(v) not in views)
    if not eval_views:
        raise ValueError(f"object {record.object_id} has no stored view besides the encoder views {list(views)}; "
                         f"pass --eval-views")
    device = next(vae.parameters()).device
    start = time.perf_counter()
    posterior = vae.encode(record_encoder_input(record, views, vae.config)[None].to(device))
    generator = torch.Generator(device).manual_seed(derive_seed(args.seed, record.object_id))
    latent = posterior.latent(sample=args.sample_posterior, generator=generator)
    triplane = vae.decode(latent)
    resolution = args.resolution or record.resolution
    target = target_tensors(record.select(eval_views), resolution)
    pred = vae.render(triplane, target["target_cameras"][None].to(device), resolution, deterministic=True)
    pred_rgb = pred["rgb"][0].float().cpu().clamp(-1, 1)
    metrics = image_metrics(pred_rgb, target["target_rgb"], value_range=(-1.0, 1.0))
    timings = {"reconstruct_s": time.perf_counter() - start}

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"views": write_image(out_dir / "views.png", contact_sheet(
        [*target["target_rgb"].add(1).div(2).permute(0, 2, 3, 1), *pred_rgb.add(1).div(2).permute(0, 2, 3, 1)],
        columns=len(eval_views)))}
    np.save(out_dir / "latent.npy", latent[0].cpu().numpy())
    files["latent"] = out_dir / "latent.npy"
    start = time.perf_counter()
    frames = turntable_frames(vae, triplane, args.video_views, args.video_resolution)
    files["video"] = write_video(out_dir / "turntable.mp4", frames, fps=args.video_fps)
    timings["video_s"] = time.perf_counter() - start
    mesh_record = None
    if not args.no_mesh:
        start = time.perf_counter()
        try:
            mesh = triplane_mesh(vae, triplane, args.mesh_resolution, args.mesh_level)
        except EmptyMeshError as e:
            mesh_record = {"error": str(e)}
        else:
            files["mesh"] = save_mesh(mesh, out_dir / f"mesh.{args.mesh_format}")
            mesh_record = {"vertices": mesh.stats.vertices, "faces": mesh.stats.faces,
                           "watertight": mesh.stats.watertight}
            if reference is not None:  # the extracted mesh is y-up (the release's export convention)
                points = mesh_to_points(mesh, len(reference), seed=args.seed)
                target = rotate_to_y_up(reference)
                mesh_record.update(chamfer=chamfer_distance(points, target),
                                   f_score=f_score(points, target, args.fscore_threshold),
                                   fscore_threshold=args.fscore_threshold)
        timings["mesh_s"] = time.perf_counter() - start
    result = {"index": index, "object_id": record.object_id, "caption": record.caption, "views": list(views),
              "eval_views": list(eval_views), "resolution": resolution, **metrics, "mesh": mesh_record,
              "timings_s": timings, "files": {k: Path(v).name for k, v in files.items()}}
    write_json_record(out_dir / "metrics.json", result)
    return result


def mesh_store(args: argparse.Namespace, device) -> tuple[InMemoryStore, dict[str, np.ndarray]]:
    """--mesh: every mesh rendered on the whole rig (at --resolution, default 128) into memory, and points on each
    normalised input surface `(args.points, 3)`, keyed by object id. A bad file raises its one-line MeshError."""
    root = Path(args.mesh)
    base = root if root.is_dir() else root.parent
    records, references = [], {}
    for path in find_meshes(root):
        rel = path.relative_to(base).as_posix()
        asset = normalise(load_mesh(path), up=args.up)
        records.append(mesh_record(asset, rel, range(NUM_RIG_VIEWS), args.resolution or 128, caption=path.stem,
                                   device=device))
        corners = asset.corners
        surface = Mesh(corners.reshape(-1, 3), np.arange(corners.shape[0] * 3).reshape(-1, 3),
                       np.zeros((corners.shape[0] * 3, 3), np.uint8), MeshStats(0, 0, False, 0.0))
        references[mesh_object_id(rel)] = mesh_to_points(surface, args.points, seed=args.seed)
    if not records:
        raise FileNotFoundError(f"no mesh files ({', '.join(MESH_SUFFIXES)}) under {root}")
    return InMemoryStore(records, location=str(root)), references


def reconstruct(args: argparse.Namespace) -> dict:
    from checkpoints.loader import load_vae_folder

    out = Path(args.out)
    if (out / "reconstruction.json").exists():
        raise FileExistsError(f"{out / 'reconstruction.json'} exists; pass a new --out")
    device = pick_device(args.device)
    vae_folder = resolve_model_folder(args.ckpt).resolve()
    vae = load_vae_folder(vae_folder, device)
    references: dict[str, np.ndarray] = {}
    if args.mesh:
        store, references = mesh_store(args, device)
    else:
        store = open_store(args.data)
    indices = list(args.index) + find_indices(store, args.object_id)
    if args.mesh and not args.index and not args.object_id:
        indices = list(range(len(store)))
    objects = [reconstruct_object(vae, store, i, args, out / slug(store.object_id(i), limit=80),
                                  references.get(store.object_id(i))) for i in indices]
    keys = [k for k in ("psnr", "ssim", "lpips") if all(o[k] is not None for o in objects)]
    summary = {"vae": str(vae_folder), "data": str(Path(args.data or args.mesh).resolve()), "device": str(device),
               "settings": {k: v for k, v in vars(args).items() if k not in ("ckpt", "data", "out")},
               "mean": {k: float(np.mean([o[k] for o in objects])) for k in keys}, "objects": objects}
    write_json_record(out / "reconstruction.json", summary)
    return summary


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        summary = reconstruct(args)
    except (CheckpointError, BadSampleError, FileNotFoundError, FileExistsError, ValueError, KeyError,
            IndexError) as e:
        print(f"reconstruct.py: error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        raise SystemExit(1) from None
    scores = ", ".join(f"{k} {v:.4g}" for k, v in summary["mean"].items())
    print(f"reconstruct.py: {len(summary['objects'])} object(s) → {args.out}; mean {scores}")


if __name__ == "__main__":
    main()
