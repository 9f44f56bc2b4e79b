"""The gate's own measurement: base and head timed in the same job, each in fresh worker
processes, interleaved (A B A B ...), written as two result sets that ``compare`` judges.

The sample size is checked before anything is measured: a gate whose processes per side cannot
reach the significance level over its comparisons would always say "no change", so it is
refused with the minimum that can.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from harness.core.spec import ImplSpec
from harness.gate.stats import attainable_p, undetectable_message
from harness.gate.worktree import checkout, worktree_cwd, worktree_env
from harness.latency.grids import LatencyGrid
from harness.latency.plan import Plan, Side
from harness.latency.run import run_sides
from harness.records import RunInfo, prepare_results_dir, write_run_info


@dataclass(frozen=True)
class GateRequest:
    """base, head: the implementations; ref: the git ref base is taken at (then base is head's
    implementation as it was there); the rest as the bench options of the same names."""

    base: ImplSpec
    head: ImplSpec
    ref: str | None
    grid: LatencyGrid
    phases: tuple[str, ...]
    workers: int
    min_run_time: float
    threads: int
    alpha: float

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
        if attainable_p(self.workers, self.workers, comparisons) >= self.alpha:
            raise ValueError(f"--workers {self.workers}: " + undetectable_message(
                self.workers, self.workers, comparisons, self.alpha))


def measure_sides(request: GateRequest, out: Path, info: RunInfo, *,
                  progress: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """Time both sides into out/base and out/head; ValueError for a ref that is no commit."""
    request.validate()
    for side in ("base", "head"):
        prepare_results_dir(out / side, overwrite=True)
    with contextlib.ExitStack() as stack:
        env, cwd, base_commit = None, None, info.git_commit
        if request.ref:
            worktree, base_commit = stack.enter_context(checkout(request.ref))
            env, cwd = worktree_env(worktree), worktree_cwd(worktree)
        write_run_info(out / "base", replace(info, run_id=f"{info.run_id}-base",
                                             git_commit=base_commit))
        write_run_info(out / "head", replace(info, run_id=f"{info.run_id}-head"))
        run_sides(
            [Side(request.plan(request.base), out / "base", f"{info.run_id}-base", env=env,
                  peak=False, cwd=cwd),
             Side(request.plan(request.head), out / "head", f"{info.run_id}-head", peak=False)],
            workers=request.workers, progress=progress)
    return out / "base", out / "head"
