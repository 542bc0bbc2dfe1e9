"""KL weight with linear annealing (spec §2.9 "KL").

λ(step) = clip(λ_min + (λ_max − λ_min)·(step − start)/length, λ_min, λ_max): the posterior is almost free for the
first `start` steps (so the decoder first learns to reconstruct), then the weight ramps linearly to λ_max.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KLSchedule:
    """λ_max is the configured KL weight; λ_min defaults to max(1e-9, λ_max / 1e4) as in the release."""

    weight: float = 1e-6
    anneal: bool = True
    start: int = 5000
    length: int = 25000
    min_weight: float | None = None

    def __post_init__(self):
        if self.length <= 0:
            raise ValueError(f"KL anneal length must be positive, got {self.length}; pass e.g. "
                             f"--kl-anneal-length 25000")

    @property
    def floor(self) -> float:
        return max(1e-9, self.weight / 1e4) if self.min_weight is None else self.min_weight

    def __call__(self, step: int) -> float:
        if not self.anneal:
            return self.weight
        lo, hi = self.floor, self.weight
        ramp = lo + (hi - lo) * (step - self.start) / self.length
        return min(max(ramp, min(lo, hi)), max(lo, hi))
