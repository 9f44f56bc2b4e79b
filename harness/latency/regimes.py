"""Regimes: which kind of shape a timing belongs to, so that a verdict says where it holds.

An implementation can be faster at one shape and slower at another (a parallel scan beats a loop
on long sequences and loses at T=100; a fused kernel wins at B=1 and ties at B=64). A geometric
mean over every shape a run timed answers none of a reader's questions, so the verdict speaks per
regime: the standard shape at B=64 and at B=1, variable-length batches (packed, and the same
batches padded), long sequences, DeepBench's shapes, and whatever else was timed. A timing's
regime comes from the built-in latency grid its shape belongs to; a shape of no built-in grid
(a grid file of the user's) is in "other shapes".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from harness.core.case import Case
from harness.core.op_case import OpCase, case_from_dict
from harness.latency.grids import LATENCY_GRIDS


@dataclass(frozen=True)
class Regime:
    """name: a stable id (ordering, tables); label: how the report says it."""

    name: str
    label: str
    order: int


def span(values) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def shapes(cases) -> str:
    """T=256–16384, B=2, H=64: the ranges a set of shapes covers."""
    return (f"T={span([c.seq_len for c in cases])}, B={span([c.rows for c in cases])}, "
            f"H={span([c.hidden_size for c in cases])}")


@functools.cache
def known() -> dict[str, Regime]:
    """case id -> regime, for every shape of the built-in grids."""
    found: dict[str, Regime] = {}

    def add(cases, regime: Regime) -> None:
        for case in cases:
            found.setdefault(case.id, regime)

    for case in LATENCY_GRIDS["standard"].cases:
        add([case], Regime(f"standard-b{case.rows}", f"T={case.seq_len}, B={case.rows}, "
                           f"I=H={case.hidden_size}", 0 if case.rows > 1 else 1))
    varlen = [c for g in ("varlen-small", "varlen") for c in LATENCY_GRIDS[g].cases]
    packed = [c for c in varlen if c.lengths is not None]
    add(packed, Regime("varlen", f"variable lengths, packed ({shapes(packed)})", 2))
    padded = [c for c in varlen if c.lengths is None]
    add(padded, Regime("varlen-padded", f"the same batches padded ({shapes(padded)})", 3))
    long = LATENCY_GRIDS["long"].cases
    add(long, Regime("long", f"long sequences ({shapes(long)})", 4))
    deep = LATENCY_GRIDS["deepbench"].cases
    add(deep, Regime("deepbench", f"DeepBench shapes ({shapes(deep)})", 5))
    ops = [c for g in ("ops-small", "ops-target", "ops") for c in LATENCY_GRIDS[g].cases]
    for order, length in enumerate(sorted({c.seq_len for c in ops})):
        same = [c for c in ops if c.seq_len == length]
        add(same, Regime(f"ops-T{length}", f"T={length} ({op_shapes(same)})", 10 + order))
    return found


def op_shapes(cases: list[OpCase]) -> str:
    return (f"B={span([c.batch for c in cases])}, H={span([c.heads for c in cases])}, "
            f"K=V={span([c.key_dim for c in cases])}")


OTHER = Regime("other", "other shapes", 9)


def regime_of(case: Case | dict | None) -> Regime:
    """The regime of a timed shape (a Case, or a record's case dict)."""
    if case is None:
        return OTHER
    if isinstance(case, dict):
        case = case_from_dict(case)
    return known().get(case.with_(device="cpu", dtype="float32").id, OTHER)
