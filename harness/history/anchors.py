"""Anchor drift as the history holds it: every gate of head against a fixed anchor, per machine
and timing in commit order, and what ``history check`` makes of the latest of each.

Many merges, each too small for its own gate to call a regression, can add up; a gate of head
against a fixed anchor (the last release tag, or N merges back) tests the sum with the gate's own
statistics. The latest comparison of a timing is what head costs now: a regression fails the
check, an undecided one (too few processes, or a noisy machine) is a warning. Runs from modified
checkouts are left out, as everywhere in the history (their commit does not say what ran).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import Engine, select

from harness.gate.stats import REGRESSION, UNCHANGED, UNDECIDED, UNJUDGED
from harness.history.schema import AnchorComparison, Machine, Run, Series
from harness.history.timelines import RunRef

UNSURE = (UNDECIDED, UNJUDGED)  # the verdicts that make a gate INCONCLUSIVE
# Gates in a row against one anchor that say regression before the check fails (--anchor-confirm):
# one gate's false alarms (0.1% of them on calibrate's A/A pools) would be 13 per 100 commits of
# a job gating every push; two in a row, about one in 6,000 pushes (docs/history.md, Anchor
# drift).
CONFIRM = 2
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

    def line(self, what: str, *, machine: bool = False) -> str:
        """One line for ``history check``, e.g. "torch-gru inference T50-B8-I128-H128: 1.062x
        the anchor v1.0 (abc1234) [1.030–1.090], 40 processes per side: cumulative
        regression" (``what``: AnchorFindings.said)."""
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


def in_a_row(points: tuple[AnchorPoint, ...]) -> dict[tuple[int, str], int]:
    """Per timing (series) and anchor: how many of its latest comparisons, in commit order, say
    regression in a row."""
    ordered: dict[tuple[int, str], list[AnchorPoint]] = {}
    for p in points:
        ordered.setdefault((p.series_id, p.anchor), []).append(p)
    counts = {}
    for key, same in ordered.items():
        count = 0
        for p in sorted(same, key=lambda p: p.head.order, reverse=True):
            if p.verdict != REGRESSION:
                break
            count += 1
        counts[key] = count
    return counts


@dataclass(frozen=True)
class AnchorFindings:
    """What ``history check`` makes of the anchor comparisons: per machine and timing its
    latest; regressions said by ``confirm`` gates in a row fail the check, a latest regression
    not confirmed yet and unsure ones (undecided, too few processes) warn."""

    latest: tuple[AnchorPoint, ...]
    streaks: tuple[int, ...]  # per latest comparison: its anchor's regressions in a row
    confirm: int = CONFIRM

    def __post_init__(self) -> None:
        if self.confirm < 1:
            raise ValueError(f"--anchor-confirm {self.confirm} is invalid; expected 1 or more "
                             f"gates in a row, e.g. {CONFIRM}")

    def streak(self, point: AnchorPoint) -> int:
        return self._streak_of[point]

    @functools.cached_property
    def _streak_of(self) -> dict[AnchorPoint, int]:
        return dict(zip(self.latest, self.streaks))

    def confirmed(self, point: AnchorPoint) -> bool:
        return point.verdict == REGRESSION and self.streak(point) >= self.confirm

    @functools.cached_property
    def regressions(self) -> tuple[AnchorPoint, ...]:
        return tuple(p for p in self.latest if self.confirmed(p))

    @functools.cached_property
    def unconfirmed(self) -> tuple[AnchorPoint, ...]:
        return tuple(p for p in self.latest
                     if p.verdict == REGRESSION and not self.confirmed(p))

    @property
    def unsure(self) -> tuple[AnchorPoint, ...]:
        return tuple(p for p in self.latest if p.verdict in UNSURE)

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def said(self, point: AnchorPoint, *, short: bool = False) -> str:
        """What a latest comparison means for the check, in words (``short``: for a table)."""
        if self.confirmed(point):
            return "cumulative regression"
        if point.verdict == REGRESSION:
            return (f"regression, {self.streak(point)} of {self.confirm} in a row" if short else
                    f"regression in {self.streak(point)} of the {self.confirm} gates in a row "
                    "a cumulative one takes: the next gate against the anchor confirms or "
                    "clears it (a warning, not a failure)")
        if point.verdict in UNSURE and not short:
            return f"{point.said} against the anchor (a warning, not a failure)"
        return point.said

    def lines(self) -> list[str]:
        """A line per regression, then per unconfirmed and unsure timing (the machine named
        where several)."""
        several = len({p.machine_id for p in self.latest}) > 1
        return [p.line(self.said(p), machine=several)
                for p in (*self.regressions, *self.unconfirmed, *self.unsure)]

    def phrase(self) -> str:
        """For the check's last line, e.g. "1 cumulative regression against the anchor (3
        timings, 1 undecided)"; '' when no anchor comparison is held."""
        if not self.latest:
            return ""
        n, unsure = len(self.regressions), len(self.unsure)
        waiting = len(self.unconfirmed)
        said = (f"{n} cumulative {'regression' if n == 1 else 'regressions'}" if n
                else "no cumulative regression")
        return (f"{said} against the anchor ({len(self.latest)} "
                f"{'timing' if len(self.latest) == 1 else 'timings'}"
                + (f", {waiting} not confirmed yet" if waiting else "")
                + (f", {unsure} undecided" if unsure else "") + ")")


def findings(points: tuple[AnchorPoint, ...], *, confirm: int = CONFIRM) -> AnchorFindings:
    """The latest comparison of every timing among ``points``, with its regressions in a
    row."""
    newest, counts = latest(points), in_a_row(points)
    return AnchorFindings(newest, tuple(counts[(p.series_id, p.anchor)] for p in newest),
                          confirm)


def anchor_findings(engine: Engine, *, confirm: int = CONFIRM) -> AnchorFindings:
    """The latest anchor comparison of every timing on every machine."""
    return findings(load_anchor_points(engine), confirm=confirm)


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
