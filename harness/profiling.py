"""Where an implementation spends its time: one case, one phase, under torch.profiler.

The suites say whether an implementation is right; this module shows where it is slow. It runs one
registry entry (or an ``--impl-class``) on one case for a few steps of one phase, under
torch.profiler, and leaves in a directory:

- ``tb/<worker>.<ns>.pt.trace.json``: the trace where the torch-tb-profiler TensorBoard plugin
  looks for it (``tensorboard --logdir DIR/tb``);
- ``trace.json``: the same trace on its own, for https://ui.perfetto.dev or chrome://tracing;
- ``profile.md``: what ran and on what, and the operators that took the most time.

The module and its inputs come from Subject, so what is profiled is what the suites check: the
case's reference weights and data, fed through the forward contract.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity

from harness.core.case import Case
from harness.core.phases import PHASE_TEXT, PHASES, phase_step
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.core.text import code, md, one_line
from harness.records import RunInfo
from harness.registry import Registry
from harness.selection import choose

DEFAULT_SHAPE = "100,64,512,512"
SHAPE_FIELDS = ("seq_len", "batch", "input_size", "hidden_size", "num_layers")
SHAPE_USAGE = "expected T,B,I,H or T,B,I,H,L as positive integers, e.g. 100,64,512,512"

TB_DIR = "tb"
TRACE_FILE = "trace.json"
REPORT_FILE = "profile.md"
TRACE_SUFFIX = ".pt.trace.json"
# Ranges the harness itself marks in the trace; they are not operators, so tables leave them out.
ANNOTATION_PREFIX = "seq-harness/"


class ProfileError(RuntimeError):
    """The implementation (or the profiler) failed while profiling: not a usage error."""


def parse_shape(text: str, *, device: str = "cpu", dtype: str = "float32") -> Case:
    """The case of a ``--shape`` string: ``T,B,I,H`` or ``T,B,I,H,L`` (num_layers)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (4, 5):
        raise ValueError(f"--shape {text!r} has {len(parts)} fields; {SHAPE_USAGE}")
    values: dict[str, int] = {}
    for name, part in zip(SHAPE_FIELDS, parts):
        # ASCII digits only: int() would also take '+3', '1_000' and non-ASCII digits.
        if not re.fullmatch(r"[0-9]+", part) or int(part) < 1:
            raise ValueError(f"--shape {text!r}: {name} {part!r} is invalid; {SHAPE_USAGE}")
        values[name] = int(part)
    return Case(**values, device=device, dtype=dtype)


def resolve_spec(
    impl: str | None,
    impl_class: str | None = None,
    family: str | None = None,
    *,
    registry: Registry | None = None,
) -> ImplSpec:
    """Exactly one implementation: a registry entry, or ``--impl-class`` with ``--family``."""
    if (impl is None) == (impl_class is None):
        raise ValueError(
            "name one implementation: IMPL (a registry entry, see seq-harness list) or "
            "--impl-class MODULE:CLASS --family FAMILY"
        )
    chosen = choose(
        impls=[impl] if impl is not None else [],
        impl_classes=[impl_class] if impl_class is not None else [],
        family=family,
        registry=registry,
    )
    return chosen.specs[0]


