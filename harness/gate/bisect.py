"""The search of ``seq-harness bisect``: which commit of a first-parent line first went bad.

A binary search over the commits after the good one up to the bad one, as ``git bisect`` does,
with one difference that matters for timings: a step is judged by a *judge* that may answer
"undecided" (the gate could say neither "slower by at least the minimum effect" nor "not
slower"; the implementation did not run at that commit). The search does not guess then: it
stops and reports the range it had narrowed to. Judges live in harness.gate.bisect_steps (timed
with the gate's statistics, or a conformance check run); this module only searches, so its logic
is tested with a fake judge in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harness.gate.commits import CommitRange

GOOD, BAD, UNDECIDED = "good", "bad", "undecided"


@dataclass(frozen=True)
class Evidence:
    """One line of a step's evidence: what the commit was compared with (``against``: e.g.
    "good 1a2b3c4d5e" or "check"), the verdict of that comparison, and for a timing its ratio
    (this commit's median over the other's), the rank test's 95% interval and Holm-adjusted
    p-value."""

    against: str
    verdict: str
    what: str = ""  # the timing (implementation phase shape) or the check's failing case
    ratio: float | None = None
    interval: tuple[float, float] | None = None
    p: float | None = None

    def line(self) -> str:
        if self.ratio is None:
            return f"{self.against}: {self.verdict}{f' ({self.what})' if self.what else ''}"
        low, high = self.interval or (math.nan, math.nan)
        return (f"against {self.against}: ratio {self.ratio:.3f} [{low:.3f}, {high:.3f}] "
                f"p {self.p:.3g} {self.verdict}{f' ({self.what})' if self.what else ''}")


@dataclass(frozen=True)
class Step:
    """One judged commit. label: "endpoints" or "step N"; verdict: GOOD, BAD or UNDECIDED;
    why: one phrase saying what decided it (or why nothing could); evidence: the comparisons."""

    label: str
    commit: str
    verdict: str
    why: str
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in (GOOD, BAD, UNDECIDED):
            raise ValueError(f"step verdict {self.verdict!r} is invalid; valid: {GOOD}, {BAD}, "
                             f"{UNDECIDED}")


class Judge(Protocol):
    """What a bisection asks at each commit. ``checks_endpoints``: the search first asks
    ``endpoints`` whether good is good and bad is bad (a check run at both); otherwise a step
    decided either way has itself shown the bad end bad, and ``endpoints`` is asked only when
    there is no step at all (good is bad's parent)."""

    checks_endpoints: bool

    def endpoints(self, good: str, bad: str, *, label: str) -> Step: ...

    def step(self, good: str, mid: str, bad: str, *, label: str) -> Step: ...


@dataclass(frozen=True)
class Bisection:
    """What a search found: the range it searched, its steps in order, and the narrowed range:
    ``last_good`` (the good commit itself, or a commit judged good) and ``suspects`` (the
    commits after it that may be the first bad one, oldest first; one when found); stopped:
    the search ended at a step that could not decide (or endpoints that are not good and bad)."""

    range: CommitRange
    steps: tuple[Step, ...]
    last_good: str
    suspects: tuple[str, ...]
    stopped: bool

    @property
    def found(self) -> bool:
        return len(self.suspects) == 1 and not self.stopped

    @property
    def first_bad(self) -> str | None:
        return self.suspects[0] if self.found else None


def steps_needed(count: int) -> int:
    """Steps a search of ``count`` commits (bad included) takes at most: ceil(log2(count))."""
    return math.ceil(math.log2(count)) if count > 1 else 0


def search(commits: CommitRange, judge: Judge,
           progress: Callable[[Step], None] | None = None) -> Bisection:
    """Binary search of ``commits``: each step judges the middle of the commits still suspected
    (against the last good and the first bad known); an undecided step ends the search."""
    line, steps = commits.commits, []
    low, high = -1, len(line) - 1  # line[low] (commits.good when -1) is good, line[high] bad

    def good_at(index: int) -> str:
        return commits.good if index < 0 else line[index]

    def done(*, stopped: bool = False) -> Bisection:
        return Bisection(commits, tuple(steps), good_at(low), line[low + 1:high + 1], stopped)

    def ask(step: Step) -> Step:
        steps.append(step)
        if progress is not None:
            progress(step)
        return step

    asks_endpoints = judge.checks_endpoints or len(line) == 1
    if asks_endpoints and ask(judge.endpoints(commits.good, commits.bad,
                                              label="endpoints")).verdict != BAD:
        return done(stopped=True)
    number = 0
    while high - low > 1:
        mid, number = (low + high) // 2, number + 1
        step = ask(judge.step(good_at(low), line[mid], line[high], label=f"step {number}"))
        if step.verdict == UNDECIDED:
            return done(stopped=True)
        low, high = (mid, high) if step.verdict == GOOD else (low, mid)
    return done()


def step_lines(step: Step) -> list[str]:
    """A step as printed: its commit, verdict and why, then its evidence indented."""
    return [f"{step.label}: {step.commit[:10]} {step.verdict}: {step.why}",
            *[f"    {e.line()}" for e in step.evidence]]


def result_lines(bisection: Bisection) -> list[str]:
    """The first bad commit, or the range the search narrowed to and why it stopped."""
    subjects = bisection.range.subjects
    if bisection.found:
        sha = bisection.first_bad
        return [f"first bad commit: {sha} {subjects.get(sha, '')}".rstrip(),
                f"last good commit: {bisection.last_good}"]
    last = bisection.steps[-1]  # the step the search stopped at
    why = f"{last.label} could not decide" if last.verdict == UNDECIDED else last.why
    return [f"no first bad commit: {why}; it is one of the {len(bisection.suspects)} commits "
            f"after {bisection.last_good[:10]} up to {bisection.suspects[-1][:10]}:",
            *[f"    {sha[:10]} {subjects.get(sha, '')}".rstrip() for sha in bisection.suspects]]
