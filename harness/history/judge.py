"""``history check``: every series of the database judged over its runs in commit order.

A latency series (per machine) becomes one number per run, the median of its worker processes'
fastest blocks (harness.history.timelines), and goes through harness.history.changes. Each
change is reported with the last run before it and the first run after (their commits: the range
to bisect), its ratio and interval.
A **new regression** is a series slower now than before, for sure, by more than the minimum
effect: its trailing slowdowns (the latest change, or the latest few when they are all slowdowns,
each perhaps too small to count: a slow drift) taken together, from the level before the first
of them to the latest level, are a ratio above 1 + min_effect, and a one-sided Mann-Whitney U
test of the latest level's runs against the earlier level's says "slower" at ``alpha``. Its ratio
and interval are that test's (harness.gate.ranks: the Hodges-Lehmann shift and the shifts the
test does not reject), so a new regression's interval always lies above 1. That
test is what keeps CI quiet: the series is judged after every commit, so a 5% test would cry
wolf about every other 100 commits on this project's machines; ``ALPHA`` is calibrated on
measured noise (``seq-harness calibrate --drift``, docs/history.md), and being a rank test it
holds whatever the noise's scale and however heavy its tails. Every other change gets its
verdict from its Welch interval (a past regression, an improvement, one below the minimum effect
or not significant). A check series is broken
when its latest decisive outcome (passed or failed) is a failure and it passed before: reported
with the commit it started failing at. Runs whose tracked files differed from their commit
(dirty) are left out: their commit does not say what ran. Runs are in commit order: the commit
time where the checkout knew the commit, else the run's start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine

from harness.gate.ranks import p_slower, shift, shift_interval
from harness.history.changes import MIN_RUNS, Change, detect
from harness.history.timelines import RunRef, Timelines, load

NEW_REGRESSION, REGRESSION, IMPROVEMENT = "new regression", "regression", "improvement"
SMALL, UNSURE = "below the minimum effect", "not significant"
ALPHA = 1e-5  # per series and judgement: calibrated on measured noise (docs/history.md)

__all__ = ["ALPHA", "IMPROVEMENT", "NEW_REGRESSION", "REGRESSION", "SMALL", "UNSURE", "Breakage",
           "Judgement", "RunRef", "SeriesChange", "judge", "judge_timelines", "newest_slowdown",
           "verdict"]


@dataclass(frozen=True)
class SeriesChange:
    """A change in one latency series (``series_id``): between ``last_good`` and
    ``first_bad``."""

    machine: str
    impl: str
    family: str
    case_id: str
    phase: str
    threads: int
    change: Change
    last_good: RunRef
    first_bad: RunRef
    verdict: str
    series_id: int = 0
    spans: int = 1  # change points it takes together (a drift: more than one)


@dataclass(frozen=True)
class Breakage:
    """A check (``series_id``) that passed before and fails in its latest runs (``failing`` of
    them)."""

    machine: str
    impl: str
    suite: str
    check: str
    case_id: str
    last_good: RunRef
    first_bad: RunRef
    failing: int
    message: str | None
    series_id: int = 0


@dataclass(frozen=True)
class Judgement:
    changes: tuple[SeriesChange, ...]
    breakages: tuple[Breakage, ...]
    latency_series: int
    check_series: int
    too_short: int  # latency series with too few clean runs to judge (none at all included)
    dirty_runs: int
    anchor_base_runs: int = 0  # in the anchor comparisons only (harness.history.timelines)

    @property
    def new_regressions(self) -> tuple[SeriesChange, ...]:
        return tuple(c for c in self.changes if c.verdict == NEW_REGRESSION)

    @property
    def failed(self) -> bool:
        return bool(self.new_regressions or self.breakages)


def judge(engine: Engine, *, min_effect: float = 0.03, confidence: float = 0.95,
          alpha: float = ALPHA, min_size: int = 2) -> Judgement:
    """Every series of the database judged (see the module docstring)."""
    return judge_timelines(load(engine), min_effect=min_effect, confidence=confidence,
                           alpha=alpha, min_size=min_size)


def judge_timelines(timelines: Timelines, *, min_effect: float = 0.03, confidence: float = 0.95,
                    alpha: float = ALPHA, min_size: int = 2) -> Judgement:
    """The judgement of timelines already read (harness.history.timelines.load)."""
    if not 0.0 <= min_effect < 1.0:
        raise ValueError(f"--min-effect {min_effect!r} is invalid; expected a fraction in "
                         "[0, 1), e.g. 0.03 for 3%")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"--alpha {alpha!r} is invalid; expected a probability in (0, 1), "
                         f"e.g. {ALPHA:g}")
    changes, judged = [], 0
    for line in timelines.latency:
        found = detect(line.medians_s, min_size=min_size, confidence=confidence)
        judged += len(line.runs) >= max(MIN_RUNS, 2 * min_size)
        newest = newest_slowdown(line.medians_s, found, min_effect=min_effect, alpha=alpha,
                                 confidence=confidence)
        said = [verdict(change, min_effect=min_effect) for change in found]
        if said and said[-1] == REGRESSION:
            said[-1] = UNSURE  # the latest slowdown, not confirmed at alpha (below)
        if newest is not None and newest[1] == 1:  # with the rank test's ratio and interval
            said[-1], found[-1] = NEW_REGRESSION, newest[0]
        for change, what in zip(found, said):
            changes.append(SeriesChange(
                machine=line.machine, impl=line.impl, family=line.family,
                case_id=line.case_id, phase=line.check, threads=line.threads, change=change,
                last_good=line.runs[change.index - 1], first_bad=line.runs[change.index],
                verdict=what, series_id=line.series_id))
        if newest is not None and newest[1] > 1:
            change, spans = newest
            changes.append(SeriesChange(
                machine=line.machine, impl=line.impl, family=line.family,
                case_id=line.case_id, phase=line.check, threads=line.threads,
                change=change, last_good=line.runs[change.index - 1],
                first_bad=line.runs[change.index], verdict=NEW_REGRESSION,
                series_id=line.series_id, spans=spans))

    breakages = []
    for line in timelines.checks:
        decisive = [(ref, outcome, message) for ref, (outcome, message)
                    in zip(line.runs, line.outcomes) if outcome in ("passed", "failed")]
        start = len(decisive)
        while start > 0 and decisive[start - 1][1] == "failed":
            start -= 1
        if 0 < start < len(decisive):
            breakages.append(Breakage(
                machine=line.machine, impl=line.impl, suite=line.suite, check=line.check,
                case_id=line.case_id, last_good=decisive[start - 1][0],
                first_bad=decisive[start][0], failing=len(decisive) - start,
                message=decisive[-1][2], series_id=line.series_id))
    return Judgement(changes=tuple(changes), breakages=tuple(breakages),
                     latency_series=timelines.latency_series,
                     check_series=timelines.check_series,
                     too_short=timelines.latency_series - judged,
                     dirty_runs=timelines.dirty_runs,
                     anchor_base_runs=timelines.anchor_base_runs)


def newest_slowdown(values_s, found: list[Change], *, min_effect: float, alpha: float = ALPHA,
                    confidence: float = 0.95, drifts: bool = True) -> tuple[Change, int] | None:
    """The series' trailing slowdowns among ``found`` (the latest change only, with
    ``drifts=False``) as one change, from the level before the first of them to the latest
    level, and how many they are, when that is a new regression (see the module docstring);
    else None. Its ratio and interval are the rank test's own (harness.gate.ranks): the
    Hodges-Lehmann shift and the shifts the test does not reject at ``confidence``."""
    start = len(found)
    while start > 0 and found[start - 1].slower and (drifts or start == len(found)):
        start -= 1
    if start == len(found):
        return None
    logs = np.log(np.asarray(values_s, dtype=float))
    begin = found[start - 1].index if start > 0 else 0
    before, after = logs[begin:found[start].index], logs[found[-1].index:]
    difference = shift(before, after)
    if math.exp(difference) <= 1.0 + min_effect or p_slower(after, before) > alpha:
        return None
    low, high = shift_interval(before, after, confidence)
    if low <= 0.0:  # with runs tied across the levels: the test and its interval part at a tie
        return None
    return Change(index=found[start].index, before_s=float(np.exp(before.mean())),
                  after_s=float(np.exp(after.mean())), ratio=float(np.exp(difference)),
                  low=float(np.exp(low)), high=float(np.exp(high))), len(found) - start


def verdict(change: Change, *, min_effect: float) -> str:
    """A change's verdict by its Welch interval (a series' latest slowdown is a new regression
    only by newest_slowdown's test)."""
    if not change.significant():
        return UNSURE
    if abs(change.ratio - 1.0) <= min_effect:
        return SMALL
    if not change.slower:
        return IMPROVEMENT
    return REGRESSION
