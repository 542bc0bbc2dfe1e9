"""Check our networks against a golden fixture of the released LN3Diff networks.

    python scripts/golden_check.py --fixture ../shared/reference/golden

Builds the release VAE, T23D DiT and I23D DiT, fills them with the fixture folder's own `fill_weights.py` recipe
through the checkpoint converter, runs the fixture's own inputs (`make_inputs.py` and the stored npz inputs) in
float32 on the CPU, and prints one line per tensor: name, max abs error, tolerance, ok. Exits 1 if any check fails.
Works for any folder of the same shape (other seeds, another input scene).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from guided_diffusion.golden import check_dit
from nsr.golden import check_vae

NETWORKS = ("vae", "t23d", "i23d")
REQUIRED_FILES = ("fill_weights.py", "make_inputs.py")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixture", type=Path, required=True, help="folder with manifests, recipe, inputs, goldens")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    missing = [f for f in REQUIRED_FILES if not (args.fixture / f).is_file()]
    if missing:
        print(f"error: {args.fixture} is not a golden fixture folder (missing {', '.join(missing)})", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    failures = 0
    print(f"{'tensor':52s} {'max abs err':>12s} {'tolerance':>12s}  ok")
    for network in args.networks:
        t0 = time.perf_counter()
        rows = check_vae(args.fixture) if network == "vae" else check_dit(args.fixture, network)
        for name, err, tol, ok in rows:
            failures += not ok
            print(f"{network + '/' + name:52s} {err:12.3e} {tol:12.3e}  {'ok' if ok else 'FAIL'}", flush=True)
        print(f"# {network}: {sum(r[3] for r in rows)}/{len(rows)} ok in {time.perf_counter() - t0:.1f} s")
    print(f"{'all checks passed' if failures == 0 else f'{failures} checks FAILED'}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
