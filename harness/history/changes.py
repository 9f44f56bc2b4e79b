"""Change points in one latency series: where its level stepped, by how much, how sure.

The series is one number per run (the median of its worker processes' fastest blocks) in commit
order,
taken in log space so that a step is a ratio whatever the scale. ruptures' PELT with the l2 cost
(a change in mean) and ``jump=1`` (a change may sit at any run) finds the segmentation minimising
cost + penalty x changes. The penalty is the series' own noise: sigma is a robust estimate from
consecutive differences (1.4826 x MAD of the differences / sqrt 2, which a few steps or outliers
barely move, unlike the standard deviation of the whole series), and each change costs
``PENALTY_SCALE x sigma^2 x log n`` (the BIC form for a mean change under Gaussian noise of that
sigma, scaled up until flat histories with heavy-tailed noise stay quiet: see docs/history.md).
A noisy machine thus needs a larger step to show one, a quiet one shows small steps, and no
threshold is tuned per series. Each change gets the ratio of the segments' geometric means (after
over before) and a Welch t interval of it; segments are at least ``min_size`` runs long, so one
outlying run is never a change on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PENALTY_SCALE = 4.0  # calibrated on simulated flat and stepped histories: see docs/history.md
SIGMA_FLOOR = 1e-4  # in log space (0.01%): a perfectly flat series still has a finite penalty
HAMPEL_SIGMAS = 3.0
MIN_RUNS = 4  # a shorter series has no change points


@dataclass(frozen=True)
class Change:
    """A step at ``index`` (the first run of the new level) in a series of per-run seconds.

    before_s, after_s: geometric means of the segments on either side; ratio: after / before
    (> 1 slower); low, high: its two-sided interval at the detector's confidence.
    """

    index: int
    before_s: float
    after_s: float
    ratio: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.index < 1:
            raise ValueError(f"index {self.index} is invalid; a change follows at least one run")

    @property
    def slower(self) -> bool:
        return self.ratio > 1.0

    def significant(self) -> bool:
        """Whether the interval excludes 1 (no change)."""
        return self.low > 1.0 or self.high < 1.0


def noise_sigma(logs: np.ndarray) -> float:
    """Robust sigma of a series' noise from its consecutive differences (see the module
    docstring), at least SIGMA_FLOOR."""
    if len(logs) < 2:
        return SIGMA_FLOOR
    diffs = np.diff(logs)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return max(1.4826 * mad / math.sqrt(2.0), SIGMA_FLOOR)


def change_points(values_s: Sequence[float], *, min_size: int = 2,
                  penalty_scale: float = PENALTY_SCALE) -> list[int]:
    """Indices where a new level starts (ascending); [] for a series shorter than MIN_RUNS."""
    values = np.asarray(values_s, dtype=float)
    if np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ValueError("values_s must be finite positive seconds")
    if len(values) < max(MIN_RUNS, 2 * min_size):
        return []
    import ruptures  # imported on first use: it is not light, and most commands need none

    logs = np.log(values)
    sigma = noise_sigma(logs)
    penalty = penalty_scale * sigma**2 * math.log(len(logs))
    # PELT over the l2 cost, in ruptures' C implementation (KernelCPD with the linear kernel is
    # the l2 cost; the same segmentation as Pelt(model="l2"), a thousand times faster)
    algo = ruptures.KernelCPD(kernel="linear", min_size=min_size, jump=1)
    found = algo.fit(tamed(logs, sigma).reshape(-1, 1)).predict(pen=penalty)
    return [int(b) for b in found[:-1]]  # the last is len(values)


def tamed(logs: np.ndarray, sigma: float) -> np.ndarray:
    """The series with lone outliers pulled in (a Hampel filter): each value clipped to within
    HAMPEL_SIGMAS x sigma of the median of the five runs around it. A step persists, so its
    runs' local medians follow it and nothing is clipped; one slow run (a noisy neighbour)
    is, and the l2 cost no longer pays a change point to fit it."""
    from scipy.ndimage import median_filter

    local = median_filter(logs, size=5, mode="nearest")
    return np.clip(logs, local - HAMPEL_SIGMAS * sigma, local + HAMPEL_SIGMAS * sigma)


def describe_changes(values_s: Sequence[float], indices: Sequence[int], *,
                     confidence: float = 0.95) -> list[Change]:
    """A Change per index, each measured between its neighbouring change points."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r} is invalid; expected a number in (0, 1)")
    logs = np.log(np.asarray(values_s, dtype=float))
    bounds = [0, *indices, len(logs)]
    changes = []
    for position, index in enumerate(indices, start=1):
        before, after = logs[bounds[position - 1]:index], logs[index:bounds[position + 1]]
        difference, half = welch_interval(before, after, confidence)
        changes.append(Change(index=index, before_s=float(np.exp(before.mean())),
                              after_s=float(np.exp(after.mean())),
                              ratio=float(np.exp(difference)),
                              low=float(np.exp(difference - half)),
                              high=float(np.exp(difference + half))))
    return changes


def welch_interval(before: np.ndarray, after: np.ndarray,
                   confidence: float) -> tuple[float, float]:
    """mean(after) - mean(before) and the half-width of its Welch t interval."""
    from scipy import stats

    difference = float(after.mean() - before.mean())
    var_b = before.var(ddof=1) / len(before) if len(before) > 1 else 0.0
    var_a = after.var(ddof=1) / len(after) if len(after) > 1 else 0.0
    se2 = var_b + var_a
    if se2 == 0.0:
        return difference, 0.0
    terms = [v**2 / (len(x) - 1) for v, x in ((var_b, before), (var_a, after)) if len(x) > 1]
    dof = se2**2 / sum(terms) if sum(terms) > 0 else 1.0
    return difference, float(stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(se2))


def detect(values_s: Sequence[float], *, min_size: int = 2,
           confidence: float = 0.95) -> list[Change]:
    """The change points of a series (see the module docstring)."""
    return describe_changes(values_s, change_points(values_s, min_size=min_size),
                            confidence=confidence)
