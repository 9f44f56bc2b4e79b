"""What a history database holds, per machine: runs, series, points, outcomes and the span of
commits (``history list``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from harness.history.schema import LATENCY, Machine, Outcome, Point, Run, Series


@dataclass(frozen=True)
class MachineHoldings:
    """One machine's share of the database; first, last: its earliest and latest run start."""

    label: str
    hardware: dict
    runs: int
    latency_series: int
    check_series: int
    points: int
    outcomes: int
    first: datetime | None
    last: datetime | None


def holdings(engine: Engine) -> list[MachineHoldings]:
    """Per machine, in the order they were first added."""
    with engine.connect() as connection:
        machines = connection.execute(select(Machine.id, Machine.label, Machine.hardware)
                                      .order_by(Machine.id)).all()
        runs = dict(connection.execute(select(Run.machine_id, func.count())
                                       .group_by(Run.machine_id)).all())
        spans = {m: (a, b) for m, a, b in connection.execute(
            select(Run.machine_id, func.min(Run.created), func.max(Run.created))
            .group_by(Run.machine_id))}
        series = {(m, k): n for m, k, n in connection.execute(
            select(Series.machine_id, Series.kind, func.count())
            .group_by(Series.machine_id, Series.kind))}
        points = dict(connection.execute(
            select(Series.machine_id, func.count()).join(Point, Point.series_id == Series.id)
            .group_by(Series.machine_id)).all())
        outcomes = dict(connection.execute(
            select(Series.machine_id, func.count()).join(Outcome, Outcome.series_id == Series.id)
            .group_by(Series.machine_id)).all())
    return [MachineHoldings(
        label=label, hardware=dict(hardware), runs=runs.get(pk, 0),
        latency_series=series.get((pk, LATENCY), 0),
        check_series=sum(n for (m, k), n in series.items() if m == pk and k != LATENCY),
        points=points.get(pk, 0), outcomes=outcomes.get(pk, 0),
        first=spans.get(pk, (None, None))[0], last=spans.get(pk, (None, None))[1])
        for pk, label, hardware in machines]
