"""Render a folder of meshes on the G-Objaverse rig into a stage-1 store (no Blender, no CUDA build).

    python scripts/render_meshes.py --meshes my_meshes/ --out data/mine --views 40 --resolution 256 \
        --format gobjaverse --device cuda --skip-bad [--up y] [--captions captions.csv] [--shard K/N]

Every OBJ/glTF/GLB/PLY/OFF/STL file under --meshes (recursively) is one object: loaded with trimesh, normalised into
[-0.45, 0.45]³ (z-up; --up y for y-up sources such as glTF), rendered with the plain-torch rasteriser of
datasets/meshes/raster.py (RGBA on white, depth, world normals) and written through the stores of datasets/stores.

Resume: a re-run into the same --out skips objects already complete (gobjaverse, chunks) or shard parts already
complete (lmdb, wds: a part is one store written in one go; an interrupted one is moved aside and redone).
Shards: --shard K/N takes the objects whose path hash is K mod N; under torchrun each rank takes its own slice of
that shard. gobjaverse shards all write into --out (one folder per object); the other formats write
--out/part-KKKKK-of-NNNNN. See docs/DATA.md, "Train on your own meshes".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

from tqdm import tqdm

from datasets.meshes.load import MeshError, find_meshes, load_mesh, normalise
from datasets.meshes.raster import RasterConfig
from datasets.meshes.records import RIGS, caption_for, in_shard, mesh_object_id, mesh_record, read_caption_table
from datasets.rig import NUM_RIG_VIEWS, default_view_ids
from datasets.stores import FORMATS, make_writer
from datasets.stores.chunks import INDEX_FILE
from datasets.stores.gobjaverse import META_FILE, VIEW_FOLDER

DONE_FILE = "render_meshes.json"  # lmdb / wds parts: written after the store is closed


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: write K/N with 0 <= K < N") from None
    return k, n


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meshes", required=True, help="a folder of mesh files (searched recursively) or one file")
    parser.add_argument("--out", required=True, help="output store folder")
    parser.add_argument("--views", type=int, default=None,
                        help=f"views per object: {NUM_RIG_VIEWS} = whole rig (default; 12 for chunks), fewer = the "
                             "chunk views first (6 = the encoder views)")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--format", choices=FORMATS, default="gobjaverse")
    parser.add_argument("--rig", choices=RIGS, default="gobjaverse")
    parser.add_argument("--captions", default=None, help="CSV (name,caption; Cap3D's) or JSON {name: caption}")
    parser.add_argument("--device", default="cpu", help="torch device that renders (cuda: cuda:LOCAL_RANK)")
    parser.add_argument("--skip-bad", action="store_true", help="report bad files and go on (else stop at one)")
    parser.add_argument("--up", choices=("z", "y"), default="z", help="the source's up axis")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="K/N")
    parser.add_argument("--supersample", type=int, default=None,
                        help="s×s samples per pixel, box-filtered (anti-aliasing; default 2 on CUDA, 1 on the CPU)")
    parser.add_argument("--workers", type=int, default=4, help="threads encoding and writing files")
    parser.add_argument("--shard-size", type=int, default=1000, help="objects per WebDataset .tar")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.views is None:
        args.views = 12 if args.format == "chunks" else NUM_RIG_VIEWS
    if not 1 <= args.views <= NUM_RIG_VIEWS:
        parser.error(f"--views must be in 1..{NUM_RIG_VIEWS}, got {args.views}")
    if args.supersample is None:
        # s = 2 is 4× the raster work: affordable on a GPU, ~4× the minutes per object on a CPU
        args.supersample = 2 if args.device.startswith("cuda") else 1
    if args.supersample < 1:
        parser.error("--supersample must be >= 1")
    return args


def effective_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """--shard K/N refined by torchrun's RANK/WORLD_SIZE: rank r of W takes shard K·W + r of N·W."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    return shard[0] * world + rank, shard[1] * world


def part_folder(out: Path, fmt: str, shard: tuple[int, int]) -> Path:
    """Where this shard writes: --out itself for gobjaverse or a single shard, else its own part folder."""
    if fmt == "gobjaverse" or shard[1] == 1:
        return out
    return out / f"part-{shard[0]:05d}-of-{shard[1]:05d}"


def complete_ids(root: Path, fmt: str, num_views: int) -> set[str] | None:
    """Object ids already complete under `root` (gobjaverse, chunks), or None when the per-object check does not
    apply (lmdb, wds: whole parts)."""
    done: set[str] = set()
    if fmt == "gobjaverse":
        # meta.json is written after every view of the object
        for meta in root.glob(f"*/*/*/{META_FILE}"):
            views = meta.parent / VIEW_FOLDER
            if views.is_dir() and sum(1 for _ in views.iterdir()) >= num_views:
                done.add(meta.parent.relative_to(root).as_posix())
        return done
    if fmt == "chunks":
        index = root / INDEX_FILE
        if index.exists():
            for category, rels in json.loads(index.read_text(encoding="utf-8")).items():
                done.update(f"{category}/{rel}" for rel in rels if (root / rel / "labels.json").exists())
        return done
    return None


