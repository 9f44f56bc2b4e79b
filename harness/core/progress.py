"""Done of total, and when the rest will be done: the progress line of long runs (the suites'
checks, the benchmarks' timings), printed every so often rather than on every item."""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """'1h02m', '3m05s', '42s'."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Counts items done out of ``total`` and says, at most every ``every_s`` seconds (and at
    the end), how many, how long it took so far and an ETA from the average rate."""

    def __init__(self, total: int, what: str, *, every_s: float = 20.0,
                 emit: Callable[[str], None] = print, clock=time.monotonic,
                 share_left: Callable[[], float | None] | None = None) -> None:
        """``share_left``: where items differ in cost, the share of the work still to do as the
        caller knows it (None: not known yet); by default, the share of the items."""
        self.total, self.what, self.every_s = total, what, every_s
        self.emit, self.clock, self.share_left = emit, clock, share_left
        self.done = 0
        self.started = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.started
        share = self.done / self.total if self.total else 1.0
        left_share = (self.share_left() if self.share_left is not None
                      else 1.0 - share if self.done else None)
        eta = (elapsed / (1.0 - left_share) * left_share
               if left_share is not None and left_share < 1.0 else None)
        left = "done" if self.done >= self.total else (
            f"ETA {duration(eta)}" if eta is not None else "ETA unknown")
        return (f"seq-harness: {self.done}/{self.total} {self.what} ({share:.0%}), "
                f"{duration(elapsed)} elapsed, {left}")

    def step(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            self.emit(self.line())
