"""What torch.compile did during a call: graphs captured, frames compiled, graph breaks.

``torch.compile`` never fails loudly when it cannot compile: dynamo skips what it cannot trace
(torch.nn.RNN, LSTM and GRU by default) and runs it eagerly, so a "compiled" model can be plain
eager code with a compile wrapper around it. The only evidence is in dynamo's process-wide
counters, read here as differences around a call. torch._dynamo is imported only by code that
compiles: when it is not loaded, nothing was compiled, and reading the counters costs nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class CompileCounts:
    """dynamo's counters (or their growth during a call).

    graphs: unique graphs captured (0: everything ran eagerly).
    frames: Python frames dynamo looked at.
    breaks: graph breaks (places dynamo gave up and ran Python eagerly).
    first_break: the first line of the first graph break's reason, if any.
    """

    graphs: int = 0
    frames: int = 0
    breaks: int = 0
    first_break: str = ""
    reasons: tuple[tuple[str, int], ...] = ()  # every break reason (first line) and its count

    def __sub__(self, before: CompileCounts) -> CompileCounts:
        earlier = dict(before.reasons)
        grown = [(r, n - earlier.get(r, 0)) for r, n in self.reasons if n > earlier.get(r, 0)]
        return CompileCounts(self.graphs - before.graphs, self.frames - before.frames,
                             self.breaks - before.breaks, grown[0][0] if grown else "",
                             tuple(grown))

    def describe(self) -> str:
        text = (f"{self.graphs} graph{'s' if self.graphs != 1 else ''} captured, "
                f"{self.frames} frame{'s' if self.frames != 1 else ''} seen, "
                f"{self.breaks} graph break{'s' if self.breaks != 1 else ''}")
        return text + (f" (first: {self.first_break})" if self.first_break else "")


def counts() -> CompileCounts:
    """dynamo's counters now (zeros when torch._dynamo was never imported)."""
    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return CompileCounts()
    counters = utils.counters
    reasons: dict[str, int] = {}
    for reason, n in counters.get("graph_break", {}).items():
        line = (str(reason).strip().splitlines() or [""])[0]
        reasons[line] = reasons.get(line, 0) + int(n)
    return CompileCounts(
        graphs=int(counters.get("stats", {}).get("unique_graphs", 0)),
        frames=int(counters.get("frames", {}).get("total", 0)),
        breaks=sum(reasons.values()),
        first_break=next(iter(reasons), ""),
        reasons=tuple(reasons.items()),
    )


def during(call: Callable[[], T]) -> tuple[T, CompileCounts]:
    """Run ``call``; its result and what dynamo compiled while it ran."""
    before = counts()
    result = call()
    return result, counts() - before
