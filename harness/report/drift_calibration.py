"""calibration-drift.md: whether ``history check`` catches a slow drift on this machine's measured
noise, next to the anchors' rules on the very same histories, and what the noise was."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.history.drift_calibration import (
    BLAME_TOLERANCE,
    FALSE_ALARM_GOAL,
    GAPS,
    LENGTHS,
    STEP,
    STEPS,
    WARMUP,
    WINDOW,
    RuleResult,
    SimulationRequest,
)
from harness.history.drift_noise import MeasuredNoise
from harness.history.judge import ALPHA

GOAL_DETECTED, GOAL_FALSE_ALARMS, GOAL_BLAME = 0.90, FALSE_ALARM_GOAL, 0.90


@dataclass(frozen=True)
class Tuning:
    """``history check``'s alphas tried on another measurement's flat histories (``where``),
    largest first: (alpha, false alarms per series per 100 commits)."""

    where: str
    noise: MeasuredNoise
    histories: int
    tried: tuple[tuple[float, float], ...]
    load: str

    @property
    def alpha(self) -> float | None:
        """The largest alpha within the false-alarm goal (None: none of them)."""
        alpha, alarms = self.tried[-1]
        return alpha if alarms <= GOAL_FALSE_ALARMS else None

    def lines(self) -> list[str]:
        tried = ", ".join(f"{alpha:g}: {alarms:.2f}%" for alpha, alarms in self.tried)
        chosen = (f"the largest within {GOAL_FALSE_ALARMS:g}% is **{self.alpha:g}**"
                  + (" (harness.history.judge.ALPHA, the default)" if self.alpha == ALPHA
                     else ", its row above") if self.alpha is not None else
                  f"none of them kept false alarms within {GOAL_FALSE_ALARMS:g}%")
        return [f"**Tuning** (on a separate measurement, `{self.where}`: {self.noise.runs} runs "
                f"of {self.noise.processes_per_run} processes{self.load}, log sd "
                f"{self.noise.log_sd:.1%}): false alarms per series per 100 commits of "
                f"`history check` on {self.histories} flat histories of that measurement's "
                f"noise, by the alpha of its test of the latest level: {tried}; "
                f"{chosen}. The alpha is chosen there, not on the runs reported here."]


def percent(value: float, digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}%}"


def result_row(r: RuleResult) -> str:
    delay = "—" if math.isnan(r.median_delay) else f"{r.median_delay:g}"
    return (f"| {r.name} | {percent(r.detected)} | {delay} | "
            f"{r.false_alarms_per_100:.2f}% | {percent(r.blame)} | {percent(r.alarmed_in_drift)} |")


def noise_lines(noise: MeasuredNoise, *, level_s: float, load: str) -> list[str]:
    low, high = noise.iqr
    return [
        f"**Measured noise** ({noise.runs} runs of {noise.processes_per_run} fresh processes, "
        f"one after another{load}): a run's number (the median of its processes' fastest blocks, "
        f"what `history check` judges) was {level_s * 1e3:.3f} ms at the median; over that "
        f"median, runs ranged {min(noise.ratios):.3f} to {max(noise.ratios):.3f}, the middle "
        f"half {low:.3f} to {high:.3f}, and 95% of runs lay within a factor {noise.p95:.3f} of "
        f"it (log sd {noise.log_sd:.1%}; lag-1 autocorrelation of consecutive runs "
        f"{noise.lag1:+.2f}).",
    ]


def goal_met(ours: RuleResult) -> bool:
    return (ours.detected >= GOAL_DETECTED and ours.false_alarms_per_100 <= GOAL_FALSE_ALARMS
            and ours.blame >= GOAL_BLAME)


def goal_line(ours: RuleResult) -> str:
    met = goal_met(ours)
    return (f"**Goal** (issue 24 §2): at least {GOAL_DETECTED:.0%} detected within {WINDOW} "
            f"commits of the fifth step, at most {GOAL_FALSE_ALARMS:g}% false alarms per series "
            f"per 100 commits, the blamed range within ±{BLAME_TOLERANCE} commits of a true step. "
            f"`history check`: {percent(ours.detected)} detected, "
            f"{ours.false_alarms_per_100:.2f}% false alarms, blame {percent(ours.blame)}: "
            f"**{'met' if met else 'not met'}**.")


def meaning(noise: MeasuredNoise, results: Sequence[RuleResult]) -> str:
    """What the table says, in numbers taken from it."""
    ours, drift = results[0], math.log((1 + STEP) ** STEPS)
    variants = [r for r in results[1:] if r.name.startswith("seq-harness")]
    others = [r for r in results if not r.name.startswith("seq-harness")]
    quiet = [r for r in others if r.false_alarms_per_100 <= GOAL_FALSE_ALARMS]
    loud = [r for r in others if r.false_alarms_per_100 > GOAL_FALSE_ALARMS]
    best_quiet = max(quiet, key=lambda r: r.detected, default=None)
    parts = [
        f"The whole drift is {(1 + STEP) ** STEPS - 1:.1%}, {drift / noise.log_sd:.2f} times "
        f"one run's noise (log sd {noise.log_sd:.1%}), and each 1% step "
        f"{math.log(1 + STEP) / noise.log_sd:.2f} times it."]
    if best_quiet is not None:
        parts.append(f"Of the anchors that stay within {GOAL_FALSE_ALARMS:g}% false alarms, "
                     f"the best ({best_quiet.name}) detects {percent(best_quiet.detected)}.")
    if loud:
        parts.append("The others' detections come with false alarms ("
                     + "; ".join(f"{r.name}: {r.false_alarms_per_100:.0f}% per 100 commits"
                                 for r in loud) + ").")
    parts.append(f"`history check` detects {percent(ours.detected)} with "
                 f"{ours.false_alarms_per_100:.2f}% false alarms"
                 + "".join(f"; {r.name.removeprefix('seq-harness history check, ')}: "
                           f"{percent(r.detected)} with {r.false_alarms_per_100:.2f}%"
                           for r in variants) + ".")
    return " ".join(parts)


def quieter_meaning(quieter: Sequence[tuple[float, Sequence[RuleResult]]]) -> str:
    """Where the goal comes within reach, and what the drift rule does there."""
    parts = []
    for sd, found in quieter:
        ours = found[0]
        alone = next((r for r in found if r.name.endswith("latest change only")), None)
        parts.append(f"at a log sd of {sd:.1%} it detects {percent(ours.detected)} "
                     f"({ours.false_alarms_per_100:.2f}% false alarms, blame "
                     f"{percent(ours.blame)})"
                     + (f", the latest change alone {percent(alone.detected)}" if alone else ""))
    met = [sd for sd, found in quieter if goal_met(found[0])]
    reach = (f"The goal is met at a log sd of {', '.join(f'{sd:.1%}' for sd in met)}."
             if met else "The goal is met at none of them.")
    return ("On this machine's shape of noise made quieter, `history check` with its defaults: "
            + "; ".join(parts) + ". " + reach)


def quieter_lines(quieter: Sequence[tuple[float, Sequence[RuleResult]]],
                  histories: int) -> list[str]:
    rows = [f"| {sd:.1%} | {r.name} | {percent(r.detected)} | "
            + ("—" if math.isnan(r.median_delay) else f"{r.median_delay:g}")
            + f" | {r.false_alarms_per_100:.2f}% | {percent(r.blame)} |"
            for sd, found in quieter for r in found]
    return ["**The same noise, quieter**: the measured run ratios with their spread shrunk (in "
            "log space) to a log sd of " + ", ".join(f"{sd:.1%}" for sd, _ in quieter)
            + f" — this machine's shape of noise on a quieter runner; {histories} stepped and "
            f"{histories} flat histories each (seed 2).", "",
            "| log sd | rule | detected | median commits to detection | false alarms per 100 "
            "commits | blame within ±2 |",
            "|---|---|---|---|---|---|", *rows]


def drift_document(results: Sequence[RuleResult], noise: MeasuredNoise, *, level_s: float,
                   request: SimulationRequest, context: str, load: str,
                   tuning: Tuning | None = None,
                   quieter: Sequence[tuple[float, Sequence[RuleResult]]] = (),
                   quieter_histories: int = 0) -> str:
    """calibration-drift.md (results[0] is ``history check``'s)."""
    resampled = ("independent draws (with replacement)" if request.block == 1 else
                 f"blocks of {request.block} consecutive runs (with replacement)")
    lines = [
        "# Drift calibration of `history check`", "", context, "",
        *noise_lines(noise, level_s=level_s, load=load), "",
        f"**Histories**: {request.histories} stepped and {request.histories} flat, of "
        f"{LENGTHS[0]}-{LENGTHS[1]} commits each, every commit's number a measured run ratio "
        f"drawn as {resampled} (seed {request.seed}). A stepped history gets {STEPS} "
        f"+{STEP:.0%} steps, {GAPS[0]} to {GAPS[1]} commits apart (uniformly), the first at a "
        f"random commit with room for the rest and {WINDOW} commits after them. Every rule runs "
        f"online, after each commit on the history so far, as CI would; the first {WARMUP} "
        "commits are the series' start and judged by none.", "",
        f"| rule | detected within {WINDOW} commits of the fifth step | median commits to "
        f"detection | false alarms per series per 100 commits | blame within "
        f"±{BLAME_TOLERANCE} | any alarm from the first step on |",
        "|---|---|---|---|---|---|",
        *[result_row(r) for r in results], "",
        f"*Detected*: the rule alarms at a commit from the fifth step to {WINDOW} after it; for "
        f"`history check`, which reports the step with a 95% interval, that interval must also "
        f"hold the cumulative +{(1 + STEP) ** STEPS - 1:.1%} (it reports the drift, not one of "
        f"its pieces); the anchors report no interval, and any alarm counts for them. "
        f"*False alarms*: on the flat histories, alarm onsets (a commit that alarms after one "
        f"that did not) per series per 100 commits, in percent. *Blame*: of the detections, "
        f"the share whose first bad commit is within ±{BLAME_TOLERANCE} of a true step. "
        f"*Any alarm*: the share of stepped histories with an alarm anywhere from the first "
        f"step to {WINDOW} commits after the fifth.", "",
        "The anchors' rules, as implemented here (harness.history.drift_rules, "
        "harness.history.drift_asv): github-action-benchmark compares each result with the "
        "previous commit's and alerts beyond `alert-threshold` (its default 200%, and 105%); "
        "CodSpeed, 10% against the base, here the previous commit; Conbench's lookback z-score, "
        "the result against the mean and standard deviation of up to the previous 100 commits' "
        "results, z >= 5 slower, given at least two; asv, its L1 step fit with gamma chosen by "
        "its information criterion and its regressions rule at its default threshold of 5% "
        "(simplified: the step fit solved exactly over a grid of gamma, without asv's AR(1) "
        "noise term and per-point weights).", "",
        *([*tuning.lines(), ""] if tuning is not None else []),
        goal_line(results[0]), "",
        meaning(noise, results),
    ]
    if quieter:
        lines += ["", *quieter_lines(quieter, quieter_histories), "",
                  quieter_meaning(quieter)]
    return "\n".join(lines) + "\n"
