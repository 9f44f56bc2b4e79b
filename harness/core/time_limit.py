"""A time limit on a part of a check — its diagnosis, one shrinking step — that keeps the
check's own deadline (harness.conformance.isolation.deadline, a SIGALRM timer) running: an
implementation that hangs on a smaller or transformed case ends that part, not the check,
whose failure was found already."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator


class PartTimeout(BaseException):
    """A part of a check ran past its own limit (a BaseException, as CheckTimeout: an
    implementation's ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Raise PartTimeout in this (main) thread after ``seconds`` — unless the enclosing
    deadline's timer is due first, which then fires as it would have; that timer runs on
    afterwards with what it had left. No limit for seconds <= 0 or off the main thread
    (where signals cannot be delivered)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer_left and outer_left <= seconds:
        yield
        return

    def expire(signum, frame):
        raise PartTimeout(f"did not return within {seconds:g} s")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:  # the check's deadline, less the time this part took (due now: soon)
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))
