"""Training-loop pieces shared by the VAE and diffusion trainers.

- `NonFiniteGuard`: skip optimiser steps whose loss or gradient norm is NaN/inf; abort after N in a row.
- `EMA`: exponential moving average of a model's weights.
- `clip_gradients`, `param_groups_by_prefix`, `build_adamw`, `autocast`: optimisation set-up.
- `seed_everything`, `capture_rng_state`, `restore_rng_state`: reproducibility and exact resume.
- `ResumableBatchSampler` + `SeededDataset`: a data stream whose position is one integer, so a resumed run sees
  exactly the batches (and per-sample augmentation randomness) an uninterrupted run would have seen;
  `resumable_loader` builds the DataLoader around them.
- `log_values`: a step's loss terms averaged over ranks, with learning rates and the skipped-step count.
- `StopSignals`, `stop_reason`, `end_of_step`, `exit_after_stop`: SIGINT / SIGTERM end a run after the current
  step with a checkpoint (a scheduler's SIGTERM before preemption loses nothing).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from utils import distributed

log = logging.getLogger("ln3diff.train")


# ---------------------------------------------------------------------------------------------------------------
# Non-finite guard


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimiser steps had a NaN/inf loss or gradient."""


class NonFiniteGuard:
    """Decides whether an optimiser step may be taken; all ranks reach the same decision.

    `check(step, loss, grad_norm)` returns False (and logs a warning) when any value is NaN/inf on any rank; the
    caller then skips `optimizer.step()`. After `max_consecutive` skips in a row it raises NonFiniteLossError.
    """

    def __init__(self, max_consecutive: int = 5):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be at least 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0

    def check(self, step: int, *values: torch.Tensor) -> bool:
        finite = all(bool(torch.isfinite(v).all()) for v in values)
        device = values[0].device if values else "cpu"
        finite = distributed.all_ranks_true(finite, device)
        if finite:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total_skipped += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"step {step}: loss or gradients were NaN/inf for {self.consecutive} steps in a row; lower the "
                f"learning rate, check the data (--skip-bad-samples) or resume from an earlier checkpoint")
        log.warning("step %d: non-finite loss or gradient norm, optimiser step skipped (%d in a row; training stops "
                    "at %d)", step, self.consecutive, self.max_consecutive)
        return False

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive = int(state["consecutive"])
        self.total_skipped = int(state["total_skipped"])


# ---------------------------------------------------------------------------------------------------------------
# Stopping on a signal


class StopSignals:
    """Inside `with`, the first SIGINT / SIGTERM is only noted (`received`), so the loop can finish its step and
    save; a second one goes to the handler that was there before (a second Ctrl-C aborts at once).

    Enter it before data-loader workers start: forked workers inherit the noting handler, so a Ctrl-C sent to the
    whole process group does not kill them under the step that is still running.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python sets handlers only there
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._note)
        return self

    def _note(self, signum: int, frame) -> None:
        if self.received is not None:
            signal.signal(signum, self._previous.get(signum) or signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.received = signum
        log.warning("%s received: stopping after this step with a checkpoint (send it again to abort at once)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


def stop_reason(signals: StopSignals, device: torch.device, started: float = 0.0,
                max_minutes: float = 0.0) -> int | str | None:
    """Why the loop stops after this step: a signal number, "max-minutes" (more than `max_minutes` since
    `started` on any rank; 0: no budget), or None. Every rank gets the same answer, whichever rank received the
    signal (one scalar all-reduce per step under DDP; the non-finite guard syncs every step already)."""
    spent = max_minutes > 0 and time.monotonic() - started > 60 * max_minutes
    signum, spent = distributed.max_over_ranks([float(signals.received or 0), float(spent)], device)
    if signum:
        return int(signum)
    return "max-minutes" if spent else None


@dataclass
class Stopped:
    """A run ended early by a signal: which one, at which step, and the checkpoint it saved (None on the ranks
    that did not write it)."""

    signum: int
    step: int
    checkpoint: str | None

    @property
    def message(self) -> str:
        return (f"stopped by {signal.Signals(self.signum).name} at step {self.step}; saved {self.checkpoint}; "
                f"continue with --resume")


def end_of_step(step: int, max_steps: int, save_every: int, save: Callable[[], object], signals: StopSignals,
                device: torch.device, logger, started: float = 0.0, max_minutes: float = 0.0) -> Stopped | str | None:
    """The trainers' end of a step: a checkpoint every `save_every` steps and at the last; when a signal or the
    wall-clock budget says stop before the last step, this step is saved (once) and the reason logged.
    Returns None to go on, else why the loop ends: "max-minutes", or the signal's `Stopped`."""
    saved = step % save_every == 0 or step == max_steps
    folder = save() if saved else None
    reason = stop_reason(signals, device, started, max_minutes)
    if reason is None or step == max_steps:
        return None
    folder = folder if saved else save()
    if reason == "max-minutes":
        logger.event(f"--max-minutes {max_minutes:g} reached at step {step}; saved, stopping")
        return reason
    stopped = Stopped(reason, step, folder and str(folder))
    logger.event(stopped.message)
    return stopped


