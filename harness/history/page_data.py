"""What ``history page`` shows, gathered from the database without a line of HTML: per machine
its latency charts (per-run medians, the per-process spread, the noise band, the change points),
its check outcomes over commits and its drift against the anchor (harness.history.anchors), the
judgement's regressions and breakages, and the one-line summary. harness.history.page renders
it; tests read it directly.

The numbers are ``history check``'s own: the same timelines (harness.history.timelines) and the
same judgement (harness.history.judge), so the page and the check never disagree. The noise band
of a series is its fitted level (the geometric mean of each segment between change points) times
exp(+-2 sigma), sigma the robust run-to-run noise harness.history.changes penalises with: a run
outside it is unusual for that machine, a step in it is a change point.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise

import numpy as np
from sqlalchemy import Engine

from harness.history.anchors import (
    CONFIRM,
    AnchorFindings,
    AnchorPoint,
    DriftChart,
    drift_charts,
    findings,
    latest,
    load_anchor_points,
)
from harness.history.changes import noise_sigma
from harness.history.judge import (
    ALPHA,
    IMPROVEMENT,
    NEW_REGRESSION,
    REGRESSION,
    Breakage,
    Judgement,
    SeriesChange,
    judge_timelines,
)
from harness.history.timelines import RunRef, Timeline, Timelines, load
from harness.records import FAILED

BAND_SIGMAS = 2.0
SUMMARY_ITEMS = 3  # findings the summary line names before "and N more"
SEVERITY = {NEW_REGRESSION: 0, REGRESSION: 1, IMPROVEMENT: 2}  # the rest after these


@dataclass(frozen=True)
class LatencyChart:
    """One latency series on one machine. spread_s: per run, the fastest and slowest worker
    process's median; band_s: per run, the noise band around the fitted level; changes: its
    change points as judged, in run order."""

    timeline: Timeline
    medians_s: tuple[float, ...]
    spread_s: tuple[tuple[float, float], ...]
    band_s: tuple[tuple[float, float], ...]
    changes: tuple[SeriesChange, ...]

    @property
    def key(self) -> str:
        """The chart's HTML id."""
        return f"latency-{self.timeline.series_id}"

    @property
    def status(self) -> str:
        """The most severe verdict among its changes ('' for none)."""
        verdicts = sorted((c.verdict for c in self.changes), key=lambda v: SEVERITY.get(v, 9))
        return verdicts[0] if verdicts else ""


@dataclass(frozen=True)
class CheckRow:
    """A check that failed in at least one run on its machine; breakage: set when it passed
    before and fails now (``history check`` fails on it)."""

    timeline: Timeline
    breakage: Breakage | None


@dataclass(frozen=True)
class MachinePage:
    """One machine's share of the page. key: its id in the page; commits: the names of its
    runs in commit order (the charts' common axis); checks: how many check series it has;
    check_rows: those that ever failed."""

    key: str
    label: str
    commits: tuple[str, ...]
    charts: tuple[LatencyChart, ...]
    checks: int
    check_rows: tuple[CheckRow, ...]
    latest: RunRef | None


@dataclass(frozen=True)
class PageData:
    machines: tuple[MachinePage, ...]
    judgement: Judgement
    runs: int  # clean runs
    generated: datetime
    min_effect: float
    confidence: float
    anchor_points: tuple[AnchorPoint, ...] = ()  # every gate against an anchor, clean runs
    alpha: float = ALPHA
    anchor_confirm: int = CONFIRM  # regressions in a row against an anchor that fail

    @functools.cached_property
    def anchor_findings(self) -> AnchorFindings:
        return findings(self.anchor_points, confirm=self.anchor_confirm)

    def drift_of(self, key: str) -> tuple[DriftChart, ...]:
        """The drift charts of the machine whose page key is ``key``."""
        return tuple(c for c in drift_charts(self.anchor_points)
                     if machine_key(c.first.machine_id) == key)

    def drift_latest_of(self, key: str) -> tuple[AnchorPoint, ...]:
        """Per timing of that machine, its latest comparison against the anchor."""
        return tuple(p for p in latest(self.anchor_points) if machine_key(p.machine_id) == key)

    @property
    def regressions(self) -> tuple[SeriesChange, ...]:
        """Slowdowns beyond the minimum effect, new ones first."""
        return tuple(sorted((c for c in self.judgement.changes
                             if c.verdict in (NEW_REGRESSION, REGRESSION)),
                            key=lambda c: (SEVERITY[c.verdict], -c.change.ratio)))

    @property
    def other_changes(self) -> tuple[SeriesChange, ...]:
        """Improvements, and changes too small or too unsure to count."""
        return tuple(sorted((c for c in self.judgement.changes
                             if c.verdict not in (NEW_REGRESSION, REGRESSION)),
                            key=lambda c: (SEVERITY.get(c.verdict, 9), c.change.ratio)))

    @property
    def cumulative_regressions(self) -> tuple[AnchorPoint, ...]:
        """Timings whose latest comparisons against the anchor are regressions, confirmed."""
        return self.anchor_findings.regressions

    @property
    def failed(self) -> bool:
        return self.judgement.failed or bool(self.cumulative_regressions)

    def summary(self) -> str:
        """The line at the top: what got slower or broke and where, or that nothing did."""
        news, broken = self.judgement.new_regressions, self.judgement.breakages
        drifted = self.cumulative_regressions
        several = len(self.machines) > 1
        if not news and not broken and not drifted:
            latest = [m.latest for m in self.machines if m.latest is not None]
            newest = max(latest, key=lambda r: r.order).name if latest else "none"
            return (f"Nothing got slower and no check broke: "
                    f"{count(self.judgement.latency_series, 'latency series', 'latency series')}"
                    f" and {count(self.judgement.check_series, 'check')} over "
                    f"{count(self.runs, 'run')} on {count(len(self.machines), 'machine')}; "
                    f"latest {newest}.")
        parts = []
        if news:
            named = [f"{c.impl} {c.phase} {c.case_id} {c.change.ratio:.3f}x from "
                     f"{c.first_bad.name}" + (f" on {c.machine}" if several else "")
                     for c in sorted(news, key=lambda c: -c.change.ratio)]
            parts.append(f"{count(len(news), 'new regression')}: {listed(named)}")
        if broken:
            named = [f"{b.impl} {b.suite}::{b.check} {b.case_id} from {b.first_bad.name}"
                     + (f" on {b.machine}" if several else "") for b in broken]
            parts.append(f"{count(len(broken), 'check')} started failing: {listed(named)}")
        if drifted:
            named = [f"{p.impl} {p.phase} {p.case_id} {p.ratio:.3f}x the anchor {p.anchor} at "
                     f"{p.head.name}" + (f" on {p.machine}" if several else "") for p in drifted]
            parts.append(f"{count(len(drifted), 'cumulative regression')}: {listed(named)}")
        return "; ".join(parts) + "."


