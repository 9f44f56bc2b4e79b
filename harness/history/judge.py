"""``history check``: every series of the database judged over its runs in commit order.

A latency series (per machine) becomes one number per run, the median of its worker processes'
medians, and goes through harness.history.changes. Each change is reported with the last run
before it and the first run after (their commits: the range to bisect), its ratio and interval.
A **new regression** is a series whose latest change is a slowdown whose ratio exceeds
1 + min_effect and whose interval lies above 1: the series is slower now than it was, for sure,
by more than the minimum effect. A check series is broken when its latest decisive outcome
(passed or failed) is a failure and it passed before: reported with the commit it started failing
at. Runs whose tracked files differed from their commit (dirty) are left out: their commit does
not say what ran. Runs are in commit order: the commit time where the checkout knew the commit,
else the run's start.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from harness.history.changes import MIN_RUNS, Change, detect
from harness.history.schema import LATENCY, Machine, Outcome, Point, Run, Series

NEW_REGRESSION, REGRESSION, IMPROVEMENT = "new regression", "regression", "improvement"
SMALL, UNSURE = "below the minimum effect", "not significant"


@dataclass(frozen=True)
class RunRef:
    """A run as the tables name it: its commit (short) or, without one, its run id."""

    run_id: str
    commit: str | None
    order: tuple[datetime, datetime]

    @property
    def name(self) -> str:
        return self.commit[:12] if self.commit else f"run {self.run_id}"


@dataclass(frozen=True)
class SeriesChange:
    """A change in one latency series: between ``last_good`` and ``first_bad``."""

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


@dataclass(frozen=True)
class Breakage:
    """A check that passed before and fails in its latest runs (``failing`` of them)."""

    machine: str
    impl: str
    suite: str
    check: str
    case_id: str
    last_good: RunRef
    first_bad: RunRef
    failing: int
    message: str | None


@dataclass(frozen=True)
class Judgement:
    changes: tuple[SeriesChange, ...]
    breakages: tuple[Breakage, ...]
    latency_series: int
    check_series: int
    too_short: int  # latency series with too few clean runs to judge (none at all included)
    dirty_runs: int

    @property
    def new_regressions(self) -> tuple[SeriesChange, ...]:
        return tuple(c for c in self.changes if c.verdict == NEW_REGRESSION)

    @property
    def failed(self) -> bool:
        return bool(self.new_regressions or self.breakages)


def judge(engine: Engine, *, min_effect: float = 0.03, confidence: float = 0.95,
          min_size: int = 2) -> Judgement:
    """Every series of the database judged (see the module docstring)."""
    if not 0.0 <= min_effect < 1.0:
        raise ValueError(f"--min-effect {min_effect!r} is invalid; expected a fraction in "
                         "[0, 1), e.g. 0.03 for 3%")
    with engine.connect() as connection:
        runs = {row.id: row for row in connection.execute(select(Run))}
        labels = dict(connection.execute(select(Machine.id, Machine.label)).all())
        series = {row.id: row for row in connection.execute(select(Series))}
        points = connection.execute(select(Point.series_id, Point.run_id, Point.median_s))
        outcomes = connection.execute(select(Outcome.series_id, Outcome.run_id,
                                             Outcome.outcome, Outcome.message))
        timed: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for series_id, run_pk, median_s in points:
            if not runs[run_pk].dirty:
                timed[series_id][run_pk].append(median_s)
        checked: dict[int, list[tuple[int, str, str | None]]] = defaultdict(list)
        for series_id, run_pk, outcome, message in outcomes:
            if not runs[run_pk].dirty:
                checked[series_id].append((run_pk, outcome, message))
    refs = {pk: RunRef(run.run_id, run.commit, (run.commit_time or run.created, run.created))
            for pk, run in runs.items()}

    changes, judged = [], 0
    for series_id, by_run in sorted(timed.items()):
        row = series[series_id]
        order = sorted(by_run, key=lambda pk: refs[pk].order)
        values = [statistics.median(by_run[pk]) for pk in order]
        found = detect(values, min_size=min_size, confidence=confidence)
        judged += len(values) >= max(MIN_RUNS, 2 * min_size)
        for position, change in enumerate(found):
            latest = position == len(found) - 1
            changes.append(SeriesChange(
                machine=labels[row.machine_id], impl=row.impl, family=row.family,
                case_id=row.case_id, phase=row.check, threads=row.threads, change=change,
                last_good=refs[order[change.index - 1]], first_bad=refs[order[change.index]],
                verdict=verdict(change, latest=latest, min_effect=min_effect)))

    breakages = []
    for series_id, seen in sorted(checked.items()):
        row = series[series_id]
        decisive = sorted(((refs[pk], outcome, message) for pk, outcome, message in seen
                           if outcome in ("passed", "failed")), key=lambda s: s[0].order)
        start = len(decisive)
        while start > 0 and decisive[start - 1][1] == "failed":
            start -= 1
        if 0 < start < len(decisive):
            breakages.append(Breakage(
                machine=labels[row.machine_id], impl=row.impl, suite=row.suite, check=row.check,
                case_id=row.case_id, last_good=decisive[start - 1][0],
                first_bad=decisive[start][0], failing=len(decisive) - start,
                message=decisive[-1][2]))
    kinds = [s.kind for s in series.values()]
    return Judgement(changes=tuple(changes), breakages=tuple(breakages),
                     latency_series=kinds.count(LATENCY),
                     check_series=len(kinds) - kinds.count(LATENCY),
                     too_short=kinds.count(LATENCY) - judged,
                     dirty_runs=sum(bool(r.dirty) for r in runs.values()))


def verdict(change: Change, *, latest: bool, min_effect: float) -> str:
    if not change.significant():
        return UNSURE
    if abs(change.ratio - 1.0) <= min_effect:
        return SMALL
    if not change.slower:
        return IMPROVEMENT
    return NEW_REGRESSION if latest else REGRESSION
