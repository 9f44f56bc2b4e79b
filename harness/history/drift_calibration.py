"""Does ``history check`` catch a slow drift on this machine, and how often does it cry wolf?

Histories are built from this machine's measured run-to-run noise (harness.history.drift_noise):
each commit's number is a measured noise ratio drawn with replacement (in blocks of ``block``
consecutive runs, to keep any autocorrelation the measurement had; 1 = independent draws).
A *stepped* history gets five +1% multiplicative steps, 3 to 10 commits apart (uniformly), the
first placed at random with room for the rest and ten commits after them; a *flat* one gets
nothing. Every rule (harness.history.drift_rules) is applied online, after each commit on the
history so far, as CI would run it; the first ``WARMUP`` commits are the series' start, judged by
no rule.

- **Detected**: the rule alarms at a commit from the fifth step to ``WINDOW`` commits after it;
  a rule that reports an interval for the step (``history check``) must also have the cumulative
  regression (1.01^5) inside it, so that it reports the drift and not one of its 1% pieces.
  Delay: that commit minus the fifth step's.
- **Blame**: the first bad commit of that alarm within ``BLAME_TOLERANCE`` of a true step.
- **False alarms**: on flat histories, alarm onsets (a commit that alarms after one that did
  not) per series per 100 commits judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STEP, STEPS, GAPS = 0.01, 5, (3, 10)
WINDOW, BLAME_TOLERANCE, WARMUP = 10, 2, 10
LENGTHS = (100, 150)
FALSE_ALARM_GOAL = 1.0  # alarm onsets per series per 100 commits, in percent
ALPHAS = (1e-2, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)  # history check's, largest first
QUIETER = (0.02, 0.01, 0.005)  # log sds the measured noise is shrunk to


@dataclass(frozen=True, eq=False)
class History:
    """Per commit, seconds (a noise ratio times the injected steps); ``steps``: the first
    commit of each new level (empty for a flat history)."""

    values: np.ndarray
    steps: tuple[int, ...] = ()

    @property
    def cumulative(self) -> float:
        return (1.0 + STEP) ** len(self.steps)


@dataclass(frozen=True)
class SimulationRequest:
    """``histories`` stepped and as many flat ones, of LENGTHS commits, seeded."""

    histories: int = 1000
    block: int = 1
    seed: int = 0

    def validate(self) -> None:
        if self.histories < 1:
            raise ValueError(f"--histories {self.histories} is invalid; expected at least 1")
        if self.block < 1:
            raise ValueError(f"--block {self.block} is invalid; expected at least 1 run")


def resample(ratios: np.ndarray, length: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` draws from ``ratios``: random blocks of ``block`` consecutive ones, joined."""
    block = min(block, len(ratios))
    starts = rng.integers(0, len(ratios) - block + 1, size=math.ceil(length / block))
    return np.concatenate([ratios[s:s + block] for s in starts])[:length]


def step_positions(length: int, rng: np.random.Generator) -> tuple[int, ...]:
    gaps = rng.integers(GAPS[0], GAPS[1] + 1, size=STEPS - 1)
    latest_first = length - 1 - WINDOW - int(gaps.sum())
    first = int(rng.integers(2 * WARMUP, latest_first + 1))
    return tuple(int(p) for p in np.cumsum([first, *gaps]))


