"""Parity of the release denoisers with the golden fixture (`<repo>/../shared/reference/golden`).

`check_dit` builds a release preset, fills it through the converter with the fixture's own `fill_weights.py`, runs
the fixture's stored inputs in float32 and compares against the stored outputs of the original networks, with the
fixture's suggested tolerance of 1e-4 × max|reference| per tensor.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from checkpoints.convert.dit import to_ours
from guided_diffusion.config import build_denoiser, preset

Check = tuple[str, float, float, bool]  # (name, max abs error, tolerance, ok)
RELATIVE_TOLERANCE = 1e-4
KINDS = ("t23d", "i23d")


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"golden_{path.stem}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(name: str, ours: torch.Tensor | np.ndarray, ref: np.ndarray, rel: float = RELATIVE_TOLERANCE) -> Check:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return name, float("inf"), 0.0, False
    err = float(np.abs(ours - ref).max())
    tol = rel * float(np.abs(ref).max())
    return name, err, tol, err <= tol


@torch.no_grad()
def check_dit(fixture_dir: str | Path, kind: str) -> list[Check]:
    """Checks for the "t23d" or "i23d" release denoiser: key mapping, filled weights, inputs, output, t_embedding."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    fixture_dir = Path(fixture_dir)
    fill = _load_module(fixture_dir / "fill_weights.py")
    make_inputs = _load_module(fixture_dir / "make_inputs.py")
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
    for key in ("x", "t", "crossattn", "vector"):
        err = float(np.abs(regenerated[key].astype(np.float64) - golden[f"input_{key}"].astype(np.float64)).max())
        checks.append((f"input_{key}", err, 0.0, err == 0.0))

    x = torch.from_numpy(golden["input_x"])
    t = torch.from_numpy(golden["input_t"])
    context = {"crossattn": torch.from_numpy(golden["input_crossattn"]),
               "vector": torch.from_numpy(golden["input_vector"])}
    checks.append(_compare("output", model(x, t, context), golden["output"]))
    checks.append(_compare("t_embedding", model.time_embed(t), golden["t_embedding"]))
    return checks