def count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def listed(items: list[str]) -> str:
    shown = ", ".join(items[:SUMMARY_ITEMS])
    return shown + (f" and {len(items) - SUMMARY_ITEMS} more" if len(items) > SUMMARY_ITEMS
                    else "")


def gather(engine: Engine, *, min_effect: float = 0.03, confidence: float = 0.95,
           alpha: float = ALPHA, anchor_confirm: int = CONFIRM,
           now: datetime | None = None) -> PageData:
    """The page's data from the database (see the module docstring)."""
    timelines = load(engine)
    judgement = judge_timelines(timelines, min_effect=min_effect, confidence=confidence,
                                alpha=alpha)
    return PageData(machines=machine_pages(timelines, judgement), judgement=judgement,
                    runs=timelines.runs - timelines.dirty_runs,
                    generated=now or datetime.now(timezone.utc), min_effect=min_effect,
                    confidence=confidence, anchor_points=load_anchor_points(engine),
                    alpha=alpha, anchor_confirm=anchor_confirm)


def machine_key(machine_id: int) -> str:
    """A machine's id in the page (the URL's hash selects it)."""
    return f"m{machine_id}"


def machine_pages(timelines: Timelines, judgement: Judgement) -> tuple[MachinePage, ...]:
    changes: dict[int, list[SeriesChange]] = defaultdict(list)
    for change in judgement.changes:
        changes[change.series_id].append(change)
    breakages = {b.series_id: b for b in judgement.breakages}
    labels = Counter(label for _, label in timelines.machines)
    pages = []
    for machine_id, label in timelines.machines:
        latency = [t for t in timelines.latency if t.machine_id == machine_id]
        checks = [t for t in timelines.checks if t.machine_id == machine_id]
        runs = sorted({r for t in (*latency, *checks) for r in t.runs}, key=lambda r: r.order)
        if not runs:
            continue  # every run of it was dirty
        charts = sorted((chart(t, changes[t.series_id]) for t in latency),
                        key=lambda c: (c.timeline.family, c.timeline.impl, c.timeline.case_id,
                                       c.timeline.check, c.timeline.threads))
        rows = [CheckRow(t, breakages.get(t.series_id)) for t in checks
                if any(outcome == FAILED for outcome, _ in t.outcomes)]
        rows.sort(key=lambda r: (r.breakage is None, r.timeline.impl, r.timeline.suite,
                                 r.timeline.check, r.timeline.case_id))
        pages.append(MachinePage(
            key=machine_key(machine_id),
            label=label if labels[label] == 1 else f"{label} #{machine_id}",
            commits=tuple(dict.fromkeys(r.name for r in runs)), charts=tuple(charts),
            checks=len(checks), check_rows=tuple(rows), latest=runs[-1]))
    return tuple(pages)


def chart(timeline: Timeline, changes: list[SeriesChange]) -> LatencyChart:
    medians = timeline.medians_s
    spread = tuple((min(w), max(w)) for w in timeline.workers_s)
    return LatencyChart(timeline=timeline, medians_s=tuple(medians), spread_s=spread,
                        band_s=band(medians, sorted({c.change.index for c in changes})),
                        changes=tuple(changes))


def band(medians_s: list[float], indices: list[int]) -> tuple[tuple[float, float], ...]:
    """Per run: its segment's geometric mean times exp(-+BAND_SIGMAS sigma)."""
    logs = np.log(np.asarray(medians_s, dtype=float))
    width = BAND_SIGMAS * noise_sigma(logs)
    bounds = [0, *indices, len(logs)]
    out: list[tuple[float, float]] = []
    for start, stop in pairwise(bounds):
        level = float(logs[start:stop].mean())
        out += [(math.exp(level - width), math.exp(level + width))] * (stop - start)
    return tuple(out)
