"""The rules that judge a history after each commit, as CI would run them: ``history check``'s own
and those of the tools it is measured against (issue 24 §2's anchors).

Each rule sees the history up to commit n (one number per run, seconds, in commit order) and says
whether it alarms there and, when it does, which commit it blames (the first bad one) and what
step it reports. A rule is applied online: at each commit on its own prefix, never with
hindsight. The anchors are implemented from their documented rules, on this project's numbers:

- github-action-benchmark: the result against the previous commit's, alarm when it is more than
  ``alert-threshold`` times slower (its default 200%);
- CodSpeed: the result against the base's (here the previous commit's), alarm beyond 10%;
- Conbench's lookback z-score: the result against the mean and standard deviation of up to the
  previous 100 commits' results, alarm at z >= 5 (slower), given at least two of them;
- asv: a piecewise-constant fit of the whole series, then its regressions rule (a later level
  above an earlier one by more than 5% and more than the segments' errors): harness.history.
  drift_asv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.history.changes import change_points, describe_changes
from harness.history.drift_asv import asv_alarms
from harness.history.judge import ALPHA, newest_slowdown


@dataclass(frozen=True)
class Alarm:
    """A rule alarming at a commit: ``first_bad`` the commit it blames (the last good is the one
    before), ``ratio`` the slowdown it reports, ``low``/``high`` its interval where it gives
    one (nan where it does not)."""

    first_bad: int
    ratio: float
    low: float = math.nan
    high: float = math.nan

    def covers(self, ratio: float) -> bool:
        """Whether the reported interval holds ``ratio`` (False without an interval)."""
        return self.low <= ratio <= self.high


@dataclass(frozen=True)
class HistoryCheck:
    """``history check``'s rule on one series: change points (harness.history.changes) and an
    alarm when the trailing slowdowns together are a new regression at ``alpha``
    (harness.history.judge.newest_slowdown). ``drifts=False``: the latest change alone."""

    min_effect: float = 0.03
    penalty_scale: float | None = None  # None: changes.PENALTY_SCALE
    min_size: int = 2
    confidence: float = 0.95
    drifts: bool = True
    alpha: float = ALPHA

    @property
    def name(self) -> str:
        scale = "" if self.penalty_scale is None else f", penalty scale {self.penalty_scale:g}"
        level = "" if self.alpha == ALPHA else f", alpha {self.alpha:g}"
        return ("seq-harness history check" + ("" if self.drifts else ", latest change only")
                + scale + level)

    def at(self, values: np.ndarray) -> Alarm | None:
        extra = {} if self.penalty_scale is None else {"penalty_scale": self.penalty_scale}
        indices = change_points(values, min_size=self.min_size, **extra)
        if not indices:
            return None
        found = describe_changes(values, indices, confidence=self.confidence)
        newest = newest_slowdown(values, found, min_effect=self.min_effect, alpha=self.alpha,
                                 confidence=self.confidence, drifts=self.drifts)
        if newest is None:
            return None
        change = newest[0]
        return Alarm(change.index, change.ratio, change.low, change.high)

    def alarms(self, values: np.ndarray, commits: range) -> dict[int, Alarm]:
        return {n: a for n in commits if (a := self.at(values[:n + 1])) is not None}


@dataclass(frozen=True)
class PreviousResult:
    """The result against the previous commit's: alarm when ``threshold`` times slower or more
    (github-action-benchmark's ``alert-threshold``, CodSpeed's regression threshold)."""

    name: str
    threshold: float

    def __post_init__(self) -> None:
        if not self.threshold > 1.0:
            raise ValueError(f"threshold {self.threshold!r} is invalid; expected a ratio "
                             "above 1, e.g. 2.0 for 200%")

    def alarms(self, values: np.ndarray, commits: range) -> dict[int, Alarm]:
        out = {}
        for n in commits:
            if n >= 1 and (ratio := values[n] / values[n - 1]) > self.threshold:
                out[n] = Alarm(n, float(ratio))
        return out


@dataclass(frozen=True)
class LookbackZ:
    """Conbench's lookback z-score: the result against the distribution of up to ``window``
    previous commits' results, alarm at z >= ``z`` in the slower direction."""

    name: str = "Conbench lookback z-score"
    z: float = 5.0
    window: int = 100
    min_baseline: int = 2

    def alarms(self, values: np.ndarray, commits: range) -> dict[int, Alarm]:
        out = {}
        for n in commits:
            baseline = values[max(0, n - self.window):n]
            if len(baseline) < self.min_baseline:
                continue
            spread = float(np.std(baseline, ddof=1))
            if spread > 0 and (values[n] - baseline.mean()) / spread >= self.z:
                out[n] = Alarm(n, float(values[n] / baseline.mean()))
        return out


@dataclass(frozen=True)
class AsvRegressions:
    """asv's step detection and regressions rule (harness.history.drift_asv)."""

    name: str = "asv"
    threshold: float = 0.05
    min_size: int = 2

    def alarms(self, values: np.ndarray, commits: range) -> dict[int, Alarm]:
        return {n: Alarm(first_bad, ratio) for n, (first_bad, ratio)
                in asv_alarms(values, commits, threshold=self.threshold,
                              min_size=self.min_size).items()}


def anchors() -> tuple:
    """The anchors' rules at the settings the calibration publishes."""
    return (PreviousResult("github-action-benchmark, alert-threshold 200% (its default)", 2.0),
            PreviousResult("github-action-benchmark, alert-threshold 105%", 1.05),
            AsvRegressions(),
            LookbackZ(),
            PreviousResult("CodSpeed, 10% threshold", 1.10))
