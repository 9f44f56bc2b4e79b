"""What each scale of the main job times: its latency grids (a Timing each), the suites' scale
and the time budget. A module of its own so that the job's plan is read in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """One latency grid of a scale: its phases (empty: the grid's), worker processes, seconds
    per task per worker, the shapes that get a first call (0: none, None: all), and whether
    peak memory is measured (two more calls per task, one of them under the profiler)."""

    grid: str
    phases: tuple[str, ...] = ()
    workers: int = 2
    min_run_time: float = 0.3
    first_call_shapes: int | None = 0
    memory: bool = True
    job_timeout_s: float = 600.0  # one timing's limit; past it, a failed "timeout" record
    # The grid's own limit per timing, below job_timeout_s (None: none): a timing past it is
    # recorded skipped, "not measured", not failed (a grid whose slowest shapes the job
    # cannot afford; a hang elsewhere still fails).
    limit_s: float | None = None
    impls: tuple[str, ...] = ()  # only these registry entries (empty: the job's selection)

    @property
    def timeout_s(self) -> float:
        return self.job_timeout_s if self.limit_s is None else self.limit_s

    @property
    def over_limit(self) -> str | None:
        """Why a timing past the grid's own limit is not measured (None: no such limit)."""
        if self.limit_s is None:
            return None
        return (f"the {self.grid} grid's limit per timing in the job "
                f"(`seq-harness bench --grid {self.grid}` times it without one)")


SCALES = {
    # The quick scale fits the main job in 10 minutes on 2 cores: two processes per timing
    # (the verdict's intervals need both), no first calls, no memory.
    "ci": (Timing("standard", ("inference", "forward_backward"), min_run_time=0.1,
                  memory=False),
           Timing("varlen-small", min_run_time=0.05, memory=False),
           Timing("ops-small", min_run_time=0.05, memory=False)),
    # The full scale: three processes and memory at the standard shapes, the first call at
    # B=64; the other grids in two processes, memory where the profiler's cost stays small.
    "full": (Timing("standard", workers=3, min_run_time=0.3, first_call_shapes=1),
             Timing("varlen", min_run_time=0.1), Timing("deepbench", min_run_time=0.1),
             # A step-by-step entry (torch.compile's step) can take minutes per call at
             # T=16384: a minute's limit records it as not measured instead of stalling the job;
             # one process (the long grid is for the plots, not for intervals).
             Timing("long", workers=1, min_run_time=0.1, memory=False, limit_s=60.0),
             # The ops: the speed targets' shape in two processes. The op grid is a run of its
             # own (`seq-harness bench --grid ops`, docs/ops.md): its recurrent references
             # take minutes a call at T=16384, B=8, H=16, hours in all on two cores.
             Timing("ops-target", workers=2, min_run_time=0.3, memory=False)),
    # A lent GPU's job (--device cuda, about 8 minutes on one H100-class GPU): the suites at the
    # quick scale, then the standard grid over the entries a GPU user compares — torch's
    # modules (cuDNN), the fast layers eager and CUDA-graphed, and the compiled ones.
    "gpu": (Timing("standard", ("inference", "forward_backward"), min_run_time=0.2,
                   impls=("torch-rnn-tanh", "torch-rnn-relu", "torch-lstm", "torch-gru",
                          "fast-rnn", "fast-lstm", "fast-gru", "fast-lstm-cudagraph",
                          "fast-gru-cudagraph", "compiled-lstm", "compiled-gru")),),
}
SUITE_SCALE = {"ci": "ci", "full": "full", "gpu": "ci"}  # the suites' --scale of a job scale
# A scale's time budget in seconds (None: none). The quick scale's keeps the main job, with its
# minute and a half of setup (tox, a fresh environment), under 10 minutes on a 2-core machine.
BUDGET_S = {"ci": 480.0, "full": None, "gpu": None}
REPORT_S = 30.0  # what the budget keeps for the report (about 20 s for the whole registry here)
# What the budget keeps for the timings: no check starts later than this before the report's
# share (on a slow machine the checks alone can fill a budget; the rest are left out, resumable).
TIMINGS_FLOOR_S = 90.0