def exit_after_stop(script: str, stopped: Stopped | None) -> None:
    """End a CLI whose run a signal stopped: one line, and exit status 128 + the signal (130 for SIGINT, 143
    for SIGTERM), what shells and schedulers read as "ended by that signal" (so `train && next` does not go on)."""
    if stopped is None:
        return
    if stopped.checkpoint is not None:  # one line per run, from the rank that saved
        print(f"{script}: {stopped.message}", file=sys.stderr)
    raise SystemExit(128 + stopped.signum)


# ---------------------------------------------------------------------------------------------------------------
# EMA


class EMA:
    """Shadow copy of a model's state: floating parameters follow θ_ema ← decay·θ_ema + (1 − decay)·θ after every
    `update`; buffers and non-float entries are copied as they are. Its `state_dict()` has the model's own keys, so
    it loads straight into the model (`ema.safetensors`)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.param_names = [n for n, p in model.named_parameters() if p.is_floating_point()]
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        state = model.state_dict()
        params = [state[n] for n in self.param_names]
        shadows = [self.shadow[n] for n in self.param_names]
        torch._foreach_lerp_(shadows, params, 1.0 - self.decay)
        tracked = set(self.param_names)
        for k, v in state.items():
            if k not in tracked:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} entries (e.g. {sorted(missing)[0]}); it belongs to a "
                           f"different model")
        for k, v in self.shadow.items():
            v.copy_(state[k])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


# ---------------------------------------------------------------------------------------------------------------
# Optimisation set-up


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Clip to a global L2 norm of `max_norm` (≤ 0: measure only); returns the pre-clip norm."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


@dataclass
class ParamGroupSpec:
    """Parameters whose qualified name starts with one of `prefixes` ("" matches everything left)."""

    name: str
    prefixes: tuple[str, ...]
    lr: float
    weight_decay: float = 0.01


def param_groups_by_prefix(model: nn.Module, specs: Sequence[ParamGroupSpec]) -> list[dict]:
    """Optimiser param groups; each trainable parameter goes to the first spec with a matching prefix.

    Raises when a parameter matches no spec or a spec matches no parameter (a renamed module would otherwise
    silently train at the wrong learning rate).
    """
    buckets: dict[str, list[nn.Parameter]] = {s.name: [] for s in specs}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        spec = next((s for s in specs if any(name.startswith(pre) for pre in s.prefixes)), None)
        if spec is None:
            raise ValueError(f"parameter {name} matches no learning-rate group ({[s.name for s in specs]}); add its "
                             f"module prefix to a group")
        buckets[spec.name].append(p)
    for s in specs:
        if not buckets[s.name]:
            raise ValueError(f"learning-rate group {s.name!r} (prefixes {s.prefixes}) matches no trainable "
                             f"parameter; fix the prefixes to the model's module names")
    return [{"params": buckets[s.name], "lr": s.lr, "weight_decay": s.weight_decay, "name": s.name} for s in specs]


def build_adamw(params, device: torch.device, betas: tuple[float, float] = (0.9, 0.999),
                eps: float = 1e-8, lr: float = 1e-4, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW, fused on CUDA (one kernel for all parameters)."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                             fused=device.type == "cuda")


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU training stays fp32, as released)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------------------
# Reproducibility


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def capture_rng_state(include_cuda: bool = True) -> dict:
    """Python, NumPy, torch CPU and (optionally) CUDA generator states as tensors / plain values, loadable with
    `torch.load(weights_only=True)`."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if include_cuda and torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`; works whatever device the checkpoint was loaded onto (map_location)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across processes and runs, unlike `hash`)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ---------------------------------------------------------------------------------------------------------------
