"""``history add`` of a gate directory: its verdicts (gate.json) as anchor comparisons.

A gate of head against a fixed anchor (``gate --base-ref REF``: the last release tag, or a
commit some merges back) run on every push tests the cumulative cost of many small merges with
the gate's own statistics. Its two sides are runs the history adds like any other; this adds,
per timing, the gate's ratio, interval and verdict, keyed by (head run, the head timing's latency
series), so a directory added twice adds nothing twice. A gate between two implementations (no
``--base-ref``) compares no commits: its runs are added, no anchor comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from harness.gate.verdicts_file import GATE_FILE, GateVerdicts, read_verdicts
from harness.history.schema import LATENCY, AnchorComparison, Point, Run, Series
from harness.records import RUN_FILE


@dataclass(frozen=True)
class GateRows:
    """One gate directory's anchor comparisons not in the database yet (rows of
    AnchorComparison), how many are there already, and a warning per timing without a series."""

    rows: tuple[dict[str, Any], ...] = ()
    skipped: int = 0
    warnings: tuple[str, ...] = ()


def gate_directories(directory: str | Path) -> list[Path]:
    """Every gate directory at or below ``directory``: gate.json beside base/ and head/ runs."""
    return sorted({p.parent for p in Path(directory).rglob(GATE_FILE) if p.is_file()
                   and (p.parent / "base" / RUN_FILE).is_file()
                   and (p.parent / "head" / RUN_FILE).is_file()})


def read_gates(directories: list[str | Path]) -> list[tuple[Path, GateVerdicts]]:
    """The anchor gates below the directories with their verdicts (ValueError naming a bad
    gate.json, before anything is added); gates without a base ref left out."""
    found = [(d, read_verdicts(d / GATE_FILE)) for root in directories
             for d in gate_directories(root)]
    return [(d, v) for d, v in found if v.base_ref]


def gate_rows(connection: Connection, directory: Path, verdicts: GateVerdicts) -> GateRows:
    """One anchor gate's new comparisons (inside the caller's transaction, once its runs are
    in); ValueError when gate.json names other runs than its base/ and head/."""
    pks = dict(connection.execute(select(Run.run_id, Run.id).where(
        Run.run_id.in_([verdicts.head_run, verdicts.base_run]))).all())
    if verdicts.head_run not in pks or verdicts.base_run not in pks:
        raise ValueError(f"{str(directory)!r}: gate.json names runs {verdicts.base_run!r} and "
                         f"{verdicts.head_run!r}, not those of its base/ and head/")
    head = pks[verdicts.head_run]
    timed = connection.execute(
        select(Series.id, Series.impl, Series.check, Series.case_id).distinct()
        .join(Point, Point.series_id == Series.id)
        .where(Point.run_id == head, Series.kind == LATENCY)).all()
    series = {}
    for series_id, impl, phase, case_id in sorted(timed):
        series.setdefault((impl, phase, case_id), series_id)
    had = set(connection.execute(select(AnchorComparison.series_id)
                                 .where(AnchorComparison.run_id == head)).scalars())
    rows, warnings, skipped = [], [], 0
    for t in verdicts.timings:
        series_id = series.get((t.impl, t.phase, t.case_id))
        if series_id is None:
            warnings.append(f"{directory}: {t.impl} {t.phase} {t.case_id} has no timing in "
                            "head/: its anchor comparison is not added")
        elif series_id in had:
            skipped += 1
        else:
            had.add(series_id)
            rows.append(dict(run_id=head, series_id=series_id,
                             base_run_id=pks[verdicts.base_run], anchor_ref=verdicts.base_ref,
                             anchor_commit=verdicts.base_commit or "", ratio=t.ratio,
                             low=t.low, high=t.high, verdict=t.verdict,
                             base_processes=t.base_processes,
                             head_processes=t.head_processes, p=t.p, alpha=verdicts.alpha,
                             min_effect=verdicts.min_effect, status=verdicts.status))
    return GateRows(rows=tuple(rows), skipped=skipped, warnings=tuple(warnings))
