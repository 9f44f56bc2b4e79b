"""A series' latest level against an earlier one, by ranks: the one-sided Mann-Whitney U test that
decides a new regression, the shift it estimates (Hodges-Lehmann: the median of every difference
latest run minus earlier run, in log space) and its interval: the shifts the same test does not
reject, each side at (1 - confidence) / 2.

The interval and the test are one procedure, so they cannot disagree: a latest level "slower" at
alpha below (1 - confidence) / 2 has an interval above no change. A Welch t interval of the
means, next to a rank test, could hold 1 while the test said slower (one far-outlying run widens
it), and its ratio of geometric means moves with that run where the median of the differences
does not.
"""

from __future__ import annotations

import numpy as np

EXACT_UP_TO = 8  # runs on the smaller side up to which the test is exact


def p_slower(after: np.ndarray, before: np.ndarray, *, alternative: str = "greater"):
    """The one-sided Mann-Whitney U test's p that ``after`` is slower (``alternative="less"``:
    faster) than ``before``; ``after`` (..., n) gives a p per row. Exact while a side has
    EXACT_UP_TO runs or fewer, tied runs or not: scipy would switch to the normal approximation
    at a tie, far more conservative in this tail, so one tie would decide."""
    from scipy.stats import mannwhitneyu

    method = "exact" if min(after.shape[-1], len(before)) <= EXACT_UP_TO else "asymptotic"
    before = np.broadcast_to(before, (*after.shape[:-1], len(before)))
    p = mannwhitneyu(after, before, alternative=alternative, method=method, axis=-1).pvalue
    return float(p) if np.ndim(p) == 0 else p


def shift(before: np.ndarray, after: np.ndarray) -> float:
    """The Hodges-Lehmann shift of ``after`` over ``before``: the median of every difference."""
    return float(np.median(np.subtract.outer(after, before)))


def shift_interval(before: np.ndarray, after: np.ndarray,
                   confidence: float) -> tuple[float, float]:
    """(low, high): the shifts d for which neither one-sided test of ``after - d`` against
    ``before`` rejects at (1 - confidence) / 2; -inf or inf where even the most extreme shift
    cannot be rejected with so few runs. The tests' p changes only where ``after - d`` meets a
    run of ``before``, at the differences themselves: both tests are taken once at every point
    between consecutive differences (where no new tie is made), in one vectorised call each."""
    tail = (1.0 - confidence) / 2.0
    cuts = np.unique(np.subtract.outer(after, before))
    # probes[i] lies between cuts[i - 1] and cuts[i]: below every difference, then between
    # consecutive ones, then above every one
    probes = np.concatenate(([cuts[0] - 1.0], (cuts[:-1] + cuts[1:]) / 2.0, [cuts[-1] + 1.0]))
    shifted = after[None, :] - probes[:, None]  # (probes, runs after)
    # p(slower) grows with d: the lowest shift kept is the difference below the first probe kept
    kept = np.flatnonzero(p_slower(shifted, before) > tail)
    low = -np.inf if kept[0] == 0 else float(cuts[kept[0] - 1])
    # p(faster) shrinks with d: the highest shift kept is the difference above the last one kept
    gone = np.flatnonzero(p_slower(shifted, before, alternative="less") <= tail)
    high = np.inf if not len(gone) else float(cuts[gone[0] - 1])
    return low, high
