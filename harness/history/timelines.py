"""The database's series as runs in commit order: the one reading that ``history check`` judges
and ``history page`` draws, so the two can never disagree about which runs count or in what order.

A run counts unless its tracked files differed from its commit (dirty: its commit does not say
what ran). The base side of a gate against an anchor (``gate --base-ref``) counts only in that
gate's comparisons (harness.history.anchors): every such gate measures the anchor again, and in
the anchor commit's own series those runs would pile up at one old commit, measured at every
later date. Runs are in commit order: the commit time where the checkout knew the commit, else the
run's start. A latency timeline holds, per run, each worker process's number — its fastest block,
the statistic the gate compares (harness.gate.stats.process_statistic: far steadier between
processes than their medians on a shared machine) —; a check timeline, per run, its outcome and
message.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from harness.gate.stats import process_statistic
from harness.history.schema import (
    LATENCY,
    AnchorComparison,
    Machine,
    Outcome,
    Point,
    Run,
    Series,
)


@dataclass(frozen=True)
class RunRef:
    """A run as the tables name it: its commit (short) or, without one, its run id.
    order: (commit time or start, start), the sort key of commit order."""

    run_id: str
    commit: str | None
    order: tuple[datetime, datetime]

    @property
    def name(self) -> str:
        return self.commit[:12] if self.commit else f"run {self.run_id}"


@dataclass(frozen=True)
class Timeline:
    """One series on one machine over its clean runs (``runs``, in commit order).

    kind: latency or check (harness.history.schema.Series says what each column holds; for
    latency, ``check`` is the phase). workers_s: per run, its worker processes' fastest blocks
    (latency); outcomes: per run, (outcome, message) (check).
    """

    series_id: int
    machine_id: int
    machine: str
    kind: str
    impl: str
    origin: str
    family: str
    suite: str
    check: str
    case_id: str
    threads: int
    device: str
    dtype: str
    runs: tuple[RunRef, ...]
    workers_s: tuple[tuple[float, ...], ...] = ()
    outcomes: tuple[tuple[str, str | None], ...] = ()

    @property
    def medians_s(self) -> list[float]:
        """One number per run: the median of its worker processes' fastest blocks."""
        return [statistics.median(w) for w in self.workers_s]


@dataclass(frozen=True)
class Timelines:
    """Every series of the database. machines: (id, label) in the order first added (two
    machines may share a label: the id tells them apart); latency_series,
    check_series: all series, those without a clean run included; dirty_runs: runs left out."""

    latency: tuple[Timeline, ...]
    checks: tuple[Timeline, ...]
    machines: tuple[tuple[int, str], ...]
    runs: int
    dirty_runs: int
    latency_series: int
    check_series: int
    anchor_base_runs: int = 0  # anchor gates' base sides, in their comparisons only


def load(engine: Engine) -> Timelines:
    """Every series of the database as timelines (see the module docstring)."""
    with engine.connect() as connection:
        runs = {row.id: row for row in connection.execute(select(Run))}
        machines = connection.execute(select(Machine.id, Machine.label)
                                      .order_by(Machine.id)).all()
        series = {row.id: row for row in connection.execute(select(Series))}
        anchor_bases = set(connection.execute(
            select(AnchorComparison.base_run_id).distinct()).scalars())
        points = connection.execute(select(Point.series_id, Point.run_id, Point.worker,
                                           Point.median_s, Point.samples_s))
        timed: dict[int, dict[int, list[tuple[int, float]]]] = defaultdict(
            lambda: defaultdict(list))
        for series_id, run_pk, worker, median_s, samples_s in points:
            if not runs[run_pk].dirty and run_pk not in anchor_bases:
                timed[series_id][run_pk].append(
                    (worker, process_statistic(samples_s) if samples_s else median_s))
        outcomes = connection.execute(select(Outcome.series_id, Outcome.run_id,
                                             Outcome.outcome, Outcome.message))
        checked: dict[int, dict[int, tuple[str, str | None]]] = defaultdict(dict)
        for series_id, run_pk, outcome, message in outcomes:
            if not runs[run_pk].dirty:
                checked[series_id][run_pk] = (outcome, message)
    labels = dict(machines)
    refs = {pk: RunRef(run.run_id, run.commit, (run.commit_time or run.created, run.created))
            for pk, run in runs.items()}

    def timeline(series_id: int, by_run: dict, **values) -> Timeline:
        row = series[series_id]
        order = sorted(by_run, key=lambda pk: refs[pk].order)
        return Timeline(series_id=series_id, machine_id=row.machine_id,
                        machine=labels[row.machine_id], kind=row.kind,
                        impl=row.impl, origin=row.origin, family=row.family, suite=row.suite,
                        check=row.check, case_id=row.case_id, threads=row.threads,
                        device=row.device, dtype=row.dtype,
                        runs=tuple(refs[pk] for pk in order),
                        **{name: tuple(pick(by_run[pk]) for pk in order)
                           for name, pick in values.items()})

    latency = tuple(timeline(i, by_run, workers_s=lambda w: tuple(m for _, m in sorted(w)))
                    for i, by_run in sorted(timed.items()))
    checks = tuple(timeline(i, by_run, outcomes=lambda o: o)
                   for i, by_run in sorted(checked.items()))
    kinds = [s.kind for s in series.values()]
    return Timelines(latency=latency, checks=checks, machines=tuple(labels.items()),
                     runs=len(runs), dirty_runs=sum(bool(r.dirty) for r in runs.values()),
                     latency_series=kinds.count(LATENCY),
                     check_series=len(kinds) - kinds.count(LATENCY),
                     anchor_base_runs=len(anchor_bases))
