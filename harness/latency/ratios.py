"""How much faster or slower, for sure: ratios of medians with bootstrap intervals, and their
geometric mean over shapes.

A timing's uncertainty lives at two levels: between worker processes (a process can land on a
slower core, another cache state) and between the blocks within one. The interval of a ratio
resamples both — processes with replacement, then the blocks of each chosen process — for the
implementation and its baseline independently, and takes the 2.5th and 97.5th percentiles of the
ratio of medians. The geometric mean over shapes resamples every shape at once, so its interval
is as wide as the shapes' own uncertainty, not narrower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 400


@dataclass(frozen=True)
class Ratio:
    """A ratio of medians (implementation over baseline) and its 95% bootstrap interval."""

    value: float
    low: float
    high: float

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def __str__(self) -> str:
        # below 0.1x, three significant figures and the speed-up (0.00x would say nothing)
        digits = (lambda x: f"{x:.2f}") if self.value >= 0.1 else (lambda x: f"{x:.3g}")
        faster = f", {1 / self.value:.1f}x faster" if 0 < self.value < 0.1 else ""
        if not self.has_interval:
            return f"{digits(self.value)}x (one sample: no interval{faster})"
        return f"{digits(self.value)}x ({digits(self.low)}–{digits(self.high)}{faster})"


def resampled_medians(per_process: Sequence[Sequence[float]], rng: np.random.Generator,
                      resamples: int) -> np.ndarray:
    """The median of every two-level bootstrap resample of one timing's samples: (resamples,)."""
    processes = [np.asarray(p, dtype=float) for p in per_process if len(p)]
    medians = np.empty(resamples)
    for i in range(resamples):
        chosen = rng.integers(len(processes), size=len(processes))
        blocks = [processes[j][rng.integers(len(processes[j]), size=len(processes[j]))]
                  for j in chosen]
        medians[i] = np.median(np.concatenate(blocks))
    return medians


def ratio(impl: Sequence[Sequence[float]], base: Sequence[Sequence[float]], *, seed: int = 0,
          resamples: int = RESAMPLES) -> Ratio:
    """median(impl) / median(base), per-process samples of each, with its 95% interval."""
    return geometric_mean_ratio([(impl, base)], seed=seed, resamples=resamples)


def geometric_mean_ratio(pairs: Sequence[tuple[Sequence[Sequence[float]],
                                               Sequence[Sequence[float]]]],
                         *, seed: int = 0, resamples: int = RESAMPLES) -> Ratio:
    """The geometric mean over shapes of median(impl) / median(base), each pair the
    per-process samples of one shape, with its 95% interval."""
    if not pairs:
        return Ratio(math.nan, math.nan, math.nan)
    single = any(sum(len(p) for p in side) < 2 for pair in pairs for side in pair)
    rng = np.random.default_rng(seed)
    logs = np.zeros(resamples)
    point = 0.0
    for impl, base in pairs:
        point += math.log(np.median(np.concatenate([np.asarray(p) for p in impl]))
                          / np.median(np.concatenate([np.asarray(p) for p in base])))
        logs += np.log(resampled_medians(impl, rng, resamples)
                       / resampled_medians(base, rng, resamples))
    logs /= len(pairs)
    if single:  # a shape timed once on a side: its uncertainty is unknown, so is the interval
        return Ratio(math.exp(point / len(pairs)), math.nan, math.nan)
    low, high = np.percentile(logs, [2.5, 97.5])
    return Ratio(math.exp(point / len(pairs)), math.exp(low), math.exp(high))
