"""asv's regression detection (airspeed velocity, ``asv.step_detect``), re-implemented in small so
that the drift calibration can apply it to the same histories as ``history check``.

asv fits the whole series with a piecewise-constant function minimising
``gamma x segments + sum |y - segment median|`` (an L1 Potts problem), picks gamma by minimising
``beta x segments + log(sigma_0 + sum |residuals|)`` with ``beta = 4 ln n / n`` (a Schwarz-like
criterion; sigma_0 a floor of a tenth of the smallest step between segments, or 0.1% of the
level for one or two segments), then walks the segments from the latest backwards and reports a
regression where an earlier segment lies below the latest level by more than
``max(its error, the latest's error, threshold x its level)`` (``detect_regressions``; the
threshold is asv's ``regressions_thresholds``, 5% by default; a segment shorter than
``min_size`` is accepted only if the level does not come back).

Simplified here, and said so where it is published: the Potts problem is solved exactly for every
gamma of a fixed grid (asv solves it approximately, in windows of 20 points merged afterwards, and
searches gamma by golden section to a tolerance coarser than the grid); the noise is taken as
independent (asv also fits an AR(1) correlation of the residuals when choosing gamma); every run
has the same weight (asv weighs points by their measured confidence intervals). One exact
dynamic programme per gamma over the whole history gives the optimal fit of every prefix at
once, which is what applying the rule online after each commit needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

GAMMA_GRID = 48  # log-spaced values of gamma per history


def segment_costs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(medians, costs): [l, r] -> median of y[l..r] and the sum of |y - median| over it
    (inf where r < l)."""
    n = len(y)
    medians = np.full((n, n), np.nan)
    costs = np.full((n, n), np.inf)
    for length in range(1, n + 1):
        windows = sliding_window_view(y, length)
        middle = np.median(windows, axis=1)
        starts = np.arange(n - length + 1)
        medians[starts, starts + length - 1] = middle
        costs[starts, starts + length - 1] = np.abs(windows - middle[:, None]).sum(axis=1)
    return medians, costs


@dataclass(frozen=True, eq=False)
class PrefixFits:
    """The optimal fit of every prefix y[:m] at one gamma (index m - 1 of each array): the
    start of its last segment, its number of segments, its residual (sum of |y - level|) and
    asv's noise floor sigma_0 (a tenth of the smallest step between consecutive levels with more
    than two segments, else 0.1% of the smallest level)."""

    start: np.ndarray
    count: np.ndarray
    residual: np.ndarray
    floor: np.ndarray


def potts_all_prefixes(medians: np.ndarray, costs: np.ndarray, gamma: float) -> PrefixFits:
    """One dynamic programme over y gives the optimal fit of every prefix: the fit of y[:m]
    is the fit of y[:start] followed by one segment, as for any prefix."""
    n = len(costs)
    best = np.empty(n + 1)
    best[0] = -gamma
    start, count = np.empty(n, dtype=int), np.zeros(n + 1, dtype=int)
    residual, last = np.zeros(n + 1), np.full(n + 1, np.nan)
    step, smallest = np.full(n + 1, np.inf), np.full(n + 1, np.inf)
    for r in range(n):
        candidates = best[:r + 1] + gamma + costs[:r + 1, r]
        left = r - int(np.argmin(candidates[::-1]))  # ties: the latest start, as asv's loop
        level = medians[left, r]
        start[r], best[r + 1] = left, candidates[left]
        count[r + 1], residual[r + 1] = count[left] + 1, residual[left] + costs[left, r]
        last[r + 1], smallest[r + 1] = level, min(smallest[left], abs(level))
        step[r + 1] = step[left] if left == 0 else min(step[left], abs(level - last[left]))
    floor = np.where(count > 2, 0.1 * step, 0.001 * smallest)
    return PrefixFits(start, count[1:], residual[1:], np.maximum(floor[1:], 1e-300))


def segments(start: np.ndarray, m: int) -> list[tuple[int, int]]:
    """The optimal fit of y[:m] as (left, right exclusive) pairs, in order."""
    out, right = [], m
    while right > 0:
        left = int(start[right - 1])
        out.append((left, right))
        right = left
    return out[::-1]


def best_fits(fits: list[PrefixFits], commits: range) -> dict[int, np.ndarray]:
    """asv's choice of gamma for each y[:n + 1]: the fit minimising beta x segments +
    log(sigma_0 + residual); commit -> that fit's array of segment starts."""
    count = np.stack([f.count for f in fits])
    objective = np.log(np.stack([f.floor for f in fits]) + np.stack([f.residual for f in fits]))
    out = {}
    for n in commits:
        m = n + 1
        beta = 4.0 * math.log(m) / m
        out[n] = fits[int(np.argmin(beta * count[:, n] + objective[:, n]))].start
    return out


def regressions(steps: list[tuple[int, int, float, float]], *, threshold: float,
                min_size: int) -> list[tuple[int, float]]:
    """asv's ``detect_regressions`` over (left, right, level, error) segments: per regression,
    (first commit of the higher level, best level after over the level before)."""
    found = []
    latest_level, latest_error = steps[-1][2], steps[-1][3]
    best = latest_level
    short = None
    previous_left = None
    for left, right, level, error in reversed(steps):
        margin = max(error, latest_error, threshold * level)
        if latest_level > level + margin:
            if right - left < min_size:
                short = (latest_level, latest_error)
            found.append((previous_left, best / level))
            latest_level, latest_error = level, error
        elif short is not None:
            if short[0] <= level + margin:  # the level came back: the short one was noise
                found.pop()
                latest_level, latest_error = short
            short = None
        previous_left = left
        best = min(best, level)
    return found[::-1]


def asv_alarms(values: np.ndarray, commits: range, *, threshold: float = 0.05,
               min_size: int = 2) -> dict[int, tuple[int, float]]:
    """Per commit n in ``commits`` where asv reports a regression on values[:n + 1]: the first
    bad commit of its largest regression and that regression's ratio."""
    if not commits:
        return {}
    y = np.asarray(values[:max(commits) + 1], dtype=float)  # later commits change nothing
    medians, costs = segment_costs(y)
    whole = costs[0, len(y) - 1] or 1.0
    grid = whole * np.exp(np.linspace(math.log(0.1 / len(y)) - 2.0, 1.0, GAMMA_GRID))
    fits = [potts_all_prefixes(medians, costs, g) for g in grid]
    out = {}
    for n, start in best_fits(fits, commits).items():
        fit = segments(start, n + 1)
        steps = [(left, right, medians[left, right - 1], costs[left, right - 1] / (right - left))
                 for left, right in fit]
        found = regressions(steps, threshold=threshold, min_size=min_size)
        if found:
            first_bad, ratio = max(found, key=lambda f: f[1])
            out[n] = (int(first_bad), float(ratio))
    return out
