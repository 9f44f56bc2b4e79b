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


def describe(name: str, cases) -> str:
    """How the report says the regime ``name`` over ``cases`` (its shapes a run timed, or all of
    them): a run of the small varlen grid is not said to cover the full grid's T=200."""
    cases = list(cases)
    if name.startswith("standard-b"):
        case = cases[0]
        return f"T={case.seq_len}, B={case.rows}, I=H={case.hidden_size}"
    if name.startswith("ops-T"):
        return f"T={cases[0].seq_len} ({op_shapes(cases)})"
    prefix = {"varlen": "variable lengths, packed", "varlen-padded": "the same batches padded",
              "long": "long sequences", "deepbench": "DeepBench shapes"}[name]
    return f"{prefix} ({shapes(cases)})"


@functools.cache
def known() -> dict[str, Regime]:
    """case id -> regime, for every shape of the built-in grids."""
    found: dict[str, Regime] = {}

    def add(cases, name: str, order: int) -> None:
        regime = Regime(name, describe(name, cases), order)
        for case in cases:
            found.setdefault(case.id, regime)

    for case in LATENCY_GRIDS["standard"].cases:
        add([case], f"standard-b{case.rows}", 0 if case.rows > 1 else 1)
    varlen = [c for g in ("varlen-small", "varlen") for c in LATENCY_GRIDS[g].cases]
    add([c for c in varlen if c.lengths is not None], "varlen", 2)
    add([c for c in varlen if c.lengths is None], "varlen-padded", 3)
    add(LATENCY_GRIDS["long"].cases, "long", 4)
    add(LATENCY_GRIDS["deepbench"].cases, "deepbench", 5)
    ops = [c for g in ("ops-small", "ops-target", "ops") for c in LATENCY_GRIDS[g].cases]
    for order, length in enumerate(sorted({c.seq_len for c in ops})):
        add([c for c in ops if c.seq_len == length], f"ops-T{length}", 10 + order)
    return found


def said_of(timed) -> dict[str, Regime]:
    """case id -> regime for the shapes (Cases or case dicts) a run timed, each regime's label
    naming the shapes of it that were timed, not every shape of its grids."""
    cases = {}
    for case in timed:
        case = case_from_dict(case) if isinstance(case, dict) else case
        cases[case.id] = case
    regimes = {case_id: regime_of(case) for case_id, case in cases.items()}
    members: dict[Regime, list] = {}
    for case_id, regime in regimes.items():
        members.setdefault(regime, []).append(cases[case_id])
    relabelled = {regime: regime if regime == OTHER else
                  Regime(regime.name, describe(regime.name, found), regime.order)
                  for regime, found in members.items()}
    return {case_id: relabelled[regime] for case_id, regime in regimes.items()}


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