def _count(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")


@dataclass(frozen=True)
class ProfileRequest:
    """What to profile, validated on construction so bad input fails before anything runs.

    spec, case: the implementation and the configuration it runs (the case's device decides
        whether CUDA activity is recorded).
    phase: inference, forward or forward_backward (see PHASE_TEXT).
    steps: profiled steps; the tables are totals over them.
    warmup: plain steps before the profiler starts, so first-call costs (oneDNN primitive
        creation, allocator growth, lazy initialisation) stay out of the profile.
    wait, profiler_warmup: the profiler schedule's steps before recording: skipped, then traced
        and discarded (the profiler's own start-up cost lands there).
    threads: torch intra-op threads while profiling.
    top: rows of each operator table.
    """

    spec: ImplSpec
    case: Case
    phase: str = "inference"
    steps: int = 5
    warmup: int = 2
    wait: int = 1
    profiler_warmup: int = 1
    threads: int = 1
    top: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ImplSpec):
            raise TypeError(f"spec={self.spec!r} is invalid; expected an ImplSpec")
        if not isinstance(self.case, Case):
            raise TypeError(f"case={self.case!r} is invalid; expected a Case")
        if self.phase not in PHASES:
            raise ValueError(f"phase {self.phase!r} is invalid; valid: {', '.join(PHASES)}")
        for name, minimum in (("steps", 1), ("warmup", 0), ("wait", 0), ("profiler_warmup", 1),
                              ("threads", 1), ("top", 1)):
            _count(name, getattr(self, name), minimum)
        why = self.spec.capabilities.why_not(self.case, self.spec.fam)
        if why is not None:
            raise ValueError(f"{self.spec.name} cannot run case {self.case.id}: {why}")

    @property
    def uses_cuda(self) -> bool:
        return self.case.device == "cuda"


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
    """Profile the request into ``out`` (see the module docstring for what is written there).

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
    result = ProfileResult(out, out / REPORT_FILE, trace, written[0], operators,
                           device_operators, step_ms)
    result.report.write_text(render(request, result, info, events))
    return result


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


# Operator tables -----------------------------------------------------------------------------


def _figure(event: Any, *names: str) -> float:
    """The first of ``names`` the event has: torch renamed cuda_* to device_* over versions."""
    for name in names:
        value = getattr(event, name, None)
        if value is not None:
            return value
    return 0


def device_time(event: Any) -> float:
    return _figure(event, "self_device_time_total", "self_cuda_time_total")


def is_operator(event: Any) -> bool:
    """Operators run on the CPU side (aten::, autograd and custom ops), not the ranges the
    profiler or the harness mark, and not the device's kernels themselves."""
    if getattr(event, "is_user_annotation", False):
        return False
    if event.key.startswith(("ProfilerStep", ANNOTATION_PREFIX)) or event.key == "[memory]":
        return False
    return getattr(event, "device_type", DeviceType.CPU) == DeviceType.CPU


def operator_table(events: Iterable[Any], *, by: str = "cpu", limit: int = 20) -> pd.DataFrame:
    """The top ``limit`` operators by self CPU (``by="cpu"``) or self CUDA time (``"cuda"``).

    Times are milliseconds summed over the profiled steps; shares are of all the profiled time
    of that kind (as torch's own table computes them), memory is bytes (net, so it can be
    negative for an operator that frees more than it allocates).
    """
    if by not in ("cpu", "cuda"):
        raise ValueError(f"by={by!r} is invalid; valid: cpu, cuda")
    events = list(events)
    cpu_total = sum(e.self_cpu_time_total for e in events)
    # Device time is counted on the device's own events (kernels, copies); each operator's
    # self device time is that of the kernels it launched.
    device_total = sum(device_time(e) for e in events
                       if getattr(e, "device_type", DeviceType.CPU) != DeviceType.CPU
                       and not getattr(e, "is_user_annotation", False))
    rows = []
    for e in filter(is_operator, events):
        row = {
            "operator": e.key,
            "calls": e.count,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "cpu_total_ms": e.cpu_time_total / 1e3,
            "self_cpu_share": e.self_cpu_time_total / cpu_total if cpu_total else 0.0,
            "self_cpu_mem": int(e.self_cpu_memory_usage),
            "cpu_mem": int(e.cpu_memory_usage),
        }
        if by == "cuda":
            row |= {
                "self_cuda_ms": device_time(e) / 1e3,
                "cuda_total_ms": _figure(e, "device_time_total", "cuda_time_total") / 1e3,
                "self_cuda_share": device_time(e) / device_total if device_total else 0.0,
                "self_cuda_mem": int(_figure(e, "self_device_memory_usage",
                                             "self_cuda_memory_usage")),
            }
        rows.append(row)
    columns = ["operator", "calls", "self_cpu_ms", "cpu_total_ms", "self_cpu_share",
               "self_cpu_mem", "cpu_mem"]
    if by == "cuda":
        columns += ["self_cuda_ms", "cuda_total_ms", "self_cuda_share", "self_cuda_mem"]
    frame = pd.DataFrame(rows, columns=columns)
    key = "self_cuda_ms" if by == "cuda" else "self_cpu_ms"
    frame = frame.sort_values(key, ascending=False, kind="stable").head(limit)
    return frame.reset_index(drop=True)


def size_text(n: int) -> str:
    """Bytes for people: '84.7 KiB', '-472 B'."""
    sign, value = ("-" if n < 0 else ""), float(abs(n))
    if value < 1024:
        return f"{sign}{value:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{sign}{value:.1f} {unit}"


