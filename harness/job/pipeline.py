"""The main job, in three stages that each leave their records on disk as they go:

1. checks: every suite (``--scale ci`` or ``full``) over the registry, in worker processes,
   into OUT/checks (a results directory of its own);
2. timings: the latency grids of the scale, one after the other, into OUT/timings;
3. the report of both, verdict first, with the full latency tables beside it.

Ctrl-C (or a kill) keeps everything recorded so far; ``--resume OUT`` runs the job again with its
own options and measures only what is missing: checks already recorded are skipped, timings
already recorded are not repeated, and the report is rendered from all of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.conformance.session import SuiteRun, run_suites
from harness.conformance.suites import suite_files
from harness.core.progress import Progress
from harness.latency.grids import load_grid
from harness.latency.plan import Plan
from harness.latency.run import run as run_timings
from harness.records import (
    RunInfo,
    iter_records,
    prepare_results_dir,
    read_run_info,
    write_run_info,
)
from harness.registry import choose
from harness.report import write_report

JOB_FILE = "job.json"
CHECKS, TIMINGS = "checks", "timings"

# What each scale times: (grid, phases (empty: the grid's), workers, min_run_time)
SCALES = {
    "ci": (("standard", ("inference", "forward_backward"), 2, 0.3),
           ("varlen-small", (), 2, 0.2)),
    "full": (("standard", (), 3, 1.0), ("varlen", (), 2, 0.3), ("deepbench", (), 2, 0.2),
             ("long", (), 2, 0.1)),
}


@dataclass(frozen=True)
class JobRequest:
    """What a job covers; saved as OUT/job.json so that --resume runs the same job."""

    out: str
    scale: str = "ci"
    impls: tuple[str, ...] = ()
    impl_classes: tuple[str, ...] = ()
    family: str | None = None
    workers: int = 2
    threads: int = 1
    check_timeout: float = 120.0
    report: str | None = None
    argv: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"--scale {self.scale!r} is invalid; valid: {', '.join(SCALES)}")

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


def plans(request: JobRequest, specs) -> list[Plan]:
    made = []
    for name, phases, workers, min_run_time in SCALES[request.scale]:
        grid = load_grid(name)
        made.append(Plan(specs=specs, grid=grid, phases=tuple(phases) or grid.phases,
                         workers=workers, min_run_time=min_run_time, threads=request.threads))
    return [p for p in made if p.tasks()]


def start(directory: Path, argv: Sequence[str], *, resume: bool) -> str:
    """A results directory ready for a stage: its run.json kept when resuming; the run id."""
    if resume and (directory / "run.json").is_file():
        return read_run_info(directory).run_id
    prepare_results_dir(directory, overwrite=True)
    info = RunInfo.collect(argv=list(argv))
    write_run_info(directory, info)
    return info.run_id


def run_job(request: JobRequest, *, resume: bool = False,
            emit: Callable[[str], None] = print) -> int:
    """The job (see the module docstring); 0 when every check passed and every timing was
    measured, 1 otherwise."""
    out = Path(request.out)
    chosen = choose(impls=request.impls, impl_classes=request.impl_classes,
                    family=request.family)
    if not resume:
        prepare_results_dir(out, overwrite=True)
    out.mkdir(parents=True, exist_ok=True)
    request.save()
    checks, timings = out / CHECKS, out / TIMINGS
    emit(f"seq-harness job: stage 1 of 3, every suite at --scale {request.scale} over "
         f"{len(chosen.specs)} implementations, records in {checks}")
    start(checks, ["seq-harness", *request.argv], resume=resume)
    suites = run_suites(SuiteRun(
        files=tuple(suite_files([])), out=checks, impls=request.impls,
        impl_classes=request.impl_classes, family=request.family, scale=request.scale,
        threads=request.threads, check_timeout=request.check_timeout,
        workers=request.workers, resume=resume and any(True for _ in iter_records(checks))))
    run_id = start(timings, ["seq-harness", *request.argv], resume=resume)
    done = {(r.impl, r.case_id, r.check, r.metrics.get("worker"))
            for r in iter_records(timings)}
    made = plans(request, chosen.specs)
    total = sum(len(p.tasks()) * p.workers for p in made)
    emit(f"seq-harness job: stage 2 of 3, {total} timings over {len(made)} grids, records in "
         f"{timings}")
    progress = Progress(total, "timings", emit=emit)
    progress.done = len(done)
    failed_timings = 0
    for plan in made:
        recorded = run_timings(plan, timings, run_id=run_id, done=done,
                               progress=lambda line: progress.step())
        failed_timings += sum(r.outcome == "failed" for r in recorded)
    emit(f"seq-harness job: stage 3 of 3, the report: {request.report_path}")
    write_report([checks, timings], request.report_path)
    failed = sum(r.outcome == "failed" for r in suites.records)
    emit(f"seq-harness job: {len(suites.records)} checks ({failed} failed), "
         f"{progress.done} timings ({failed_timings} failed); report: {request.report_path}")
    return 1 if failed or failed_timings else 0
