"""Shared pieces of the golden-fixture checks (`nsr.golden`, `guided_diffusion.golden`, `scripts/golden_check.py`).

A fixture folder ships its own `fill_weights.py` and `make_inputs.py`; `load_fixture_module` imports them from that
folder. `compare` turns one tensor into a check row `(name, max abs error, tolerance, ok)`.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

Check = tuple[str, float, float, bool]  # (name, max abs error, tolerance, ok)
RELATIVE_TOL = 1e-4  # × max |reference|: the fixture's suggested tolerance for network tensors


def load_fixture_module(fixture_dir: str | Path, name: str) -> ModuleType:
    """Import `fixture_dir/name.py` under a private module name (fixtures may differ from folder to folder)."""
    path = Path(fixture_dir) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_golden_fixture_{abs(hash(str(path)))}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling inside the module look themselves up here
    spec.loader.exec_module(module)
    return module


def compare(name: str, ours, ref, tol: float | None = None) -> Check:
    """Max abs error of `ours` (tensor or array) against `ref`; tol None: `RELATIVE_TOL` × max |ref|, else absolute.
    A shape mismatch fails with both shapes in the name."""
    ours = np.asarray(torch.as_tensor(ours).detach().cpu(), dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return f"{name} (shape {ours.shape} vs {ref.shape})", float("inf"), 0.0, False
    err = float(np.abs(ours - ref).max())
    tol = RELATIVE_TOL * float(np.abs(ref).max()) if tol is None else tol
    return name, err, tol, err <= tol