def inject(values: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """``values`` with a +STEP multiplicative step starting at each of ``steps``."""
    factor = np.ones(len(values))
    for position in steps:
        factor[position:] *= 1.0 + STEP
    return values * factor


def make_histories(ratios: np.ndarray, request: SimulationRequest, *,
                   stepped: bool) -> list[History]:
    rng = np.random.default_rng([request.seed, int(stepped)])
    out = []
    for _ in range(request.histories):
        length = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
        values = resample(np.asarray(ratios, dtype=float), length, request.block, rng)
        steps = step_positions(length, rng) if stepped else ()
        out.append(History(inject(values, steps), steps))
    return out


@dataclass(frozen=True)
class RuleResult:
    """One rule over the stepped and flat histories (see the module docstring)."""

    name: str
    delays: tuple[int | None, ...]  # per stepped history: commits after the fifth step, or None
    blamed_right: tuple[bool, ...]  # per detection
    onsets: int  # alarm onsets on flat histories
    flat_commits: int  # commits judged on flat histories
    alarmed_in_drift: float  # fraction of stepped histories with any alarm from the first step

    @property
    def detected(self) -> float:
        return sum(d is not None for d in self.delays) / len(self.delays)

    @property
    def median_delay(self) -> float:
        found = [d for d in self.delays if d is not None]
        return float(np.median(found)) if found else math.nan

    @property
    def false_alarms_per_100(self) -> float:
        """Alarm onsets per series per 100 commits, in percent of series."""
        return 100.0 * self.onsets / self.flat_commits * 100.0

    @property
    def blame(self) -> float:
        return sum(self.blamed_right) / len(self.blamed_right) if self.blamed_right else math.nan


def onsets(alarming: Sequence[int]) -> int:
    """How many runs of consecutive commits ``alarming`` (ascending) holds."""
    return sum(1 for i, n in enumerate(alarming) if i == 0 or alarming[i - 1] != n - 1)


def evaluate(rule, stepped: Sequence[History], flat: Sequence[History]) -> RuleResult:
    """``rule`` applied online to every history (see the module docstring)."""
    delays, blamed, in_drift = [], [], 0
    for history in stepped:
        first, fifth = history.steps[0], history.steps[-1]
        alarms = rule.alarms(history.values, range(first, fifth + WINDOW + 1))
        in_drift += bool(alarms)
        hits = [n for n in sorted(alarms) if n >= fifth and (
            math.isnan(alarms[n].low) or alarms[n].covers(history.cumulative))]
        delays.append(hits[0] - fifth if hits else None)
        if hits:
            blame = alarms[hits[0]].first_bad
            blamed.append(min(abs(blame - s) for s in history.steps) <= BLAME_TOLERANCE)
    flat_onsets, judged = false_alarms(rule, flat)
    return RuleResult(rule.name, tuple(delays), tuple(blamed), flat_onsets, judged,
                      in_drift / len(stepped))


def false_alarms(rule, flat: Sequence[History]) -> tuple[int, int]:
    """Alarm onsets of ``rule`` over the flat histories, and the commits it judged."""
    found = judged = 0
    for history in flat:
        commits = range(WARMUP, len(history.values))
        found += onsets(sorted(rule.alarms(history.values, commits)))
        judged += len(commits)
    return found, judged


def tune_alpha(ratios: np.ndarray, request: SimulationRequest,
               rule_at) -> list[tuple[float, float]]:
    """(alpha, false alarms per series per 100 commits) on flat histories of ``ratios`` for
    each of ALPHAS, largest first, up to the first within FALSE_ALARM_GOAL; ``rule_at``: the
    rule at an alpha. Tune on a measurement other than the one reported on."""
    flat = make_histories(ratios, request, stepped=False)
    tried = []
    for alpha in ALPHAS:
        found, judged = false_alarms(rule_at(alpha), flat)
        tried.append((alpha, 100.0 * found / judged * 100.0))
        if tried[-1][1] <= FALSE_ALARM_GOAL:
            break
    return tried


def shrunk(ratios: np.ndarray, log_sd: float) -> np.ndarray:
    """The measured ratios with their spread scaled, in log space, to ``log_sd``: the same
    shape of noise on a quieter machine."""
    logs = np.log(np.asarray(ratios, dtype=float))
    return np.exp(logs * log_sd / np.std(logs, ddof=1))


def calibrate(ratios: np.ndarray, request: SimulationRequest, rules: Sequence) -> list[RuleResult]:
    """Every rule on the same stepped and flat histories built from ``ratios``."""
    stepped = make_histories(ratios, request, stepped=True)
    flat = make_histories(ratios, request, stepped=False)
    return [evaluate(rule, stepped, flat) for rule in rules]