def _set_aside_partial(part: Path) -> None:
    """An lmdb/wds part without its completion file was interrupted: keep it under a new name, start afresh."""
    if part.exists() and any(part.iterdir()):
        k = 0
        while part.with_name(f"{part.name}.incomplete-{k}").exists():
            k += 1
        part.rename(part.with_name(f"{part.name}.incomplete-{k}"))
        print(f"moved the incomplete {part} aside to {part.name}.incomplete-{k}", file=sys.stderr)


def main(argv=None) -> dict:
    args = parse_args(argv)
    meshes_root, out = Path(args.meshes), Path(args.out)
    shard = effective_shard(args.shard)
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        files = find_meshes(meshes_root)
        table = read_caption_table(args.captions) if args.captions else None
    except (OSError, ValueError) as error:  # a missing --meshes, an unreadable or malformed --captions
        raise SystemExit(f"render_meshes.py: error: {error}") from None
    base = meshes_root if meshes_root.is_dir() else meshes_root.parent
    objects = [(p, p.relative_to(base).as_posix()) for p in files]
    objects = [(p, rel) for p, rel in objects if in_shard(rel, *shard)]
    view_ids = default_view_ids(args.views)
    config = RasterConfig(supersample=args.supersample)
    part = part_folder(out, args.format, shard)

    done = complete_ids(part, args.format, args.views)
    if done is None and (part / DONE_FILE).exists():
        # a finished lmdb/wds part cannot take more objects: new files there would be silently missing
        record = json.loads((part / DONE_FILE).read_text(encoding="utf-8"))
        done = set(record["object_ids"]) | set(record["failed_ids"])
        new = [rel for _, rel in objects if mesh_object_id(rel) not in done]
        if new:
            raise SystemExit(f"{part} is a finished {args.format} part without {len(new)} of these objects (e.g. "
                             f"{new[0]}); {args.format} parts are written in one go: render them to a new --out")
    elif done is None:
        _set_aside_partial(part)
        done = set()
    todo = [(p, rel) for p, rel in objects if mesh_object_id(rel) not in done]
    already = len(objects) - len(todo)

    start = time.perf_counter()
    failures: list[str] = []
    written = 0
    written_ids: list[str] = []
    failed_ids: list[str] = []
    render_seconds = 0.0  # loading + rendering, the rest is encoding and writing files
    stop_error = None
    if todo:
        options = {"max_count": args.shard_size} if args.format == "wds" else {}
        writer = make_writer(args.format, part, workers=args.workers, **options)
        try:
            with tqdm(total=len(todo), desc="objects", unit="obj", disable=args.no_progress) as bar:
                for path, rel in todo:
                    tick = time.perf_counter()
                    try:
                        asset = normalise(load_mesh(path), up=args.up)
                        record = mesh_record(asset, rel, view_ids, args.resolution, args.rig, caption_for(rel, table),
                                             device, config)
                    except MeshError as error:
                        failures.append(str(error))
                        failed_ids.append(mesh_object_id(rel))
                        tqdm.write(f"bad mesh: {error}", file=sys.stderr)
                        if not args.skip_bad:
                            stop_error = error
                            break
                        bar.update(1)
                        continue
                    render_seconds += time.perf_counter() - tick
                    writer.add(record)
                    written += 1
                    written_ids.append(record.object_id)
                    bar.update(1)
        finally:  # after a bad file, Ctrl-C or a crash too: everything rendered so far reaches the disk
            writer.close()
    if args.format in ("lmdb", "wds") and stop_error is None and todo:
        (part / DONE_FILE).write_text(json.dumps({"object_ids": written_ids, "failed_ids": failed_ids,
                                                  "failures": failures}), encoding="utf-8")
    seconds = time.perf_counter() - start
    summary = {"objects": written, "views": written * args.views, "seconds": round(seconds, 3),
               "objects_per_s": round(written / seconds, 4) if seconds > 0 and written else 0.0,
               "render_seconds": round(render_seconds, 3), "failures": len(failures), "already_complete": already,
               "shard": f"{shard[0]}/{shard[1]}"}
    print(f"rendered {written} objects × {args.views} views at {args.resolution}² ({args.format}, {device}) to "
          f"{part} in {seconds:.1f} s ({summary['objects_per_s']:.3f} objects/s; loading + rendering "
          f"{render_seconds:.1f} s); {len(failures)} failures; "
          f"{already} already complete; shard {shard[0]}/{shard[1]} of {len(files)} files")
    if stop_error is not None:
        raise SystemExit(f"stopped at a bad mesh (pass --skip-bad to go on): {stop_error}")
    return summary


if __name__ == "__main__":
    main()
