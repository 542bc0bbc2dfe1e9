"""Write N procedural objects, rendered from the G-Objaverse rig, into a store.

    python scripts/make_dataset.py --out data/proc --num-objects 1000 --views 40 --resolution 128 \
        --format gobjaverse --seed 0 --device cuda

Object i of dataset S is `generate_object(S, i)`, rendered from `object_rig(S, i)` (per-object radius in [1.5, 2],
elevation in [5°, 30°], lower ring in [-5°, 5°]), so runs with different --start-index ranges compose into one
dataset. Objects are rendered and written grouped by category within windows of 12 × --batch-objects indices.
See docs/DATA.md for the formats.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

from tqdm import tqdm

from datasets.procedural.grammar import CATEGORY_NAMES
from datasets.procedural.pipeline import GenerationConfig, render_batches
from datasets.rig import NUM_RIG_VIEWS, default_view_ids
from datasets.stores import FORMATS, make_writer
from utils.validation import SEED, check_args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (LMDB/WDS: must not hold a store yet)")
    parser.add_argument("--num-objects", type=int, required=True)
    parser.add_argument("--views", type=int, default=None,
                        help=f"views per object: {NUM_RIG_VIEWS} = whole rig (default; 12 for chunks), fewer = "
                             "the chunk views first (6 = the encoder views)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--format", choices=FORMATS, default="gobjaverse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device that renders, e.g. cuda")
    parser.add_argument("--start-index", type=int, default=0, help="first object index (to extend a dataset)")
    parser.add_argument("--workers", type=int, default=4, help="threads encoding and writing files")
    parser.add_argument("--batch-objects", type=int, default=None,
                        help="objects rendered per call, all their views (default 32 on CUDA, 2 elsewhere)")
    parser.add_argument("--shard-size", type=int, default=1000, help="objects per WebDataset shard")
    args = parser.parse_args(argv)
    check_args("make_dataset.py", args, {"--seed": SEED})
    if args.batch_objects is None:
        args.batch_objects = 32 if args.device.startswith("cuda") else 2
    if args.views is None:
        args.views = 12 if args.format == "chunks" else NUM_RIG_VIEWS
    if args.num_objects < 1:
        parser.error(f"--num-objects must be >= 1, got {args.num_objects}")
    if not 1 <= args.views <= NUM_RIG_VIEWS:
        parser.error(f"--views must be in 1..{NUM_RIG_VIEWS}, got {args.views}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    config = GenerationConfig(seed=args.seed, resolution=args.resolution, view_ids=default_view_ids(args.views),
                              device=args.device, batch_objects=args.batch_objects)
    options = {"max_count": args.shard_size} if args.format == "wds" else {}
    # a window holds batch_objects objects of every category, so each render call gets one category; records are
    # written as rendered (grouped by category within a window), so memory holds one batch, not a window
    window = args.batch_objects * len(CATEGORY_NAMES)
    indices = range(args.start_index, args.start_index + args.num_objects)
    start = time.perf_counter()
    render_seconds = 0.0
    with make_writer(args.format, args.out, workers=args.workers, **options) as writer, \
            tqdm(total=args.num_objects, desc="objects", unit="obj") as bar:
        for first in range(0, len(indices), window):
            batches = render_batches(indices[first:first + window], config)
            while True:
                tick = time.perf_counter()
                records = next(batches, None)
                render_seconds += time.perf_counter() - tick
                if records is None:
                    break
                for record in records:
                    writer.add(record)
                    bar.update(1)
    total = time.perf_counter() - start
    print(f"wrote {args.num_objects} objects × {args.views} views at {args.resolution}² ({args.format}) to "
          f"{args.out} in {total:.1f} s ({args.num_objects / total:.1f} objects/s; rendering {render_seconds:.1f} s "
          f"on {args.device})")


if __name__ == "__main__":
    main()
