"""How ``seq-harness bisect`` judges one commit: timed with the gate's statistics, or a check run.

The code under test at a commit is the repository's worktree of that commit, first on the
PYTHONPATH of the processes that run it (as ``gate --base-ref`` does). Timing workers are started
from an empty directory: ``python -m`` puts the current directory before PYTHONPATH, so a worker
started in the user's checkout would import the checkout's version of the package, not the
commit's.

A timing step times three sides interleaved in fresh processes (the last good commit, the
midpoint, the first bad commit) and asks the gate two questions: is the midpoint slower than the
good commit (a regression verdict: Mann-Whitney U *and* the minimum effect), and is it faster
than the bad one (an improvement verdict, the same test)? It asks them as the sequential gate
does (harness.gate.sequential): look by look, adding fresh processes to every side, each
question at alpha, until every comparison is decided (a regression or improvement, or provably
less than the minimum effect), the most processes or the step's budget. Exactly one yes
decides; none or both is undecided, said with the numbers. Without a schedule in the request,
one round of processes is judged as ``compare`` does (Holm's correction).

A check step runs ``seq-harness run --suite SUITE -k CHECK`` in the commit's worktree and reads
its records: a failed case makes the commit bad, all cases passed make it good, anything else
(the implementation does not import there, nothing ran) is undecided.
"""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.conformance.suites import suites
from harness.gate.bisect import BAD, GOOD, UNDECIDED, Evidence, Step
from harness.gate.compare import pair, per_process
from harness.gate.run import GateRequest
from harness.gate.sequential import HELD, Decided, Progress, look
from harness.gate.stats import IMPROVEMENT, REGRESSION, Verdict, judge
from harness.gate.stats import UNDECIDED as UNDECIDED_TIMING
from harness.gate.worktree import worktree_at, worktree_env
from harness.latency.plan import Side
from harness.latency.run import run_sides
from harness.records import FAILED, PASSED, RunInfo, load_run, prepare_results_dir, write_run_info

WORDS = {REGRESSION: "slower", IMPROVEMENT: "faster"}  # other verdicts are printed as they are


def step_dir(out: Path, label: str) -> Path:
    return out / label.replace(" ", "-")


