"""Operator tables from torch.profiler's key averages: the top operators by self CPU or self CUDA
time, as numbers (a DataFrame), for the profile document to render."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from torch.autograd import DeviceType

# Ranges the harness itself marks in the trace; they are not operators, so tables leave them out.
ANNOTATION_PREFIX = "seq-harness/"


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
