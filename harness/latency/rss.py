"""Process memory as the operating system sees it: the peak resident set size growth of a call.

torch's allocator figure (the profiler's allocation records) sees only tensors torch allocates.
Another runtime in the same process — onnxruntime's arena, int8 kernels' packed weights, a
compiler's generated code — allocates memory torch never sees, and its peak shows only here. On
Linux the kernel keeps the process's peak RSS (VmHWM in /proc/self/status) and lets a process
reset it to the current RSS (writing 5 to /proc/self/clear_refs): the growth of the peak over
the RSS before a call is the most memory the call held at once, whoever allocated it. Where that
is not available (another OS, a restricted /proc), the figure is None, never a guess.

Memory a runtime keeps between calls (an arena that grew in the first call and is reused) is
already resident before a steady-state call: it shows in the growth of the first call of a fresh
process (bench's first-call record), not in the steady state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (VmRSS, VmHWM), or None."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Set the peak RSS to the current RSS; False where the kernel does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_growth(call: Callable[[], T]) -> tuple[T, int | None]:
    """Run ``call``; its result and the bytes by which the process's peak RSS rose above the RSS
    before it (None where that cannot be measured)."""
    if not reset_peak():
        return call(), None
    before = status_kb("VmRSS")
    result = call()
    peak = status_kb("VmHWM")
    if before is None or peak is None:
        return result, None
    return result, max(0, peak - before) * 1024
