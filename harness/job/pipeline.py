"""The main job, in three stages that each leave their records on disk as they go:

1. checks: every suite (``--scale ci`` or ``full``) over the registry, in worker processes,
   into OUT/checks (a results directory of its own);
2. timings: the latency grids of the scale, one after the other, into OUT/timings;
3. the report of both, verdict first, with the full latency tables beside it.

Ctrl-C (or a kill) keeps everything recorded so far; ``--resume OUT`` runs the job again with its
own options and measures only what is missing: checks already recorded are skipped, timings
already recorded are not repeated, and the report is rendered from all of it.

A time budget (``--budget``; the quick scale's fits the job in 10 minutes on a 2-core machine)
bounds the whole job on any machine: the checks start while the budget holds more than the
report's and the timings' shares (scales.TIMINGS_FLOOR_S), and the timings take what is left,
every grid's first process before any grid's second, so a slow machine loses intervals before
it loses figures. A check or timing the budget did not reach is recorded as skipped, saying so;
a resumed job (``--resume OUT --budget 0``: no limit) runs it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from harness.conformance.alone import describe
from harness.conformance.session import SuiteRun, run_suites
from harness.conformance.suites import suite_files
from harness.core.progress import Progress
from harness.core.shard import Shard
from harness.job.scales import REPORT_S, SCALES, SUITE_SCALE, TIMINGS_FLOOR_S, Timing
from harness.latency.grids import load_grid
from harness.latency.jobs import record_key
from harness.latency.plan import Plan, Side
from harness.latency.run import first_calls, left_out, not_supported, run_sides, skip_all
from harness.records import (
    JOB_FILE,
    RECORDS_FILE,
    RunInfo,
    iter_records,
    prepare_results_dir,
    read_run_info,
    write_run_info,
)
from harness.registry import choose
from harness.report import write_report

CHECKS, TIMINGS = "checks", "timings"


@dataclass(frozen=True)
class JobRequest:
    """What a job covers; saved as OUT/job.json so that --resume runs the same job."""

    out: str
    scale: str = "ci"
    impls: tuple[str, ...] = ()
    impl_classes: tuple[str, ...] = ()
    skipped_impls: tuple[str, ...] = ()  # the registry less these (--skip-impl)
    family: str | None = None
    suites: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    workers: int = 2
    threads: int = 1
    check_timeout: float = 120.0
    report: str | None = None
    progress_s: float = 30.0
    device: str = "cpu"
    tf32: str = "off"
    budget_s: float | None = None  # the whole job's seconds (None: no limit); see the docstring
    shard: str | None = None  # "K/N": this machine's share of the checks and timings
    argv: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"--scale {self.scale!r} is invalid; valid: {', '.join(SCALES)}")
        if self.shard is not None:
            Shard.parse(self.shard)
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"--budget {self.budget_s:g} is invalid; expected seconds > 0, "
                             "or 0 for no limit")

    @property
    def report_path(self) -> Path:
        return Path(self.report) if self.report else Path(self.out) / "README.md"

    def save(self) -> None:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        (Path(self.out) / JOB_FILE).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def saved(cls, out: str | Path) -> JobRequest:
        """The request of the job in ``out``; ValueError when there is none."""
        path = Path(out) / JOB_FILE
        if not path.is_file():
            raise ValueError(f"--resume {str(out)!r}: no {JOB_FILE} there (not a job's "
                             "directory)")
        data = json.loads(path.read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def plans(request: JobRequest, specs) -> list[tuple[Timing, Plan]]:
    made = []
    for timing in SCALES[request.scale]:
        grid = load_grid(timing.grid)
        chosen = tuple(s for s in specs if not timing.impls or s.name in timing.impls)
        made.append((timing, Plan(specs=chosen, grid=grid, phases=timing.phases or grid.phases,
                         workers=timing.workers, min_run_time=timing.min_run_time,
                         threads=request.threads, memory=timing.memory,
                         device=request.device, tf32=request.tf32,
                         first_call=timing.first_call_shapes != 0,
                         first_call_shapes=timing.first_call_shapes,
                         shard=Shard.parse(request.shard) if request.shard else None)))
    return [(t, p) for t, p in made if p.tasks() or p.unsupported()]


def start(directory: Path, argv: Sequence[str], *, resume: bool,
          resumed_by: Sequence[str] = ()) -> str:
    """A results directory ready for a stage: its run.json kept when resuming (with the resume,
    ``resumed_by``, added to it); the run id."""
    if resume and (directory / "run.json").is_file():
        info = read_run_info(directory)
        if resumed_by:
            write_run_info(directory, info.resumed(list(resumed_by)))
        return info.run_id
    prepare_results_dir(directory, overwrite=True)
    info = RunInfo.collect(argv=list(argv))
    write_run_info(directory, info)
    return info.run_id


def run_job(request: JobRequest, *, resume: bool = False, resumed_by: Sequence[str] = (),
            emit: Callable[[str], None] = print) -> int:
    """The job (see the module docstring); 0 when every check passed and every timing was
    measured, 1 otherwise."""
    began = time.monotonic()
    out = Path(request.out)
    chosen = choose(impls=request.impls, impl_classes=request.impl_classes,
                    family=request.family, skipped=request.skipped_impls)
    if not resume:
        prepare_results_dir(out, overwrite=True)
    out.mkdir(parents=True, exist_ok=True)
    request.save()
    checks, timings = out / CHECKS, out / TIMINGS
    budget = (f", a time budget of {request.budget_s:g} s" if request.budget_s else "")
    emit(f"seq-harness job: stage 1 of 3, every suite at --scale "
         f"{SUITE_SCALE[request.scale]} over {len(chosen.specs)} implementations on "
         f"{request.device}{budget}, records in {checks}")
    start(checks, ["seq-harness", *request.argv], resume=resume, resumed_by=resumed_by)
    if resume:
        forget_left_out(checks)
    stop_at = (time.time() + began + request.budget_s - REPORT_S - TIMINGS_FLOOR_S
               - time.monotonic()) if request.budget_s else None  # a wall-clock time
    outcome = run_suites(SuiteRun(
        files=tuple(suite_files(request.suites, request.skipped, every=True)), out=checks,
        skipped=request.skipped, all_suites=True, impls=request.impls,
        impl_classes=request.impl_classes, skipped_impls=request.skipped_impls,
        family=request.family,
        scale=SUITE_SCALE[request.scale], device=request.device, tf32=request.tf32,
        threads=request.threads, check_timeout=request.check_timeout,
        workers=request.workers, progress_s=request.progress_s, shard=request.shard,
        report=False, resume=resume and any(True for _ in iter_records(checks)),
        stop_at=stop_at))
    for line in describe(outcome.confirmed):  # failures run again alone
        emit(line)
    unchecked = sum(r.metrics.get("left_out") is True for r in outcome.records)
    if unchecked:
        emit(f"seq-harness job: the time budget left out {unchecked} of "
             f"{len(outcome.records)} checks (the report says so; `seq-harness job --resume "
             f"{out} --budget 0` runs them)")
    run_id = start(timings, ["seq-harness", *request.argv], resume=resume,
                   resumed_by=resumed_by)
    if resume:
        forget_left_out(timings)
    done = {record_key(r) for r in iter_records(timings)}
    made = plans(request, chosen.specs)
    total = sum(p.jobs() for _, p in made)
    deadline = began + request.budget_s - REPORT_S if request.budget_s else None
    left = (f", {max(0.0, deadline - time.monotonic()):.0f} s of the budget left"
            if deadline is not None else "")
    emit(f"seq-harness job: stage 2 of 3, {total} timings over {len(made)} grids "
         f"({', '.join(p.grid.name for _, p in made)}){left}, records in {timings}")
    progress = Progress(total, "timings", every_s=request.progress_s, emit=emit)
    progress.done = min(len(done), total)
    if request.device == "cuda" and not torch.cuda.is_available():
        skip_all([p for _, p in made], timings, run_id=run_id, why="CUDA is not available")
        made = []
    skipped = measure(made, timings, run_id=run_id, done=done, deadline=deadline,
                      why=f"left out: the job's time budget ({request.budget_s:g} s) was spent "
                          f"before this timing; `seq-harness job --resume {out} --budget 0` "
                          "measures it" if request.budget_s else "",
                      progress=lambda line: progress.step())
    if skipped:
        emit(f"seq-harness job: the time budget left out {skipped} of {total} timings (the "
             f"report lists them; `seq-harness job --resume {out} --budget 0` measures them)")
    emit(f"seq-harness job: stage 3 of 3, the report: {request.report_path}")
    write_report([checks, timings], request.report_path)
    checked = list(iter_records(checks))
    timed = [r for r in iter_records(timings) if r.check != "gemm"]
    failed = sum(r.outcome == "failed" for r in checked)
    failed_timings = sum(r.outcome == "failed" for r in timed)
    over = sum(r.metrics.get("over_limit") is True for r in timed)
    unchecked = sum(r.metrics.get("left_out") is True for r in checked)
    emit(f"seq-harness job: {len(checked)} checks ({failed} failed, {unchecked} left out), "
         f"{len(timed)} timings "
         f"({failed_timings} failed, {over} past their grid's limit, {skipped} left out); "
         f"report: {request.report_path}")
    return 1 if failed or failed_timings else 0


def measure(made: Sequence[tuple[Timing, Plan]], out: Path, *, run_id: str, done: set[tuple],
            deadline: float | None, why: str, progress: Callable[[str], None]) -> int:
    """Every grid's timings: what each implementation cannot do, first calls, then worker
    process 0 of every grid, then process 1 of every grid, ...; once ``deadline`` has passed,
    what is left is recorded as skipped with ``why``. How many were left out."""
    for timing, plan in made:
        not_supported(plan, out, run_id=run_id, done=done)
        first_calls(plan, out, run_id=run_id, job_timeout_s=timing.timeout_s,
                    progress=progress, done=done)
    sides = [(timing, Side(plan, out, run_id)) for timing, plan in made]
    passes = [(worker, timing, side) for worker in range(max((p.workers for _, p in made),
                                                              default=0))
              for timing, side in sides if worker < side.plan.workers]
    for worker, timing, side in passes:
        run_sides([side], workers=[worker], job_timeout_s=timing.timeout_s,
                  progress=progress, done=done, deadline=deadline,
                  over_limit=timing.over_limit)
    if deadline is None or time.monotonic() < deadline:
        return 0
    recorded = {record_key(r) for r in iter_records(out)}
    return sum(len(left_out(side, worker, recorded, why=why)) for worker, _, side in passes)


def forget_left_out(directory: Path) -> None:
    """Drop the records of timings a time budget left out (a resumed job measures them)."""
    path = directory / RECORDS_FILE
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if not was_left_out(line)]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(kept))
    os.replace(temporary, path)


def was_left_out(line: str) -> bool:
    try:
        metrics = json.loads(line).get("metrics")
    except json.JSONDecodeError:  # a line cut short by a kill: iter_records drops it
        return False
    return isinstance(metrics, dict) and metrics.get("left_out") is True