def table_markdown(frame: pd.DataFrame, *, by: str) -> str:
    """An operator table as markdown; operator names are escaped for table cells."""
    text = pd.DataFrame({"operator": frame["operator"].map(code), "calls": frame["calls"]})
    if by == "cuda":
        text["self CUDA (ms)"] = frame["self_cuda_ms"].map("{:.3f}".format)
        text["CUDA total (ms)"] = frame["cuda_total_ms"].map("{:.3f}".format)
        text["self CUDA share"] = frame["self_cuda_share"].map("{:.1%}".format)
        text["self CUDA mem"] = frame["self_cuda_mem"].map(size_text)
        text["CPU total (ms)"] = frame["cpu_total_ms"].map("{:.3f}".format)
    else:
        text["self CPU (ms)"] = frame["self_cpu_ms"].map("{:.3f}".format)
        text["CPU total (ms)"] = frame["cpu_total_ms"].map("{:.3f}".format)
        text["self CPU share"] = frame["self_cpu_share"].map("{:.1%}".format)
        text["self CPU mem"] = frame["self_cpu_mem"].map(size_text)
        text["CPU mem"] = frame["cpu_mem"].map(size_text)
    text["operator"] = text["operator"].map(lambda s: s.replace("|", "\\|"))
    return text.to_markdown(index=False, disable_numparse=True)


# The report ----------------------------------------------------------------------------------


def render(request: ProfileRequest, result: ProfileResult, info: RunInfo, events: Any) -> str:
    """profile.md: what ran, how to open the traces, the top operators."""
    spec, case = request.spec, request.case
    machine = info.cuda if request.uses_cuda and info.cuda else info.processor
    about = [
        ("implementation", f"{md(spec.name)} ({md(spec.origin or 'registry')})"),
        ("family", md(spec.family)),
        ("case", code(case.id)),
        ("phase", f"{md(request.phase)}: {PHASE_TEXT[request.phase]}"),
        ("steps", f"{request.steps} profiled, after {request.warmup} warm-up steps and the "
                  f"profiler's {request.wait} wait and {request.profiler_warmup} warm-up steps"),
        ("mean profiled step", f"{result.step_ms:.3f} ms (wall, profiler overhead included)"),
        ("threads", str(info.threads)),
        ("device", f"{md(case.device)}: {md(machine)}"),
        ("torch", md(info.torch)),
        ("python", md(info.python)),
        ("commit", md((info.git_commit or "—")[:12])),
        ("created", md(info.created)),
    ]
    about_table = pd.DataFrame(about, columns=["", "value"]).to_markdown(
        index=False, disable_numparse=True
    )
    out = shlex.quote(str(result.out))
    tb, trace = shlex.quote(str(result.tb_dir)), shlex.quote(str(result.trace))
    install, tensorboard = "pip install 'seq-harness[tb]'", f"tensorboard --logdir {tb}"
    lines = [f"# Profile: {md(spec.name)} · {md(case.id)} · {md(request.phase)}", ""]
    if info.argv:
        lines += [f"Produced by {code(shlex.join(info.argv))}.", ""]
    lines += [
        about_table,
        "",
        "## Traces",
        "",
        f"- TensorBoard: {code(install)} (it adds the torch-tb-profiler plugin), then "
        f"{code(tensorboard)} and open the PyTorch Profiler tab.",
        f"- Perfetto or Chrome: load {code(trace)} in https://ui.perfetto.dev or "
        "chrome://tracing.",
        "",
        f"Both hold the {request.steps} profiled steps (`ProfilerStep#N`), with input shapes "
        f"and memory events; `{ANNOTATION_PREFIX}*` ranges mark the phase's parts. "
        f"Everything here is in {code(out)}.",
        "",
    ]
    cpu_total = sum(e.self_cpu_time_total for e in events) / 1e3
    in_ops = sum(e.self_cpu_time_total for e in events if is_operator(e)) / 1e3
    lines += [
        "## Top operators by self CPU time",
        "",
        f"Totals over the {request.steps} profiled steps. Shares are of all profiled CPU time, "
        f"{cpu_total:.3f} ms, of which {in_ops / cpu_total if cpu_total else 0:.1%} was inside "
        "operators; the rest is Python between them (the implementation's own code, the "
        "harness's call and the profiler's bookkeeping). Memory is net allocation (negative: "
        "freed more than allocated); *self CPU mem* counts the operator alone, *CPU mem* also "
        "the operators it called.",
        "",
        table_markdown(result.operators, by="cpu") if len(result.operators) else "No operators.",
        "",
    ]
    if result.device_operators is not None:
        lines += [
            "## Top operators by self CUDA time",
            "",
            "Each operator's self CUDA time is that of the kernels it launched; shares are of "
            "all kernel and copy time on the device.",
            "",
            table_markdown(result.device_operators, by="cuda"),
            "",
        ]
    return "\n".join(lines)