@dataclass(frozen=True)
class TimingJudge:
    """Steps timed with the gate: ``request`` says what (its base and head are the same
    implementation, its ref unused), ``min_effect`` the smallest slowdown that counts; each
    step's records go to out/STEP/{good,mid,bad} with the commit in their run.json."""

    repo: Path
    request: GateRequest
    min_effect: float
    out: Path
    info: RunInfo
    progress: Callable[[str], None] | None = None
    checks_endpoints = False

    @contextlib.contextmanager
    def opened(self, label: str, commits: dict[str, str]) -> Iterator[list[Side]]:
        """Each named commit's side (its worktree, out/STEP/NAME with the commit in run.json),
        for as long as the step measures, with the current directory an empty one."""
        where = step_dir(self.out, label)
        with contextlib.ExitStack() as stack:
            sides = []
            for name, sha in commits.items():
                tree = stack.enter_context(worktree_at(self.repo, sha,
                                                       option=f"{label}: {name} {sha[:10]}"))
                run_id = f"{self.info.run_id}-{label.replace(' ', '')}-{name}"
                prepare_results_dir(where / name, overwrite=True)
                write_run_info(where / name, replace(self.info, run_id=run_id, git_commit=sha,
                                                     git_modified=False))
                sides.append(Side(self.request.plan(self.request.head), where / name, run_id,
                                  env=worktree_env(tree), peak=False))
            stack.enter_context(contextlib.chdir(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="seq-harness-bisect-"))))
            yield sides

    def timed(self, label: str, commits: dict[str, str]) -> dict[str, dict]:
        """What each named commit's side has recorded so far: name -> per-process statistics."""
        return {name: per_process(load_run(step_dir(self.out, label) / name)[1])
                for name in commits}

    def measure(self, label: str, commits: dict[str, str]) -> dict[str, dict]:
        """Time each named commit's side, interleaved, in one round of the request's workers;
        name -> per-process statistics."""
        with self.opened(label, commits) as sides:
            run_sides(sides, workers=self.request.workers, progress=self.progress)
        return self.timed(label, commits)

    def answers(self, label: str, commits: dict[str, str], questions: Sequence[tuple[str, str]]
                ) -> tuple[dict[str, dict], list[list[Verdict]]]:
        """Each side's statistics and, per question (base side, head side), its verdicts: with
        the request's schedule, look by look as the sequential gate decides (each question at
        alpha, harness.gate.sequential), until every timing of both is decided, the most
        processes or the budget; without one, one round judged as ``compare`` does."""
        schedule = self.request.schedule
        if schedule is None:
            timed = self.measure(label, commits)
            return timed, [self.verdicts(timed[b], timed[h]) for b, h in questions]
        budget = self.request.budget_s
        deadline = None if budget is None else time.monotonic() + budget
        states: list[Progress | None] = [None] * len(questions)
        with self.opened(label, commits) as sides:
            measured = 0
            for size in schedule.looks:
                if measured and (all(s.done for s in states) or (
                        deadline is not None and time.monotonic() >= deadline)):
                    break
                run_sides(sides, workers=range(measured, size), progress=self.progress,
                          deadline=deadline if measured else None)
                measured, timed = size, self.timed(label, commits)
                if self.untimed(label, timed) is not None:
                    return timed, []
                states = [look(state, pair(timed[b], timed[h])[0], schedule=schedule,
                               alpha=self.request.alpha, min_effect=self.min_effect)
                          for state, (b, h) in zip(states, questions)]
                if self.progress is not None:
                    decided = sum(len(s.decisions) - len(s.undecided) for s in states)
                    self.progress(f"look {states[0].looks}, {states[0].per_side} processes per "
                                  f"commit: {decided} of {sum(len(s.decisions) for s in states)} "
                                  "comparisons decided")
        return timed, [list(s.decisions) for s in states]

    def verdicts(self, base: dict, head: dict) -> list[Verdict]:
        comparisons, _ = pair(base, head)
        if not comparisons:
            return []
        return judge(comparisons, alpha=self.request.alpha, min_effect=self.min_effect)

    def evidence(self, against: str, verdicts: Sequence[Verdict], *, mine: bool = True
                 ) -> list[Evidence]:
        """Evidence lines from the step's commit's side: ``mine`` when it was the head of the
        comparisons (against good), else their base (against bad: bad over mid, so a
        regression there is this commit faster, and the ratio is turned over). The p is the
        one that decided: of the regression test, or of "not by the minimum effect or more"."""
        found = []
        for v in verdicts:
            ratio, (low, high) = v.comparison.ratio, v.interval
            word = WORDS.get(v.verdict, v.verdict)
            if not mine:
                ratio, low, high = 1.0 / ratio, 1.0 / high, 1.0 / low
                word = {REGRESSION: WORDS[IMPROVEMENT], IMPROVEMENT: WORDS[REGRESSION]}.get(
                    v.verdict, word)
            p = v.p_slower_holm
            if isinstance(v, Decided) and v.verdict == HELD:  # a sequential look proved it
                word = f"not {'slower' if mine else 'faster'} by {self.min_effect:.0%} or more"
                p = v.p_held
            found.append(Evidence(against, word, f"{v.comparison.key[2]} {v.comparison.key[1]}",
                                  ratio, (low, high), p))
        return found

    def untimed(self, label: str, timed: dict[str, dict]) -> str | None:
        """Why a side has no timing (its first error), or None when every side has them."""
        for name, statistics in timed.items():
            if not statistics:
                _, records = load_run(step_dir(self.out, label) / name)
                errors = [r.message for r in records if r.message]
                return (f"{name} did not time at this commit"
                        + (f" ({errors[0].splitlines()[0]})" if errors else ""))
        return None

    def endpoints(self, good: str, bad: str, *, label: str) -> Step:
        timed, answered = self.answers(label, {"good": good, "bad": bad}, [("good", "bad")])
        if (why := self.untimed(label, timed)) is not None:
            return Step(label, bad, UNDECIDED, why)
        [verdicts] = answered
        evidence = tuple(self.evidence(f"good {good[:10]}", verdicts))
        if any(v.verdict == REGRESSION for v in verdicts):
            return Step(label, bad, BAD, f"slower than good by more than {self.min_effect:.0%}",
                        evidence)
        if any(v.verdict == UNDECIDED_TIMING for v in verdicts):
            return Step(label, bad, UNDECIDED, f"bad is neither slower than good by more than "
                        f"{self.min_effect:.0%} nor provably less: more processes "
                        "(--max-workers, --budget) may decide", evidence)
        return Step(label, bad, UNDECIDED, f"bad is not slower than good by more than "
                    f"{self.min_effect:.0%}: nothing to bisect", evidence)

    def step(self, good: str, mid: str, bad: str, *, label: str) -> Step:
        timed, answered = self.answers(label, {"good": good, "mid": mid, "bad": bad},
                                       [("good", "mid"), ("mid", "bad")])
        if (why := self.untimed(label, timed)) is not None:
            return Step(label, mid, UNDECIDED, why)
        against_good, against_bad = answered
        evidence = tuple(self.evidence(f"good {good[:10]}", against_good)
                         + self.evidence(f"bad {bad[:10]}", against_bad, mine=False))
        slower = any(v.verdict == REGRESSION for v in against_good)
        faster = any(v.verdict == REGRESSION for v in against_bad)  # bad slower than mid
        effect = f"{self.min_effect:.0%}"
        if slower and not faster:
            return Step(label, mid, BAD, f"slower than good by more than {effect}, not faster "
                        "than bad", evidence)
        if faster and not slower:
            return Step(label, mid, GOOD, f"faster than bad by more than {effect}, not slower "
                        "than good", evidence)
        if slower:
            why = (f"slower than good and faster than bad, both by more than {effect}: more "
                   "than one change in the range")
        else:
            why = (f"neither slower than good nor faster than bad by more than {effect} with "
                   "significance: more processes (--workers, --max-workers, --budget) or a "
                   "larger --min-effect may decide")
        return Step(label, mid, UNDECIDED, why, evidence)


