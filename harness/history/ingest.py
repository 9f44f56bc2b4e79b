"""``history add``: the runs of results directories into the database, each run in one
transaction, nothing twice.

A run is keyed by its run_id, a latency point by (series, run, worker process), a check outcome by
(series, run); rows already there are counted as skipped, and every insert also ignores a row a
concurrent writer added meanwhile (INSERT ... ON CONFLICT DO NOTHING), so two writers at once lose
nothing and duplicate nothing. Within a run, a record written again for the same key (a check
re-run alone, a resumed run) replaces the earlier one: the last line wins, as the report reads it.
A gate directory against an anchor (gate.json) adds its comparisons once its runs are in
(harness.history.anchor_ingest).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import OperationalError

from harness.gate.verdicts_file import GateVerdicts
from harness.history.anchor_ingest import gate_rows, read_gates
from harness.history.database import HistoryError
from harness.history.machines import identify
from harness.history.schema import (
    CHECK,
    LATENCY,
    AnchorComparison,
    Machine,
    Outcome,
    Point,
    Run,
    Series,
)
from harness.history.sources import Commits, run_directories, utc
from harness.records import Record, RunInfo, iter_records, read_run_info

SeriesKey = tuple  # (kind, impl, origin, family, suite, check, case_id, threads, device, dtype)
KEY_COLUMNS = ("kind", "impl", "origin", "family", "suite", "check", "case_id", "threads",
               "device", "dtype")
ATTEMPTS = 5  # a transaction a database aborted (a PostgreSQL deadlock) is tried again


@dataclass(frozen=True)
class Added:
    """What one ``history add`` added, and what it found already there."""

    runs: int = 0
    outcomes: int = 0
    series: int = 0  # new latency series
    points: int = 0
    skipped: int = 0  # points and outcomes already in the database
    untimed: int = 0  # latency records without samples (a timing that failed)
    gates: int = 0  # gate directories against an anchor
    comparisons: int = 0  # their timings' anchor comparisons
    warnings: tuple[str, ...] = field(default=())

    def __add__(self, other: Added) -> Added:
        return Added(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                        for f in fields(self)})

    def line(self) -> str:
        text = (f"added {self.runs:,} runs, {self.outcomes:,} check outcomes, "
                f"{self.series:,} latency series, {self.points:,} points"
                + (f", {self.comparisons:,} anchor comparisons" if self.gates else "")
                + f"; skipped {self.skipped:,} already there")
        if self.untimed:
            text += f"; {self.untimed:,} timings without samples (failed) not indexed"
        return text


def add_directories(engine: Engine, directories: Iterable[str | Path], *,
                    machine: str | None = None, branch: str | None = None,
                    progress: Callable[[str], None] | None = None,
                    checkout: Path | None = None) -> Added:
    """Add every run at or below each directory (ValueError naming a directory without one,
    before anything is added). ``checkout``: the git checkout that knows the runs' commits
    (default: the one each directory lies in). Gate directories against an anchor then add
    their comparisons."""
    directories = list(directories)
    runs = [run for d in directories for run in run_directories(d)]
    gates = read_gates(directories)
    commits, total = Commits(checkout), Added()
    for directory in runs:
        warnings: list[str] = []
        info = read_run_info(directory)
        records = list(iter_records(directory, on_partial=warnings.append))
        found = commits.info(directory, info.git_commit)
        values = run_values(info, directory, parent=found.parent, time=found.time,
                            branch=branch or found.branch)
        added = _in_transaction(engine, lambda c, i=info, v=values, r=records: add_run(
            c, i, v, r, machine=machine))
        total = total + added + Added(warnings=tuple(warnings))
        if progress is not None:
            progress(f"{directory}: {added.line()}")
    for directory, verdicts in gates:
        total = total + _in_transaction(engine, lambda c, d=directory, v=verdicts: add_gate(
            c, d, v))
    return total


def add_gate(connection: Connection, directory: Path, verdicts: GateVerdicts) -> Added:
    """One anchor gate's comparisons (inside the caller's transaction)."""
    found = gate_rows(connection, directory, verdicts)
    insert_ignoring(connection, AnchorComparison, list(found.rows))
    return Added(gates=1, comparisons=len(found.rows), skipped=found.skipped,
                 warnings=found.warnings)


def _in_transaction(engine: Engine, work: Callable[[Connection], Added]) -> Added:
    for attempt in range(ATTEMPTS):
        try:
            with engine.begin() as connection:
                return work(connection)
        except OperationalError as error:
            if attempt == ATTEMPTS - 1 or "deadlock" not in str(error).lower():
                reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
                raise HistoryError(f"the database refused the run ({reason})") from None
    raise AssertionError("unreachable")


def run_values(info: RunInfo, directory: Path, *, parent, time, branch) -> dict[str, Any]:
    return dict(run_id=info.run_id, commit=info.git_commit, parent_commit=parent,
                commit_time=time, branch=branch,
                # a resume on other code leaves no one commit that says what ran
                dirty=True if info.mixed else info.git_modified,
                created=utc(info.created), harness_version=info.harness_version,
                torch=info.torch, python=info.python, cuda=info.cuda, threads=info.threads,
                source=str(directory.resolve()), argv=list(info.argv))


def add_run(connection: Connection, info: RunInfo, values: dict[str, Any],
            records: list[Record], *, machine: str | None) -> Added:
    """One run's rows (inside the caller's transaction)."""
    existing = connection.execute(select(Run.id, Run.machine_id)
                                  .where(Run.run_id == info.run_id)).first()
    new_run = existing is None
    if new_run:
        identity = identify(info, name=machine)
        insert_ignoring(connection, Machine, [dict(identity=identity.digest, name=identity.name,
                                                   label=identity.label,
                                                   hardware=dict(identity.hardware))])
        machine_id = connection.execute(
            select(Machine.id).where(Machine.identity == identity.digest)).scalar_one()
        insert_ignoring(connection, Run, [dict(values, machine_id=machine_id)])
        existing = connection.execute(select(Run.id, Run.machine_id)
                                      .where(Run.run_id == info.run_id)).one()
    run_pk, machine_id = existing  # a run added before keeps the machine it was added with
    if not new_run and info.mixed:  # resumed on other code since it was added
        connection.execute(update(Run).where(Run.id == run_pk).values(dirty=True))

    timed: dict[tuple[SeriesKey, int], dict[str, Any]] = {}
    checked: dict[SeriesKey, dict[str, Any]] = {}
    untimed = 0
    for record in records:  # the last record of a key wins
        key = series_key(record, info)
        if key[0] == LATENCY:
            samples = [float(s) for s in record.metrics.get("samples_s") or []]
            if not samples:
                untimed += 1
                continue
            worker = int(record.metrics.get("worker") or 0)
            timed[key, worker] = dict(worker=worker, median_s=statistics.median(samples),
                                      samples_s=samples,
                                      number_per_run=record.metrics.get("number_per_run"))
        else:
            checked[key] = dict(outcome=record.outcome, message=record.message,
                                max_error=record.max_error, tolerance=record.tolerance,
                                duration_s=record.duration_s)

    keys = {k for k, _ in timed} | set(checked)
    ids = series_ids(connection, machine_id)
    missing = keys - set(ids)
    insert_ignoring(connection, Series, [dict(zip(KEY_COLUMNS, k), machine_id=machine_id)
                                         for k in sorted(missing)])
    if missing:
        ids = series_ids(connection, machine_id)

    had_points = set(connection.execute(select(Point.series_id, Point.worker)
                                        .where(Point.run_id == run_pk)).all())
    points = [dict(row, series_id=ids[k], run_id=run_pk) for (k, w), row in timed.items()
              if (ids[k], w) not in had_points]
    had_outcomes = set(connection.execute(select(Outcome.series_id)
                                          .where(Outcome.run_id == run_pk)).scalars())
    outcomes = [dict(row, series_id=ids[k], run_id=run_pk) for k, row in checked.items()
                if ids[k] not in had_outcomes]
    insert_ignoring(connection, Point, points)
    insert_ignoring(connection, Outcome, outcomes)
    return Added(runs=int(new_run), outcomes=len(outcomes),
                 series=sum(k[0] == LATENCY for k in missing), points=len(points),
                 skipped=len(timed) + len(checked) - len(points) - len(outcomes),
                 untimed=untimed)


def series_key(record: Record, info: RunInfo) -> SeriesKey:
    """The series a record belongs to on its machine (see harness.history.schema.Series)."""
    case = record.case or {}
    device = str(case.get("device") or record.metrics.get("device") or "")
    dtype = str(case.get("dtype") or "")
    if record.suite == LATENCY:
        threads = int(record.metrics.get("threads") or info.threads)
        return (LATENCY, record.impl, record.origin, record.family, record.suite, record.check,
                record.case_id, threads, device, dtype)
    return (CHECK, record.impl, record.origin, record.family, record.suite, record.check,
            record.case_id, 0, device, dtype)


def series_ids(connection: Connection, machine_id: int) -> dict[SeriesKey, int]:
    columns = [getattr(Series, c) for c in KEY_COLUMNS]
    rows = connection.execute(select(Series.id, *columns).where(Series.machine_id == machine_id))
    return {tuple(row[1:]): row[0] for row in rows}


def insert_ignoring(connection: Connection, table: type, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows, skipping any whose unique key is already there (in either dialect)."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise HistoryError(f"database kind {dialect!r} is not supported; use SQLite or "
                           "PostgreSQL")
    connection.execute(insert(table).on_conflict_do_nothing(), rows)
