"""Leaving a process at once, its work done.

A Python process with torch loaded spends about half a second in the interpreter's teardown
(every module's objects freed one by one) after its last line has run. The ``seq-harness``
command and the workers that run its checks have written, closed and flushed everything by then,
so they leave without it: half a second of every verdict, and of every run's wait for its
workers.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a reader that left
            stream.flush()


def leave(code: int) -> NoReturn:
    """Flush stdout and stderr and end the process with ``code`` now, skipping atexit handlers
    and the teardown (a check worker, whose records are closed and reports sent)."""
    flush()
    os._exit(code)


def finish(code: int) -> int:
    """End the command's process with ``code`` after what an exit must still do — the atexit
    handlers (temporary directories, ...) and flushing stdout and stderr — but without the
    teardown. Where a non-daemon thread is still running (the interpreter's own exit waits for
    it), or a profiler, coverage or a debugger is watching (each writes its results at the
    normal exit), ``code`` is returned for a normal exit instead."""
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if others or sys.gettrace() is not None or sys.getprofile() is not None:
        return code
    atexit._run_exitfuncs()
    leave(code)
