"""Parity of the release denoisers with the golden fixture (`<repo>/../shared/reference/golden`).

`check_dit` builds a release preset, fills it through the converter with the fixture's own `fill_weights.py`, runs
the fixture's stored inputs in float32 and compares against the stored outputs of the original networks, with the
fixture's suggested tolerance of 1e-4 × max|reference| per tensor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from checkpoints.convert.dit import to_ours
from guided_diffusion.config import build_denoiser, preset
from utils.golden import Check, compare, load_fixture_module

KINDS = ("t23d", "i23d")


@torch.no_grad()
def check_dit(fixture_dir: str | Path, kind: str) -> list[Check]:
    """Checks for the "t23d" or "i23d" release denoiser: key mapping, filled weights, inputs, output, t_embedding."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    fixture_dir = Path(fixture_dir)
    fill = load_fixture_module(fixture_dir, "fill_weights")
    make_inputs = load_fixture_module(fixture_dir, "make_inputs")
    manifest = fill.load_manifest(fixture_dir / f"manifest_dit_{kind}.json")
    golden = np.load(fixture_dir / f"golden_dit_{kind}.npz")

    cfg = preset(kind).denoiser
    with torch.device("meta"):
        model = build_denoiser(cfg)
    model = model.to_empty(device="cpu").eval()
    state = model.state_dict()

    def rename(name: str) -> str:
        return to_ours(name, cfg.arch)

    checks: list[Check] = []
    mismatched = set(state) ^ {rename(e["name"]) for e in manifest["entries"]}
    checks.append(("state_dict keys", float(len(mismatched)), 0.0, not mismatched))
    fill.fill_(state, manifest, rename=rename)
    bad = fill.verify(state, manifest, rename=rename)
    checks.append(("filled weights", float(len(bad)), 0.0, not bad))

    # The stored inputs are authoritative; make_inputs must reproduce them (it is the fixture's recipe).
    regenerated = make_inputs.dit_inputs(kind)
    checks += [compare(f"input_{key}", regenerated[key], golden[f"input_{key}"], tol=0.0)
               for key in ("x", "t", "crossattn", "vector")]

    x = torch.from_numpy(golden["input_x"])
    t = torch.from_numpy(golden["input_t"])
    context = {"crossattn": torch.from_numpy(golden["input_crossattn"]),
               "vector": torch.from_numpy(golden["input_vector"])}
    checks.append(compare("output", model(x, t, context), golden["output"]))
    checks.append(compare("t_embedding", model.time_embed(t), golden["t_embedding"]))
    return checks
