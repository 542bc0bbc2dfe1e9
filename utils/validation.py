"""Numeric inputs checked before any work (docs/RELIABILITY.md): finite, whole where they count things, and in a
range outside which a value is certainly a mistake. One problem is one line naming the flag and what it accepts.

A NaN guidance scale or a 5000³ mesh grid would otherwise be found only after minutes of loading and sampling (or
never: NaN flows through to a garbage video with exit status 0).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass


class InputErrors(ValueError):
    """Every problem found in a set of inputs, one line each (`str()` is the lines joined by newlines)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Limit:
    """What a numeric input accepts: `least` ≤ value ≤ `most` (None: unbounded), whole numbers if `whole`; `why`
    says what the upper bound protects (shown with it)."""

    least: float | None = None
    most: float | None = None
    whole: bool = False
    why: str = ""


def _shown(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def number_problem(flag: str, value, limit: Limit) -> str | None:
    """The one-line problem with `value` for `flag`, or None when it is acceptable (None itself: the default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{flag} must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"{flag} must be a finite number, got {value}"
    if limit.whole and value != int(value):
        return f"{flag} must be a whole number, got {_shown(value)}"
    if limit.least is not None and value < limit.least:
        return f"{flag} must be at least {_shown(limit.least)}, got {_shown(value)}"
    if limit.most is not None and value > limit.most:
        why = f" ({limit.why})" if limit.why else ""
        return f"{flag} must be at most {_shown(limit.most)}{why}, got {_shown(value)}"
    return None


def check_numbers(values: Mapping[str, object], limits: Mapping[str, Limit]) -> None:
    """Raise InputErrors naming every flag of `limits` whose value in `values` (keyed by flag) is unacceptable."""
    problems = [p for flag, limit in limits.items() if (p := number_problem(flag, values.get(flag), limit))]
    if problems:
        raise InputErrors(problems)


# numpy's global seed (training seeds it) takes 32 bits; torch overflows with an opaque "Overflow when unpacking
# long long" past 64
SEED = Limit(0, 2**32 - 1, whole=True, why="seeds are 32-bit")


def check_args(script: str, args: argparse.Namespace, limits: Mapping[str, Limit]) -> None:
    """A CLI's flags (argparse dests → --flags) against `limits`, and every float flag finite; on a problem,
    one `script: error: …` line each and exit status 2 (the training CLIs' convention)."""
    values = {"--" + k.replace("_", "-"): v for k, v in vars(args).items()}
    floats = {flag: Limit() for flag, v in values.items() if isinstance(v, float)}
    try:
        check_numbers(values, {**floats, **limits})
    except InputErrors as err:
        for problem in err.problems:
            print(f"{script}: error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def available_memory(device) -> int | None:
    """Bytes the device can still hand out: free CUDA memory, or the host's MemAvailable for the CPU; None where
    it is not known (then nothing is refused)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":  # blocks the caching allocator holds but does not use are free to this process
        reusable = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + reusable
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
