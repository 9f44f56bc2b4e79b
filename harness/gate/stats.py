"""Regression verdicts a CI job can block a merge on: statistics over fresh worker processes.

A one-run-against-one-run percentage (pytest-benchmark's --benchmark-compare-fail) mistakes the
noise between processes for change. Here every side of a comparison is several fresh worker
processes; each process contributes one number, the minimum of its per-iteration block times
(the statistic that varies least between processes: per-process medians vary several times more
on shared machines). A timing has regressed only when both
- a one-sided Mann-Whitney U test over those per-process numbers says head > base at p < alpha,
  after Holm's correction across all comparisons of the run, and
- the ratio of the medians of the per-process numbers, head over base, exceeds 1 + min_effect;
improvement is the mirror image. The ratio's 95% interval is the same test's: the ratios by which
head could be scaled for neither one-sided test to reject at 2.5%, so a regression's interval
lies above 1. A conformance or gradient check that passed in BASE and fails in HEAD is a regression
whatever the timings say. Results from different machines, torch versions, thread counts or
devices are refused unless explicitly allowed, and then flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.gate.ranks import p_slower, shift_interval

REGRESSION, IMPROVEMENT, UNCHANGED = "regression", "improvement", "no significant change"
UNJUDGED = "too few processes to judge"
UNDECIDED = "undecided"  # a sequential gate's timing that its processes and budget left open
MARKS = {REGRESSION: "+", IMPROVEMENT: "-", UNCHANGED: " ", UNJUDGED: "?", UNDECIDED: "?"}


def scipy_stats():
    """scipy.stats, imported on first use (0.8-1.5 s: every seq-harness command would pay it)."""
    from scipy import stats

    return stats


def process_statistic(samples: Sequence[float]) -> float:
    """One number per worker process: its fastest block (per-iteration seconds)."""
    return float(min(samples))


def smallest_p(n_base: int, n_head: int) -> float:
    """The smallest one-sided Mann-Whitney U p-value ``n_base`` against ``n_head`` processes can
    give (every head number above every base number), computed as the verdicts compute p:
    1 / C(n_base + n_head, n_base) where scipy's test is exact, e.g. 1/70 for 4 against 4."""
    if min(n_base, n_head) < 1:
        return 1.0
    base, head = np.arange(n_base, dtype=float), np.arange(n_head, dtype=float) + n_base
    return float(scipy_stats().mannwhitneyu(head, base, alternative="greater").pvalue)


def attainable_p(n_base: int, n_head: int, comparisons: int) -> float:
    """The smallest p any comparison of a run can reach after Holm's correction over
    ``comparisons`` (Holm multiplies the smallest p by their number)."""
    return min(1.0, comparisons * smallest_p(n_base, n_head))


def processes_needed(comparisons: int, alpha: float, *, limit: int = 1000) -> int:
    """The fewest processes per side with which ``comparisons`` timings can reach p < alpha."""
    for n in range(2, limit):
        if attainable_p(n, n, comparisons) < alpha:
            return n
    raise ValueError(f"alpha {alpha:g} is out of reach for {comparisons} comparisons")


def undetectable_message(n_base: int, n_head: int, comparisons: int, alpha: float) -> str:
    """One line: why nothing can be flagged with these sample sizes, and what would do."""
    sides = f"{n_base}" if n_base == n_head else f"{n_base} base and {n_head} head"
    return (f"{sides} processes per side cannot detect a change: over {comparisons} "
            f"comparison{'s' if comparisons != 1 else ''} the smallest attainable p after Holm's "
            f"correction is {attainable_p(n_base, n_head, comparisons):.3g}, not below alpha "
            f"{alpha:g}; {processes_needed(comparisons, alpha)} or more processes per side are "
            "needed")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One (implementation, shape, phase) timed on both sides."""

    key: tuple[str, str, str]  # (implementation, case id, phase); implementation as in HEAD
    base: tuple[float, ...]  # per-process statistics
    head: tuple[float, ...]
    base_name: str = ""

    @property
    def ratio(self) -> float:
        return float(np.median(self.head) / np.median(self.base))

    @property
    def p_slower(self) -> float:
        """The one-sided Mann-Whitney U p that head is slower (``ranks.p_slower``: exact up to
        8 processes a side, ties or not), the test ``interval`` inverts."""
        return p_slower(np.asarray(self.head), np.asarray(self.base))

    @property
    def p_faster(self) -> float:
        return p_slower(np.asarray(self.head), np.asarray(self.base), alternative="less")

    def interval(self, *, confidence: float = 0.95) -> tuple[float, float]:
        """The ratios r (head over base) for which neither one-sided Mann-Whitney U test of the
        head processes divided by r against the base processes rejects at (1 - confidence) / 2:
        the verdicts' own test turned into an interval (``harness.gate.ranks``), so a
        regression at alpha below (1 - confidence) / 2 has an interval above 1 and an
        improvement one below. A side of one process gives no interval; too few processes for
        the tails give an open end (0 or inf)."""
        if len(self.base) < 2 or len(self.head) < 2:
            return (math.nan, math.nan)
        low, high = shift_interval(np.log(self.base), np.log(self.head), confidence)
        return (float(np.exp(low)), float(np.exp(high)))


@dataclass(frozen=True)
class Verdict:
    comparison: Comparison
    p_slower_holm: float
    p_faster_holm: float
    verdict: str
    interval: tuple[float, float]


def judge(comparisons: Sequence[Comparison], *, alpha: float, min_effect: float) -> list[Verdict]:
    """Verdicts for all comparisons of a run (Holm's correction across them)."""
    slower = holm([c.p_slower for c in comparisons])
    faster = holm([c.p_faster for c in comparisons])
    verdicts = []
    for c, p_up, p_down in zip(comparisons, slower, faster):
        if attainable_p(len(c.base), len(c.head), len(comparisons)) >= alpha:
            verdict = UNJUDGED  # no outcome of this many processes could be significant
        elif p_up < alpha and c.ratio > 1 + min_effect:
            verdict = REGRESSION
        elif p_down < alpha and c.ratio < 1 / (1 + min_effect):
            verdict = IMPROVEMENT
        else:
            verdict = UNCHANGED
        verdicts.append(Verdict(c, p_up, p_down, verdict, c.interval()))
    return verdicts


def geometric_mean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else math.nan
