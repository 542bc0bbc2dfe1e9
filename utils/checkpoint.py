"""Atomic checkpoints: safetensors weights + JSON config, plus optimiser and trainer state for resuming.

A checkpoint is a folder `<root>/checkpoint-<step:08d>/` holding

  model.safetensors    weights (float32 while training; fp16/bf16 after `export_model_folder`)
  ema.safetensors      EMA weights, when EMA is on
  optimizer.pt         {name: optimizer.state_dict()} (plus GradScaler state if any)
  trainer_state.pt     tensors and RNG states needed for an exact resume
  <name>.safetensors   extra weights a trainer keeps (e.g. `discriminator.safetensors`)
  config.json          everything needed to rebuild the model (preset, overrides, ...)
  trainer_state.json   step and other human-readable counters

The folder is assembled under a hidden temporary name in the same directory, every file is fsynced, and only then
is it renamed into place, so a crash mid-save leaves the previous checkpoints untouched and never a half-written
`checkpoint-*` folder. `.pt` files are read with `weights_only=True`; everything stored in them is plain tensors,
numbers, strings, lists, tuples and dicts.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "config.json"
STATE_JSON_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
_TMP_PREFIX = ".tmp-"
_NAME_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model; the message names the file and the fix."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_mode() -> int:
    """What `open()` would give a new file: 0o666 minus the process umask (os.umask can only be read by setting)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _write_synced(path: Path, write: Callable[[Path], None]) -> None:
    write(path)
    # safetensors writes through a private temporary file (mode 0600); exported model folders must be readable by
    # whoever runs them, so every file gets the ordinary umask-respecting mode
    os.chmod(path, _file_mode())
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Run `write(tmp_path)`, fsync, then rename onto `path`: readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        _write_synced(tmp, write)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the checkpoint folder is incomplete — use another checkpoint-* "
                              f"folder or re-export it")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); restore it from a copy or use another checkpoint") from e


def tensors_for_safetensors(state: dict[str, torch.Tensor],
                            dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """CPU, contiguous, storage-independent copies (safetensors refuses tied tensors); floats cast to `dtype`."""
    out, seen = {}, set()
    for name, t in state.items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset())
        t = t.contiguous()
        if ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[name] = t
    return out


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Write a state dict as safetensors atomically."""
    tensors = tensors_for_safetensors(state, dtype)
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; point to a folder written by this project's trainer or "
                              f"export (it must contain {path.name})")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e}); delete its checkpoint folder and resume from "
                              f"the previous one") from e


def load_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the checkpoint folder is incomplete — resume from another "
                              f"checkpoint-* folder")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types (pickle, zip, runtime) for a damaged file
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path} is corrupt or truncated ({reason}); delete its checkpoint folder and resume "
                              f"from the previous one") from e


def check_finite(state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Refuse weights holding NaN/inf, naming the first such tensor: such a model loads and runs but yields
    garbage (a NaN video, no mesh) with no error. One pass over the weights, far cheaper than reading them."""
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: tensor {name} holds {bad} NaN/inf values of {tensor.numel()}; the "
                                  f"weights are damaged (a diverged run or a bad copy): use an earlier checkpoint "
                                  f"or download the file again")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Strict load with a one-line error listing (some of) the mismatched keys; non-finite weights are refused."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        parts = [f"{len(v)} {label} (e.g. {v[0]})" for label, v in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape)) if v]
        raise CheckpointError(f"{source} does not fit the model: {', '.join(parts)}; it was saved for a different "
                              f"architecture — rebuild with its config.json or pick the matching checkpoint")
    check_finite(state, source)
    model.load_state_dict(state)


