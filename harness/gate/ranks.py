"""One sample against another by ranks (a history series' latest level against an earlier one; a
gate's head processes against its base processes): the one-sided Mann-Whitney U test that decides
a regression, the shift it estimates (Hodges-Lehmann: the median of every difference
latest run minus earlier run, in log space) and its interval: the shifts the same test does not
reject, each side at (1 - confidence) / 2.

The interval and the test are one procedure, so they cannot disagree: a latest level "slower" at
alpha below (1 - confidence) / 2 has an interval above no change. A Welch t interval of the
means, next to a rank test, could hold 1 while the test said slower (one far-outlying run widens
it), and its ratio of geometric means moves with that run where the median of the differences
does not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EXACT_UP_TO = 8  # runs on the smaller side up to which the test is exact


def method(n_after: int, n_before: int) -> str:
    """scipy's Mann-Whitney U method for samples of these sizes: exact while a side has
    EXACT_UP_TO runs or fewer, the normal approximation beyond."""
    return "exact" if min(n_after, n_before) <= EXACT_UP_TO else "asymptotic"


def p_slower(after: np.ndarray, before: np.ndarray, *, alternative: str = "greater"):
    """The one-sided Mann-Whitney U test's p that ``after`` is slower (``alternative="less"``:
    faster) than ``before``; ``after`` (..., n) gives a p per row (``before`` (m,) or
    (..., m)). Exact while a side has EXACT_UP_TO runs or fewer, tied runs or not: scipy would
    switch to the normal approximation at a tie, far more conservative in this tail, so one
    tie would decide."""
    from scipy.stats import mannwhitneyu

    before = np.broadcast_to(before, (*after.shape[:-1], before.shape[-1]))
    p = mannwhitneyu(after, before, alternative=alternative, axis=-1,
                     method=method(after.shape[-1], before.shape[-1])).pvalue
    return float(p) if np.ndim(p) == 0 else p


def shift(before: np.ndarray, after: np.ndarray) -> float:
    """The Hodges-Lehmann shift of ``after`` over ``before``: the median of every difference."""
    return float(np.median(np.subtract.outer(after, before)))


def shift_interval(before: np.ndarray, after: np.ndarray,
                   confidence: float) -> tuple[float, float]:
    """(low, high): the shifts d for which neither one-sided test of ``after - d`` against
    ``before`` rejects at (1 - confidence) / 2; -inf or inf where even the most extreme shift
    cannot be rejected with so few runs. The tests' p changes only where ``after - d`` meets a
    run of ``before``, at the differences themselves, and monotonically: each end is the first
    point between consecutive differences (where no new tie is made) where the test's answer
    turns, found by ``first``."""
    tail = (1.0 - confidence) / 2.0
    cuts = np.unique(np.subtract.outer(after, before))
    # probes[i] lies between cuts[i - 1] and cuts[i]: below every difference, then between
    # consecutive ones, then above every one
    probes = np.concatenate(([cuts[0] - 1.0], (cuts[:-1] + cuts[1:]) / 2.0, [cuts[-1] + 1.0]))

    def shifted(d: np.ndarray) -> np.ndarray:
        return after[None, :] - d[:, None]  # (shifts, runs after)

    # p(slower) grows with d: the lowest shift kept is the difference below the first probe kept
    kept = first(probes, lambda d: p_slower(shifted(d), before) > tail)
    low = -np.inf if kept == 0 else float(cuts[min(kept, len(cuts)) - 1])
    # p(faster) shrinks with d: the highest shift kept is the difference above the last one kept
    gone = first(probes, lambda d: p_slower(shifted(d), before, alternative="less") <= tail)
    high = np.inf if gone == len(probes) else float(cuts[max(gone, 1) - 1])
    return low, high


PROBES_PER_CALL = 64  # shifts one vectorised test takes: memory stays small at any history length


def first(probes: np.ndarray, holds: Callable[[np.ndarray], np.ndarray]) -> int:
    """The first index of ``probes`` where ``holds`` (vectorised over probes, and monotone:
    False, then True), len(probes) where none: PROBES_PER_CALL probes spread over the range
    left are tested at a time, and the range narrows to between the last False and the first
    True of them."""
    lo, hi = 0, len(probes)  # every index below lo is False; hi is True, or len(probes)
    while lo < hi:
        picks = np.unique(np.linspace(lo, hi - 1, min(PROBES_PER_CALL, hi - lo)).round()
                          .astype(int))
        true_at = np.flatnonzero(holds(probes[picks]))
        if len(picks) == hi - lo:  # the whole range tested
            return int(picks[true_at[0]]) if len(true_at) else hi
        if not len(true_at):
            lo = hi  # the last pick is hi - 1: nothing in the range holds
        else:
            j = true_at[0]
            lo, hi = (int(picks[j - 1]) + 1 if j else lo), int(picks[j])
    return lo