def parse_check(text: str) -> tuple[str, str]:
    """'shapes::values_match_reference' -> ('shapes', 'values_match_reference'); ValueError
    naming the valid suites, or the suite's checks, for anything else."""
    suite, sep, check = text.partition("::")
    by_name = {s.name: s for s in suites()}
    if not sep or not suite or not check:
        raise ValueError(f"--check {text!r} is malformed; expected SUITE::CHECK, e.g. "
                         "shapes::values_match_reference")
    if suite not in by_name:
        raise ValueError(f"--check {text!r}: no suite {suite!r}; valid: {', '.join(by_name)}")
    tree = ast.parse(by_name[suite].path.read_text())
    checks = [node.name.removeprefix("test_") for node in tree.body
              if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    if check not in checks:
        raise ValueError(f"--check {text!r}: suite {suite} has no check {check!r}; valid: "
                         f"{', '.join(checks)}")
    return suite, check


@dataclass(frozen=True)
class CheckJudge:
    """Steps that run one check: ``impl_args`` name the implementation as ``seq-harness run``
    takes it (--impl NAME, or --impl-class MODULE:CLASS [--family FAMILY]); each run's records go
    to out/STEP/COMMIT."""

    repo: Path
    impl_args: tuple[str, ...]
    suite: str
    check: str
    threads: int
    out: Path
    timeout_s: float = 900.0
    checks_endpoints = True

    def run(self, sha: str, label: str) -> tuple[str, Evidence]:
        """(GOOD, BAD or UNDECIDED, the evidence) of the check at commit ``sha``."""
        out = step_dir(self.out, label) / sha[:10]
        against = f"{self.suite}::{self.check} at {sha[:10]}"
        with worktree_at(self.repo, sha, option=f"{label}: {sha[:10]}") as tree:
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "harness", "run", *self.impl_args,
                     "--suite", self.suite, "-k", self.check, "--workers", "0",
                     "--confirm-alone", "0", "--no-diagnosis", "--threads", str(self.threads),
                     "--out", str(out), "--overwrite"],
                    cwd=tree, env=worktree_env(tree), capture_output=True, text=True,
                    timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                return UNDECIDED, Evidence(against, f"no result in {self.timeout_s:g} s")
        records = [r for r in (load_run(out)[1] if (out / "run.json").is_file() else [])
                   if r.suite == self.suite and r.check == self.check]
        failed = [r for r in records if r.outcome == FAILED]
        passed = [r for r in records if r.outcome == PASSED]
        if failed:
            first = failed[0]
            message = (first.message or "").splitlines()[0] if first.message else ""
            return BAD, Evidence(against, f"failed in {len(failed)} of {len(records)} cases",
                                 f"{first.case_id}: {message}".rstrip(": "))
        if passed:
            return GOOD, Evidence(against, f"passed in {len(passed)} of {len(records)} cases")
        said = (done.stderr.strip().splitlines() or [""])[-1]
        return UNDECIDED, Evidence(against, f"no case ran (exit {done.returncode})", said)

    def endpoints(self, good: str, bad: str, *, label: str) -> Step:
        at_good, good_evidence = self.run(good, label)
        at_bad, bad_evidence = self.run(bad, label)
        evidence = (good_evidence, bad_evidence)
        if at_good == GOOD and at_bad == BAD:
            return Step(label, bad, BAD, "the check passes at good and fails at bad", evidence)
        if at_good != GOOD:
            return Step(label, bad, UNDECIDED, "the check does not pass at good", evidence)
        return Step(label, bad, UNDECIDED, "the check does not fail at bad", evidence)

    def step(self, good: str, mid: str, bad: str, *, label: str) -> Step:
        verdict, evidence = self.run(mid, label)
        why = {GOOD: "the check passes", BAD: "the check fails",
               UNDECIDED: "the check did not run"}[verdict]
        return Step(label, mid, verdict, why, (evidence,))
