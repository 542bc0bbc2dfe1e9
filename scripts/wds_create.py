"""Convert a store (G-Objaverse tree, chunks or LMDB) into WebDataset tar shards.

    python scripts/wds_create.py --src data/proc --out data/proc-wds --shard-size 1000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # our `datasets` must shadow HuggingFace's

from datasets.stores import open_store
from datasets.stores.convert import copy_store
from datasets.stores.wds_store import WdsWriter


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="source store folder (format detected)")
    parser.add_argument("--out", required=True, help="new folder for wds-%%06d.tar shards")
    parser.add_argument("--shard-size", type=int, default=1000, help="objects per shard")
    parser.add_argument("--workers", type=int, default=4, help="threads encoding images")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable source objects instead of failing")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    source = open_store(args.src, skip_bad=args.skip_bad)
    skipped = copy_store(source, WdsWriter(args.out, workers=args.workers, max_count=args.shard_size),
                         skip_bad=args.skip_bad)
    print(f"wrote {len(source) - skipped} objects from {args.src} to {args.out} (wds) in "
          f"{time.perf_counter() - start:.1f} s; skipped {skipped + source.skipped} unreadable")


if __name__ == "__main__":
    main()