def checkpoint_step(path: str | os.PathLike) -> int | None:
    m = _NAME_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first (temporary folders of interrupted saves excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: str | os.PathLike, step: int, *, model: dict[str, torch.Tensor], config: dict,
                    ema: dict[str, torch.Tensor] | None = None, optimizer: dict | None = None,
                    trainer_state: dict | None = None, info: dict | None = None,
                    extra_weights: dict[str, dict[str, torch.Tensor]] | None = None,
                    keep_last: int | None = None) -> Path:
    """Write `<root>/checkpoint-<step>/` atomically and prune to the newest `keep_last` checkpoints.

    model / ema: state dicts. optimizer: torch-serialisable optimiser (and scaler) states. trainer_state:
    torch-serialisable resume state (RNG, counters). info: JSON-able, written with the step to trainer_state.json.
    extra_weights: {name: state dict}, each written as `<name>.safetensors`. Call on one rank only.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = root / f"{_TMP_PREFIX}{final.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        model_tensors = tensors_for_safetensors(model)
        _write_synced(tmp / MODEL_FILE, lambda p: save_file(model_tensors, str(p), metadata={"format": "pt"}))
        if ema is not None:
            ema_tensors = tensors_for_safetensors(ema)
            _write_synced(tmp / EMA_FILE, lambda p: save_file(ema_tensors, str(p), metadata={"format": "pt"}))
        for name, state in (extra_weights or {}).items():
            if f"{name}.safetensors" in (MODEL_FILE, EMA_FILE):
                raise ValueError(f"extra weights may not be named {name!r}; that file holds the model / EMA")
            extra = tensors_for_safetensors(state)
            _write_synced(tmp / f"{name}.safetensors",
                          lambda p, extra=extra: save_file(extra, str(p), metadata={"format": "pt"}))
        if optimizer is not None:
            _write_synced(tmp / OPTIMIZER_FILE, lambda p: torch.save(optimizer, p))
        if trainer_state is not None:
            _write_synced(tmp / STATE_FILE, lambda p: torch.save(trainer_state, p))
        _write_synced(tmp / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))
        state_json = {"step": step, **(info or {})}
        _write_synced(tmp / STATE_JSON_FILE,
                      lambda p: p.write_text(json.dumps(state_json, indent=2, sort_keys=True) + "\n"))
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. after a resume): move the old one aside, then drop it
            old = root / f"{_TMP_PREFIX}old-{final.name}.{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale_temporaries(root)
    if keep_last is not None:
        prune_checkpoints(root, keep_last)
    return final


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary folders left by saves that were killed (any process; only one process writes a run's root)."""
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith((_TMP_PREFIX + CHECKPOINT_PREFIX, _TMP_PREFIX + "old-")):
            shutil.rmtree(p, ignore_errors=True)


def prune_checkpoints(root: str | os.PathLike, keep_last: int) -> None:
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Everything `save_checkpoint` wrote: dict(model, ema, extra_weights, optimizer, trainer_state, config, info).

    Optional parts that were not saved come back as None.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist; pass an existing "
                              f"{CHECKPOINT_PREFIX}<step> folder or a run directory that contains one")
    return {
        "model": load_weights(folder / MODEL_FILE, map_location),
        "ema": load_weights(folder / EMA_FILE, map_location) if (folder / EMA_FILE).exists() else None,
        "extra_weights": {p.name[: -len(".safetensors")]: load_weights(p, map_location)
                          for p in sorted(folder.glob("*.safetensors")) if p.name not in (MODEL_FILE, EMA_FILE)},
        "optimizer": load_torch_file(folder / OPTIMIZER_FILE, map_location)
        if (folder / OPTIMIZER_FILE).exists() else None,
        "trainer_state": load_torch_file(folder / STATE_FILE, map_location)
        if (folder / STATE_FILE).exists() else None,
        "config": read_json(folder / CONFIG_FILE),
        "info": read_json(folder / STATE_JSON_FILE),
    }


def resolve_model_folder(path: str | os.PathLike) -> Path:
    """A model folder itself, or the newest checkpoint inside a run directory."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path} holds neither {MODEL_FILE} nor a {CHECKPOINT_PREFIX}<step> folder; pass a "
                              f"model folder or a training output directory")
    return latest


def load_model_folder(path: str | os.PathLike, builder: Callable[[dict], nn.Module], *, use_ema: bool = False,
                      device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from `config.json` with `builder(config)` and load its weights strictly.

    path: a model / checkpoint folder, or a run directory (its newest checkpoint is used). use_ema loads
    `ema.safetensors` instead of `model.safetensors`. Half-precision exports load into the model's own dtype.
    """
    folder = resolve_model_folder(path)
    config = read_json(folder / CONFIG_FILE)
    model = builder(config)
    weights_file = folder / (EMA_FILE if use_ema else MODEL_FILE)
    load_into(model, load_weights(weights_file), weights_file)
    return model.to(device)


def save_model_folder(folder: str | os.PathLike, state: dict[str, torch.Tensor], config: dict,
                      dtype: str | None = None) -> Path:
    """A shippable model folder (weights + config.json); dtype "fp16" / "bf16" halves the floating tensors."""
    if dtype is not None and dtype not in HALF_DTYPES:
        raise ValueError(f"export dtype must be one of {sorted(HALF_DTYPES)} or None, got {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / MODEL_FILE, state, HALF_DTYPES[dtype] if dtype else None)
    atomic_write_json(folder / CONFIG_FILE, {**config, "weights_dtype": dtype or "fp32"})
    return folder


def export_model_folder(src: str | os.PathLike, dst: str | os.PathLike, dtype: str | None = "fp16",
                        use_ema: bool = False) -> Path:
    """Copy a checkpoint's (EMA) weights and config into a lean model folder, optionally in half precision."""
    folder = resolve_model_folder(src)
    state = load_weights(folder / (EMA_FILE if use_ema else MODEL_FILE))
    return save_model_folder(dst, state, read_json(folder / CONFIG_FILE), dtype)
