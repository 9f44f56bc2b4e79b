"""Anchor drift as the history holds it: every gate of head against a fixed anchor, per machine
and timing in commit order, and what ``history check`` makes of the latest of each.

Many merges, each too small for its own gate to call a regression, can add up; a gate of head
against a fixed anchor (the last release tag, or N merges back) tests the sum with the gate's own
statistics. The latest comparison of a timing is what head costs now: a regression fails the
check, an undecided one (too few processes, or a noisy machine) is a warning. Runs from modified
checkouts are left out, as everywhere in the history (their commit does not say what ran).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from harness.gate.stats import REGRESSION, UNCHANGED, UNDECIDED, UNJUDGED
from harness.history.schema import AnchorComparison, Machine, Run, Series
from harness.history.timelines import RunRef

UNSURE = (UNDECIDED, UNJUDGED)  # the verdicts that make a gate INCONCLUSIVE
HELD_SAID = "no regression ≥ min effect"  # a sequential gate's held timing, as its summary says


@dataclass(frozen=True)
class AnchorPoint:
    """One timing of one anchor gate: head (its run) over the anchor, with the gate's figures."""

    series_id: int
    machine_id: int
    machine: str
    impl: str
    family: str
    phase: str
    case_id: str
    threads: int
    anchor_ref: str
    anchor_commit: str
    head: RunRef
    ratio: float
    low: float | None
    high: float | None
    verdict: str
    base_processes: int
    head_processes: int
    p: float
    min_effect: float

    @property
    def anchor(self) -> str:
        """How lines name the anchor: its ref and short commit, e.g. v1.0 (abc1234)."""
        return f"{self.anchor_ref} ({self.anchor_commit[:7] or 'commit unknown'})"

    @property
    def processes(self) -> str:
        if self.base_processes == self.head_processes:
            return f"{self.head_processes} processes per side"
        return f"{self.base_processes} / {self.head_processes} processes per side"

    @property
    def interval(self) -> str:
        if self.low is None or self.high is None:
            return "[no interval]"
        return f"[{self.low:.3f}–{self.high:.3f}]"

    @property
    def said(self) -> str:
        """The verdict as the gate's summary words it."""
        return HELD_SAID if self.verdict == UNCHANGED else self.verdict

    def line(self, *, machine: bool = False) -> str:
        """One line for ``history check``, e.g. "torch-gru inference T50-B8-I128-H128: 1.062x
        the anchor v1.0 (abc1234) [1.030–1.090], 40 processes per side: cumulative
        regression"."""
        what = ("cumulative regression" if self.verdict == REGRESSION else
                f"{self.said} against the anchor (a warning, not a failure)"
                if self.verdict in UNSURE else self.said)
        where = f" on {self.machine}" if machine else ""
        return (f"{self.impl} {self.phase} {self.case_id}{where}: {self.ratio:.3f}x the anchor "
                f"{self.anchor} {self.interval}, {self.processes} (head {self.head.name}): {what}")


def load_anchor_points(engine: Engine) -> tuple[AnchorPoint, ...]:
    """Every anchor comparison of a clean head run, by machine, timing and commit order."""
    a, s = AnchorComparison, Series
    with engine.connect() as connection:
        rows = connection.execute(
            select(s.id, s.machine_id, Machine.label, s.impl, s.family, s.check, s.case_id,
                   s.threads, a.anchor_ref, a.anchor_commit, Run.run_id, Run.commit,
                   Run.commit_time, Run.created, Run.dirty, a.ratio, a.low, a.high, a.verdict,
                   a.base_processes, a.head_processes, a.p, a.min_effect)
            .join(Run, a.run_id == Run.id).join(s, a.series_id == s.id)
            .join(Machine, s.machine_id == Machine.id)).all()
    points = [AnchorPoint(
        series_id=r.id, machine_id=r.machine_id, machine=r.label, impl=r.impl,
        family=r.family, phase=r.check, case_id=r.case_id, threads=r.threads,
        anchor_ref=r.anchor_ref, anchor_commit=r.anchor_commit,
        head=RunRef(r.run_id, r.commit, (r.commit_time or r.created, r.created)),
        ratio=r.ratio, low=r.low, high=r.high, verdict=r.verdict,
        base_processes=r.base_processes, head_processes=r.head_processes, p=r.p,
        min_effect=r.min_effect) for r in rows if not r.dirty]
    return tuple(sorted(points, key=lambda p: (p.machine_id, p.family, p.impl, p.case_id,
                                               p.phase, p.threads, p.head.order)))


def latest(points: tuple[AnchorPoint, ...]) -> tuple[AnchorPoint, ...]:
    """Per machine and timing (its series), its latest comparison in commit order."""
    found: dict[int, AnchorPoint] = {}
    for point in points:
        if point.series_id not in found or point.head.order >= found[point.series_id].head.order:
            found[point.series_id] = point
    return tuple(sorted(found.values(), key=lambda p: (p.machine_id, p.family, p.impl,
                                                       p.case_id, p.phase, p.threads)))


@dataclass(frozen=True)
class AnchorFindings:
    """What ``history check`` makes of the anchor comparisons: per machine and timing its
    latest; regressions fail the check, unsure ones (undecided, too few processes) warn."""

    latest: tuple[AnchorPoint, ...]

    @property
    def regressions(self) -> tuple[AnchorPoint, ...]:
        return tuple(p for p in self.latest if p.verdict == REGRESSION)

    @property
    def unsure(self) -> tuple[AnchorPoint, ...]:
        return tuple(p for p in self.latest if p.verdict in UNSURE)

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def lines(self) -> list[str]:
        """A line per regression, then per unsure timing (the machine named where several)."""
        several = len({p.machine_id for p in self.latest}) > 1
        return [p.line(machine=several) for p in (*self.regressions, *self.unsure)]

    def phrase(self) -> str:
        """For the check's last line, e.g. "1 cumulative regression against the anchor (3
        timings, 1 undecided)"; '' when no anchor comparison is held."""
        if not self.latest:
            return ""
        n, unsure = len(self.regressions), len(self.unsure)
        said = (f"{n} cumulative {'regression' if n == 1 else 'regressions'}" if n
                else "no cumulative regression")
        return (f"{said} against the anchor ({len(self.latest)} "
                f"{'timing' if len(self.latest) == 1 else 'timings'}"
                + (f", {unsure} undecided" if unsure else "") + ")")


def anchor_findings(engine: Engine) -> AnchorFindings:
    """The latest anchor comparison of every timing on every machine."""
    return AnchorFindings(latest(load_anchor_points(engine)))


@dataclass(frozen=True)
class DriftChart:
    """One timing on one machine against one anchor: its comparisons in commit order.
    key: the chart's HTML id."""

    key: str
    points: tuple[AnchorPoint, ...]

    @property
    def first(self) -> AnchorPoint:
        return self.points[0]


def drift_charts(points: tuple[AnchorPoint, ...]) -> tuple[DriftChart, ...]:
    """The points (as load_anchor_points orders them) as a chart per timing and anchor; a
    timing gated against a new anchor (a new release tag) starts a new chart."""
    grouped: dict[tuple[int, str, str], list[AnchorPoint]] = {}
    for point in points:
        grouped.setdefault((point.series_id, point.anchor_ref, point.anchor_commit),
                           []).append(point)
    anchors: dict[int, int] = {}
    charts = []
    for (series_id, _, _), found in grouped.items():
        anchors[series_id] = anchors.get(series_id, -1) + 1
        charts.append(DriftChart(f"drift-{series_id}-{anchors[series_id]}", tuple(found)))
    return tuple(charts)
