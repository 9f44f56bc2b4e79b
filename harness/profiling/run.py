"""Where an implementation spends its time: one case, one phase, under torch.profiler.

The suites say whether an implementation is right; this module shows where it is slow. It runs one
registry entry (or an ``--impl-class``) on one case for a few steps of one phase, under
torch.profiler, and leaves in a directory:

- ``tb/<worker>.<ns>.pt.trace.json``: the trace where the torch-tb-profiler TensorBoard plugin
  looks for it (``tensorboard --logdir DIR/tb``);
- ``trace.json``: the same trace on its own, for https://ui.perfetto.dev or chrome://tracing;
- ``profile.md``: what ran and on what, and the operators that took the most time (written by
  harness.report.profile from the ProfileResult).

The module and its inputs come from Subject, so what is profiled is what the suites check: the
case's reference weights and data, fed through the forward contract.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.profiler import ProfilerActivity

from harness.core.phases import phase_step
from harness.core.subject import Subject
from harness.core.text import one_line
from harness.profiling.request import ProfileError, ProfileRequest
from harness.profiling.tables import ANNOTATION_PREFIX, device_time, is_operator, operator_table
from harness.records import RunInfo

TB_DIR = "tb"
TRACE_FILE = "trace.json"
REPORT_FILE = "profile.md"
TRACE_SUFFIX = ".pt.trace.json"


@dataclass(frozen=True, eq=False)
class ProfileResult:
    """Where the profile was written, and its tables (numbers, not text).

    operators: the top operators by self CPU time; device_operators: by self CUDA time, None when
    no device time was recorded. step_ms: mean wall time of a profiled step (profiler included).
    """

    out: Path
    report: Path
    trace: Path
    tb_trace: Path
    operators: pd.DataFrame
    device_operators: pd.DataFrame | None
    step_ms: float
    info: RunInfo
    cpu_total_ms: float  # all profiled CPU time
    operators_ms: float  # the part of it inside operators

    @property
    def tb_dir(self) -> Path:
        return self.tb_trace.parent


def step_function(request: ProfileRequest, subject: Subject, module: torch.nn.Module,
                  inputs: Any) -> Callable[[], None]:
    """One step of the request's phase (the phase step the benchmarks time), each part marked in
    the trace by a named range, CUDA synchronised at its end."""
    return phase_step(lambda: subject.run(module, inputs), module, request.phase,
                      annotate=ANNOTATION_PREFIX, synchronize=request.uses_cuda)


def guarded(step: Callable[[], None], request: ProfileRequest) -> Callable[[], None]:
    """The step, with a failure of the implementation reported as a ProfileError."""

    def run() -> None:
        try:
            step()
        except Exception as error:
            raise ProfileError(
                f"{request.spec.name} failed in phase {request.phase} on case "
                f"{request.case.id}: {one_line(error)}"
            ) from error

    return run


def trace_files(directory: Path) -> set[Path]:
    return set(directory.glob("*" + TRACE_SUFFIX))


def earlier_profile(out: Path, *, overwrite: bool) -> list[Path]:
    """The files of an earlier profile in ``out``, to be replaced; refused without
    ``overwrite``. Only a profile's own files are listed: anything else in ``out`` stays."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; expected a directory")
    earlier = [p for p in (out / REPORT_FILE, out / TRACE_FILE) if p.exists()]
    earlier += sorted(trace_files(out / TB_DIR))
    if earlier and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} already holds a profile; choose another directory or "
            "pass --overwrite"
        )
    return earlier


def profile(
    request: ProfileRequest,
    out: str | Path,
    *,
    overwrite: bool = False,
    argv: Sequence[str] | None = None,
) -> ProfileResult:
    """Profile the request into ``out``: the traces (see the module docstring); the result says
    where, and holds the operator tables that profile.md is rendered from.

    Raises ValueError for bad input (before anything runs) and ProfileError when the
    implementation fails (``out`` is then left as it was). ``argv``, when given, is the command
    line the report names. torch's thread count is set to ``request.threads`` and put back
    afterwards; torch's global random generators are left as they were (implementations draw
    their initial weights, and dropout its masks, from them).
    """
    out = Path(out)
    if request.uses_cuda and not torch.cuda.is_available():
        raise ValueError(
            f"device 'cuda' is unavailable (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda or 'none'}); valid here: cpu"
        )
    stale = earlier_profile(out, overwrite=overwrite)
    tb = out / TB_DIR

    threads = torch.get_num_threads()
    torch.set_num_threads(request.threads)
    cuda_devices = [torch.cuda.current_device()] if request.uses_cuda else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            info = RunInfo.collect(argv=list(argv) if argv is not None else [])
            step = warmed_up(request)
            # Only now that the implementation has run is the earlier profile replaced.
            for path in stale:
                path.unlink()
            tb.mkdir(parents=True, exist_ok=True)
            events = record(request, step, tb)
    finally:
        torch.set_num_threads(threads)

    # Kineto saves a profile once ("Trace is already saved" on a second export_chrome_trace), so
    # trace.json is a copy of the trace the TensorBoard handler wrote: the same steps, the same
    # file format.
    written = sorted(trace_files(tb))
    if len(written) != 1:
        raise ProfileError(f"torch.profiler wrote {len(written)} traces to {tb}; expected one")
    trace = out / TRACE_FILE
    shutil.copyfile(written[0], trace)

    operators = operator_table(events, by="cpu", limit=request.top)
    device_operators = None
    if request.uses_cuda and any(device_time(e) > 0 for e in events):
        device_operators = operator_table(events, by="cuda", limit=request.top)
    steps = [e for e in events if e.key.startswith("ProfilerStep")]
    step_ms = sum(e.cpu_time_total for e in steps) / max(1, sum(e.count for e in steps)) / 1e3
    cpu_total = sum(e.self_cpu_time_total for e in events) / 1e3
    in_operators = sum(e.self_cpu_time_total for e in events if is_operator(e)) / 1e3
    return ProfileResult(out, out / REPORT_FILE, trace, written[0], operators, device_operators,
                         step_ms, info, cpu_total, in_operators)


def warmed_up(request: ProfileRequest) -> Callable[[], None]:
    """The request's step on the case's module and inputs, after its warm-up steps."""
    subject = Subject(request.spec, request.case)
    try:
        module = subject.build()
        inputs = subject.inputs()
    except Exception as error:
        raise ProfileError(
            f"{request.spec.name} does not build for case {request.case.id}: {one_line(error)}"
        ) from error
    step = guarded(step_function(request, subject, module, inputs), request)
    for _ in range(request.warmup):
        step()
    return step


def record(request: ProfileRequest, step: Callable[[], None], tb: Path) -> Any:
    """Run the profiler's schedule over ``step``; the key averages of the recorded steps."""
    activities = [ProfilerActivity.CPU]
    if request.uses_cuda:
        activities.append(ProfilerActivity.CUDA)
    schedule = torch.profiler.schedule(
        wait=request.wait, warmup=request.profiler_warmup, active=request.steps, repeat=1
    )
    # A worker name that says what ran; the plugin lists it under "Workers".
    handler = torch.profiler.tensorboard_trace_handler(
        str(tb), worker_name=f"{request.spec.name}_{request.phase}"
    )
    with torch.profiler.profile(
        activities=activities,
        schedule=schedule,
        on_trace_ready=handler,
        record_shapes=True,
        profile_memory=True,
        with_stack=False,
    ) as prof:
        for _ in range(request.wait + request.profiler_warmup + request.steps):
            step()
            prof.step()
    return prof.key_averages()
