"""LatencyStats one implementation on one shape in one phase, honestly, with torch.utils.benchmark.

A Task names what is timed (implementation, shape, phase). ``measure`` builds the module and its
inputs exactly as the conformance suites do, warms it up, and lets Timer.blocked_autorange choose
block sizes; every block's per-iteration time is kept (raw samples, never only a summary). The
thread count is set explicitly. On CUDA, Timer synchronises per block, every shape is warmed up
first, and cudnn.benchmark is part of the task; peak memory comes from
torch.cuda.max_memory_allocated. On the CPU, peak memory is the high-water mark of tensor memory
allocated by torch's CPU allocator during one call, replayed from the profiler's per-operator
allocation records (profile_memory=True): tensors only, not the interpreter or the allocator's
own overhead. Next to it, the growth of the process's peak RSS during one call
(harness.latency.rss): memory any runtime in the process holds, torch's or not.

"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.core.phases import check_phase, op_phase_step, phase_step
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.latency.peak import Gemm
from harness.latency.rss import peak_growth


@dataclass(frozen=True)
class Task:
    """What one timing measures.

    phase: inference (eval, inference_mode), forward (train mode, graph built), or
        forward_backward (train mode, forward then backward of the summed outputs).
    cudnn_benchmark: torch.backends.cudnn.benchmark during the timing (CUDA only; None on CPU).
    """

    impl: str
    case: Case
    phase: str
    cudnn_benchmark: bool | None = None

    def __post_init__(self) -> None:
        check_phase(self.phase)


@dataclass(frozen=True)
class BlockTimes:
    """Raw data of one timing in one process."""

    block_s: tuple[float, ...]  # per-iteration time of each block, seconds
    number_per_run: int  # iterations per block, chosen by blocked_autorange
    peak_bytes: int | None = None
    peak_rss_bytes: int | None = None  # the process's peak RSS growth during one call
    kernel: dict | None = None  # what ran the call (kernel_path)


def prepared(spec: ImplSpec, task: Task) -> tuple[Callable[[], None], object]:
    """The call a task times — the phase step (harness.core.phases) on the case's module and
    inputs, built as the conformance suites build them — and that module (an op: the
    function)."""
    if isinstance(task.case, OpCase):
        subject = OpSubject(spec, task.case)
        inputs = subject.inputs()
        step = op_phase_step(lambda tensors: subject.run(inputs.rebuilt(tensors)),
                             list(inputs.tensors()), task.phase)
        return step, spec.factory
    subject = Subject(spec, task.case)
    module = subject.build()
    inputs = subject.inputs()
    return phase_step(lambda: subject.run(module, inputs), module, task.phase), module


def task_callable(spec: ImplSpec, task: Task) -> Callable[[], None]:
    return prepared(spec, task)[0]


def kernel_path(module: object, device: str) -> dict:
    """What ran a timed call: the instruction set torch dispatches to (or the GPU), and what
    the implementation says about its own kernels when it says something — a method
    ``harness_kernel_path() -> dict`` (the fast layers report the GEMM library they chose)."""
    path: dict = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device == "cuda":
        path["gpu"] = torch.cuda.get_device_name(0)
    own = getattr(module, "harness_kernel_path", None)
    if callable(own):
        try:
            path.update(own())
        except Exception as error:  # the implementation's report is its business, not ours
            path["kernel_path_error"] = f"{type(error).__name__}: {error}"
    return path


def peak_bytes(call: Callable[[], None], device: str) -> int:
    """High-water mark of tensor memory during one call (see the module docstring)."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    changes = sorted(
        (e.time_range.start, e.self_cpu_memory_usage)
        for e in prof.events()
        if e.self_cpu_memory_usage
    )
    running = peak = 0
    for _, change in changes:
        running += change
        peak = max(peak, running)
    return int(peak)


SLOW_CALL_S = 0.05  # a warm call this long is timed in blocks of one call


def time_callable(
    call: Callable[[], None], *, threads: int, min_run_time: float, warmup: int = 3,
    label: str = "",
) -> BlockTimes:
    """Warm up (at least once, up to ``warmup`` calls or 0.2 s: one call of a large shape is
    enough), then Timer.blocked_autorange, or for a call longer than SLOW_CALL_S one call per
    block until min_run_time; every block's per-iteration time."""
    from torch.utils.benchmark import Timer

    started = time.perf_counter()
    for _ in range(warmup):
        last = time.perf_counter()
        call()
        if time.perf_counter() - started > 0.2:
            break
    slow = time.perf_counter() - last > SLOW_CALL_S
    gc.collect()
    if slow:
        # A call this long is its own block: timed as Timer does (perf_counter, gc off, CUDA
        # synchronised), since blocked_autorange would spend one more call sizing blocks of one
        # iteration.
        sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
        blocks: list[float] = []
        enabled = gc.isenabled()
        gc.disable()
        try:
            while not blocks or sum(blocks) < min_run_time:
                sync()
                begin = time.perf_counter()
                call()
                sync()
                blocks.append(time.perf_counter() - begin)
        finally:
            if enabled:
                gc.enable()
        return BlockTimes(tuple(blocks), 1)
    timer = Timer(stmt="call()", globals={"call": call}, num_threads=threads, label=label)
    measured = timer.blocked_autorange(min_run_time=min_run_time)
    per_iteration = tuple(t / measured.number_per_run for t in measured.raw_times)
    return BlockTimes(per_iteration, int(measured.number_per_run))


def slowed(call: Callable[[], None], fraction: float) -> Callable[[], None]:
    """The call plus a known fraction of extra work: after each call, busy-wait for ``fraction``
    of the time that call took (a slowdown of exactly that fraction, noise included)."""

    def call_slowed() -> None:
        started = time.perf_counter()
        call()
        until = started + (time.perf_counter() - started) * (1 + fraction)
        while time.perf_counter() < until:
            pass

    return call_slowed


def measure(
    spec: ImplSpec, task: Task, *, threads: int, min_run_time: float, memory: bool = True,
    slowdown: float = 0.0,
) -> BlockTimes:
    """Time one task in this process (``slowdown``: see ``slowed``; for calibration)."""
    torch.set_num_threads(threads)
    if task.case.device == "cuda":
        torch.backends.cudnn.benchmark = bool(task.cudnn_benchmark)
    call, module = prepared(spec, task)
    if slowdown:
        call = slowed(call, slowdown)
    timed = time_callable(call, threads=threads, min_run_time=min_run_time,
                          label=f"{spec.name} {task.phase} {task.case.id}")
    # An op's recurrent loop records millions of allocations in a backward pass: the profiler's
    # replay of them takes gigabytes, so ops keep the RSS growth only (and CUDA's own peak).
    profiled = memory and (task.case.device == "cuda" or not isinstance(task.case, OpCase))
    peak = peak_bytes(call, task.case.device) if profiled else None
    rss = peak_growth(call)[1] if memory else None  # memory torch's allocator does not see
    path = kernel_path(module, task.case.device)
    if isinstance(task.case, OpCase):  # the FLOP formula of an op's timings is its form's
        path["form"] = spec.capabilities.form
    return BlockTimes(timed.block_s, timed.number_per_run, peak, rss, path)


def measure_peak(gemm: Gemm, *, threads: int, min_run_time: float) -> BlockTimes:
    """One point of the machine's matmul-peak sweep (see harness.latency.peak)."""
    torch.set_num_threads(threads)
    return time_callable(gemm.callable(), threads=threads, min_run_time=min_run_time,
                         label=f"gemm {gemm.id}")
