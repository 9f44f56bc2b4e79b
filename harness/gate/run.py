"""The gate's own measurement: base and head timed in the same job, each in fresh worker
processes, interleaved (A B A B ...), written as two result sets.

With a schedule (``seq-harness gate``) it measures in looks: after each round of processes the
timings are judged sequentially (harness.gate.sequential) and the next round starts only while
some timing is undecided, processes and budget allow. The sample size is checked before
anything is measured: a first look that could not decide anything is refused with the minimum
that can (without a schedule, as bisect uses it: processes per side that cannot reach the
significance level over the comparisons).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from harness.core.spec import ImplSpec
from harness.gate.compare import pair, per_process
from harness.gate.sequential import Progress, Schedule, look
from harness.gate.stats import attainable_p, undetectable_message
from harness.gate.worktree import checkout, worktree_cwd, worktree_env
from harness.latency.grids import LatencyGrid
from harness.latency.plan import Plan, Side
from harness.latency.run import run_sides
from harness.records import RunInfo, iter_records, prepare_results_dir, write_run_info


class NothingTimed(Exception):
    """No timing was measured on both sides (every one failed): nothing to judge."""


@dataclass(frozen=True)
class GateRequest:
    """base, head: the implementations; ref: the git ref base is taken at (then base is head's
    implementation as it was there); schedule: the looks of a sequential gate (None: one
    fixed round of ``workers`` processes per side); budget_s: seconds after which no look
    but the first starts (a look running then stops at its next process); the rest as the
    bench and verdict options of the same names."""

    base: ImplSpec
    head: ImplSpec
    ref: str | None
    grid: LatencyGrid
    phases: tuple[str, ...]
    workers: int
    min_run_time: float
    threads: int
    alpha: float
    schedule: Schedule | None = None
    budget_s: float | None = None
    min_effect: float = 0.03

    def plan(self, spec: ImplSpec) -> Plan:
        return Plan(specs=(spec,), grid=self.grid, phases=self.phases or self.grid.phases,
                    workers=self.workers, min_run_time=self.min_run_time, threads=self.threads,
                    memory=False)

    @property
    def title(self) -> str:
        at = f" at {self.ref}" if self.ref else ""
        return f"seq-harness gate: {self.base.name}{at} → {self.head.name}"

    def validate(self) -> None:
        """ValueError when the sides share no shape, or the processes per side cannot detect
        anything over the comparisons."""
        if not self.plan(self.head).tasks() or not self.plan(self.base).tasks():
            raise ValueError(f"grid {self.grid.name!r} has no shape both implementations "
                             "support")
        comparisons = len(self.plan(self.head).tasks())
        if self.schedule is not None:
            self.schedule.validate(alpha=self.alpha, timings=comparisons)
        elif attainable_p(self.workers, self.workers, comparisons) >= self.alpha:
            raise ValueError(f"--workers {self.workers}: " + undetectable_message(
                self.workers, self.workers, comparisons, self.alpha))


def measure_sides(request: GateRequest, out: Path, info: RunInfo, *,
                  progress: Callable[[str], None] | None = None
                  ) -> tuple[Path, Path, Progress | None]:
    """Time both sides into out/base and out/head — look by look with a schedule — and return
    the directories and, with a schedule, where the sequential verdicts stand. ValueError for
    a ref that is no commit; NothingTimed when no timing succeeded on both sides."""
    request.validate()
    for side in ("base", "head"):
        prepare_results_dir(out / side, overwrite=True)
    started = time.monotonic()
    deadline = None if request.budget_s is None else started + request.budget_s
    with contextlib.ExitStack() as stack:
        env, cwd, base_commit = None, None, info.git_commit
        if request.ref:
            worktree, base_commit = stack.enter_context(checkout(request.ref))
            env, cwd = worktree_env(worktree), worktree_cwd(worktree)
        # a ref's side runs from a clean worktree of it: its commit says what ran
        write_run_info(out / "base", replace(
            info, run_id=f"{info.run_id}-base", git_commit=base_commit,
            git_modified=False if request.ref else info.git_modified))
        write_run_info(out / "head", replace(info, run_id=f"{info.run_id}-head"))
        sides = [Side(request.plan(request.base), out / "base", f"{info.run_id}-base",
                      env=env, peak=False, cwd=cwd),
                 Side(request.plan(request.head), out / "head", f"{info.run_id}-head",
                      peak=False)]
        if request.schedule is None:
            run_sides(sides, workers=request.workers, progress=progress)
            return out / "base", out / "head", None
        state, measured = None, 0
        for size in request.schedule.looks:
            if state is not None and (state.done or (
                    deadline is not None and time.monotonic() >= deadline)):
                break
            # The first look always completes; a later one stops at the budget.
            run_sides(sides, workers=range(measured, size), progress=progress,
                      deadline=deadline if state is not None else None)
            measured = size
            state = judged(out, state, request)
            if progress is not None:
                progress(state.line())
    return out / "base", out / "head", state


def judged(out: Path, state: Progress | None, request: GateRequest) -> Progress:
    """The next look over everything both sides have recorded so far."""
    comparisons, _ = pair(per_process(iter_records(out / "base")),
                          per_process(iter_records(out / "head")))
    if not comparisons:
        raise NothingTimed(f"nothing to compare in {out}: no timing was measured on both sides "
                         "(see the records for the errors)")
    return look(state, comparisons, schedule=request.schedule, alpha=request.alpha,
                min_effect=request.min_effect)
