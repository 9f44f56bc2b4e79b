"""Keeping untrusted implementations from hurting anything but their own checks.

Three guards, all plain Python so the pytest plugin only wires them in:
- TorchState: torch's process-wide settings (default dtype, threads, grad mode, deterministic
  algorithms, cuDNN and TF32 flags, random generators) captured before a check and put back
  after it, so an implementation that changes them cannot change another one's results;
- deadline: a per-check time limit. The limit raises CheckTimeout in the check (a BaseException,
  so an implementation's ``except Exception`` cannot swallow it); when the check is stuck where
  Python cannot interrupt it (inside a C call), a watchdog calls ``on_stuck`` once a grace period
  has also passed — in a worker process that records the timeout and ends the process;
- a crash of the worker process is the worker's business: pytest-xdist replaces it, and the
  plugin records the check that was running as crashed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where settings are read: the xdist controller holds Strikes only
    import torch


class CheckTimeout(BaseException):
    """A check ran past its time limit."""


@dataclass(frozen=True)
class TorchState:
    """torch's global settings that an implementation might change."""

    default_dtype: torch.dtype
    threads: int
    grad_enabled: bool
    deterministic: bool
    deterministic_warn_only: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    cudnn_tf32: bool
    matmul_tf32: bool
    anomaly: bool
    cpu_rng: torch.Tensor
    cuda_rng: tuple[torch.Tensor, ...]

    @classmethod
    def capture(cls) -> TorchState:
        import torch

        cuda = tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else ()
        return cls(
            default_dtype=torch.get_default_dtype(),
            threads=torch.get_num_threads(),
            grad_enabled=torch.is_grad_enabled(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            cudnn_tf32=torch.backends.cudnn.allow_tf32,
            matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
            anomaly=torch.is_anomaly_enabled(),
            cpu_rng=torch.get_rng_state(),
            cuda_rng=cuda,
        )

    def restore(self) -> list[str]:
        """Put every setting back; the names of those the check had changed."""
        import torch

        now = TorchState.capture()
        changed = [name for name in ("default_dtype", "threads", "grad_enabled", "deterministic",
                                     "deterministic_warn_only", "cudnn_benchmark",
                                     "cudnn_deterministic", "cudnn_tf32", "matmul_tf32",
                                     "anomaly")
                   if getattr(now, name) != getattr(self, name)]
        torch.set_default_dtype(self.default_dtype)
        torch.set_num_threads(self.threads)
        torch.set_grad_enabled(self.grad_enabled)
        if {"deterministic", "deterministic_warn_only"} & set(changed):  # 2 ms a call: only then
            torch.use_deterministic_algorithms(self.deterministic,
                                               warn_only=self.deterministic_warn_only)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.allow_tf32 = self.cudnn_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.matmul_tf32
        torch.autograd.set_detect_anomaly(self.anomaly)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng:
            torch.cuda.set_rng_state_all(list(self.cuda_rng))
        return changed


@contextlib.contextmanager
def deadline(
    seconds: float, *, on_stuck: Callable[[], Any] | None = None, grace_s: float = 30.0
) -> Iterator[None]:
    """Raise CheckTimeout in this (main) thread after ``seconds``; if the code is still stuck
    ``grace_s`` later, call ``on_stuck`` from a watchdog thread. No-op for seconds <= 0 or off
    the main thread (where signals cannot be delivered)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CheckTimeout(f"timeout: the check ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    finished = threading.Event()
    watchdog = None
    if on_stuck is not None:
        def watch() -> None:
            if not finished.wait(seconds + grace_s):
                on_stuck()

        watchdog = threading.Thread(target=watch, daemon=True, name="seq-harness-watchdog")
        watchdog.start()
    try:
        yield
    finally:
        finished.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Strikes:
    """Timeouts and crashes per implementation, shared by every process of a run through an
    append-only file in the results directory (worker processes come and go; the count must
    not restart with them). Without a directory, counted in this process only."""

    FILE = "strikes.jsonl"

    def __init__(self, directory: Path | None) -> None:
        self.path = None if directory is None else directory / self.FILE
        self._seen_size = -1
        self._events: list[tuple[str, str]] = []

    def add(self, impl: str, kind: str) -> None:
        if self.path is None:
            self._events.append((impl, kind))
            return
        line = json.dumps({"impl": impl, "kind": kind}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write: lines from several processes never mix
        finally:
            os.close(fd)

    def events(self) -> list[tuple[str, str]]:
        if self.path is None:
            return self._events
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size != self._seen_size:  # reread only when another process added a strike
            lines = self.path.read_text().splitlines()
            self._events = [(d["impl"], d["kind"]) for d in map(json.loads, lines) if d]
            self._seen_size = size
        return self._events

    def count(self, impl: str) -> int:
        return sum(1 for name, _ in self.events() if name == impl)

    def describe(self, impl: str) -> str:
        kinds = [kind for name, kind in self.events() if name == impl]
        return ", ".join(f"{kinds.count(k)} {k}{'es' if k == 'crash' else 's'}"
                         for k in ("timeout", "crash") if k in kinds)


LEFT_OUT = "left out: the run's time budget was spent before this check started"


def left_out(stop_at: float | None) -> str | None:
    """Why a check is not started (``--stop-at``, a wall-clock time: worker processes share
    it), or None."""
    return LEFT_OUT if stop_at is not None and time.time() >= stop_at else None