# Data stream with a resumable position


class SampleKey(NamedTuple):
    """What `ResumableBatchSampler` yields per sample: dataset index, the epoch it is drawn in, its own seed."""

    index: int
    epoch: int
    seed: int


class ResumableBatchSampler(Sampler):
    """Endless per-rank batches of `SampleKey`s drawn from a seeded stream of epochs.

    The global stream concatenates per-epoch permutations of range(num_samples) (permutation e seeded by
    (seed, e)); global batch k is stream[k·B·W : (k+1)·B·W] and rank r takes its r-th slice of B. Batches may
    straddle epochs, so a dataset smaller than one batch still works. The whole state is `start_batch`, the number
    of global batches already consumed. Each key's seed is derived from (seed, stream position) and drives
    `SeededDataset`'s augmentation randomness.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, *, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0):
        if num_samples < 1:
            raise ValueError("the dataset is empty; check --data")
        self.num_samples, self.batch_size, self.seed, self.shuffle = num_samples, batch_size, seed, shuffle
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
        return torch.randperm(self.num_samples, generator=g)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        per_global = self.batch_size * self.world_size
        position = self.start_batch * per_global + self.rank * self.batch_size
        epoch, order = -1, None
        while True:
            batch = []
            for pos in range(position, position + self.batch_size):
                e = pos // self.num_samples
                if e != epoch:
                    epoch, order = e, self._epoch_order(e)
                batch.append(SampleKey(int(order[pos % self.num_samples]), e, derive_seed(self.seed, "sample", pos)))
            yield batch
            position += per_global


class SeededDataset(Dataset):
    """Wraps a map-style dataset: item `SampleKey(index, epoch, seed)` calls the dataset's `set_epoch(epoch)` (if it
    has one), seeds Python/NumPy/torch with `seed`, then reads `dataset[index]`.

    Any randomness inside the dataset (view choice, augmentation) then depends only on the sample's stream
    position, not on worker count or on when the loader was (re)started. The caller's RNG states are restored
    afterwards, so loading in the main process (num_workers 0) does not disturb the training RNG.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey):
        index, epoch, sample_seed = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        saved = capture_rng_state(include_cuda=False)  # CUDA must stay untouched in forked loader workers
        try:
            random.seed(sample_seed)
            np.random.seed(sample_seed % 2 ** 32)
            torch.default_generator.manual_seed(sample_seed)  # CPU only: torch.manual_seed would also reseed CUDA
            return self.dataset[index]
        finally:
            restore_rng_state(saved)


def resumable_loader(dataset: Dataset, batch_size: int, seed: int, *, collate_fn: Callable, num_workers: int,
                     device: torch.device, start_batch: int = 0) -> DataLoader:
    """This rank's endless, exactly resumable loader over `dataset`, starting after `start_batch` global batches."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed, rank=distributed.rank(),
                                    world_size=distributed.world_size(), start_batch=start_batch)
    # an own generator: creating the iterator must not draw from the global RNG (exact resume)
    return DataLoader(SeededDataset(dataset), batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------
# Logging


def log_values(terms: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, guard: NonFiniteGuard,
               device: torch.device) -> dict[str, float]:
    """A step's scalar terms averaged over ranks, plus `lr/<group name>` per param group and `skipped_steps`.
    Collective: every rank calls it with the same term names."""
    names = sorted(terms)
    values = distributed.all_reduce_mean(torch.stack([terms[k].float().to(device) for k in names]))
    out = dict(zip(names, values.tolist()))
    for group in optimizer.param_groups:
        out[f"lr/{group['name']}"] = group["lr"]
    out["skipped_steps"] = guard.total_skipped
    return out
