"""What one benchmark run measures (a Plan), and the sides of an interleaved measurement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.core.case import Case
from harness.core.shard import Shard
from harness.core.spec import ImplSpec
from harness.latency.grids import LatencyGrid
from harness.latency.peak import sweep
from harness.latency.timing import Task

AUTOGRAD_PHASES = ("forward", "forward_backward")  # phases that record a graph


@dataclass(frozen=True)
class Plan:
    """Everything one benchmark run measures.

    first_call: also time each implementation's first call on each shape in a fresh process
        (harness.latency.first_call); ``first_call_shapes``: on the grid's first N shapes only.
    """

    specs: tuple[ImplSpec, ...]
    grid: LatencyGrid
    phases: tuple[str, ...]
    workers: int
    min_run_time: float
    threads: int
    device: str = "cpu"
    cudnn_benchmark: tuple[bool, ...] = (True,)
    tf32: str = "off"  # harness.core.precision
    memory: bool = True
    first_call: bool = False
    first_call_shapes: int | None = None
    shard: Shard | None = None  # only the timings of this shard (harness.core.shard)
    peak: bool = True  # each worker process also times the matmul-peak sweep

    def mine(self, spec: ImplSpec, case: Case, phase: str) -> bool:
        return self.shard is None or self.shard.holds(spec.name, case.id, phase)

    def tasks(self) -> list[tuple[ImplSpec, Task]]:
        out = []
        for case in self.grid.cases:
            case = case.with_(device=self.device)
            for spec in self.specs:
                if not self.grid.covers(spec) or spec.why_not(case) is not None:
                    continue
                for phase in self.phases:
                    if phase in AUTOGRAD_PHASES and not spec.capabilities.autograd:
                        continue
                    if not self.mine(spec, case, phase):
                        continue
                    flags = self.cudnn_benchmark if self.device == "cuda" else (None,)
                    out += [(spec, Task(spec.name, case, phase, flag)) for flag in flags]
        return out

    def unsupported(self) -> list[tuple[ImplSpec, Task, str]]:
        """Timings the plan names that an implementation declares it cannot do, with why: an
        unavailable entry (every phase), or an inference-only one (forward, forward_backward).
        They are recorded as *not supported*; cases outside other capabilities are not timed."""
        out = []
        for case in self.shapes():
            for spec in self.specs:
                if not self.grid.covers(spec):
                    continue
                why = spec.unavailable()
                for phase in self.phases:
                    reason = f"not supported: {why}" if why else None
                    if reason is None and phase in AUTOGRAD_PHASES and (
                            not spec.capabilities.autograd) and spec.why_not(case) is None:
                        reason = ("not supported: autograd (inference only: the "
                                  f"implementation declares autograd False; {phase} records "
                                  "a graph)")
                    if reason is not None and self.mine(spec, case, phase):
                        out.append((spec, Task(spec.name, case, phase), reason))
        return out

    def first_calls(self) -> list[tuple[ImplSpec, Case]]:
        """(implementation, shape) pairs with a timing, in plan order: one first call each."""
        if not self.first_call:
            return []
        shapes = self.shapes()[:self.first_call_shapes]
        pairs: dict[tuple[str, Case], tuple[ImplSpec, Case]] = {}
        # every phase's tasks (a shard may hold another phase of the pair), one shard's pairs
        for spec, task in replace(self, shard=None).tasks():
            if task.case in shapes and self.mine(spec, task.case, "first_call"):
                pairs.setdefault((spec.name, task.case), (spec, task.case))
        return list(pairs.values())

    def jobs(self) -> int:
        """How many records the plan makes: not-supported timings, first calls, and in each
        worker process the peak sweep and every task."""
        per_worker = len(sweep(self.device)) * self.peak + len(self.tasks())
        return len(self.unsupported()) + len(self.first_calls()) + self.workers * per_worker

    def shapes(self) -> list[Case]:
        return [c.with_(device=self.device) for c in self.grid.cases]


def rotated(items: Sequence, k: int) -> list:
    """The k-th rotation, reversed on odd k: every worker sees a different order."""
    k = k % len(items) if items else 0
    order = list(items[k:]) + list(items[:k])
    return order[::-1] if k % 2 else order


@dataclass(frozen=True)
class Side:
    """One side of an interleaved measurement: what it times, where its records go, and the
    environment and directory of its worker processes (e.g. another commit's worktree: its
    PYTHONPATH, and the directory there that corresponds to the current one, since ``python -m``
    imports from its working directory first)."""

    plan: Plan
    out: Path
    run_id: str
    env: dict[str, str] | None = None
    peak: bool = True
    slowdown: float = 0.0
    cwd: Path | None = None
