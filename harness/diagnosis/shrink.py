"""The smallest failing case: greedy steps from a failing case towards fewer steps, sequences,
features, layers and options, each kept while the implementation still claims the case and
still fails it — and the case said in words for a reader."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.spec import ImplSpec
from harness.core.time_limit import PartTimeout, bounded

BUDGET_S = 10.0  # seconds one diagnosis may spend shrinking before it settles


def describe(case: Case | OpCase) -> str:
    """The case in words: 'T=1, B=1, I=1, H=1, one layer, no bias' (an op's: 'T=3, B=1,
    heads=1, K=1, V=2')."""
    if isinstance(case, OpCase):
        return describe_op(case)
    parts = [f"T={case.seq_len}", "unbatched" if case.unbatched else f"B={case.batch}",
             f"I={case.input_size}", f"H={case.hidden_size}"]
    if case.proj_size:
        parts.append(f"proj_size={case.proj_size}")
    parts.append("one layer" if case.num_layers == 1 else f"{case.num_layers} layers")
    if case.bidirectional:
        parts.append("bidirectional")
    if case.batch_first:
        parts.append("batch_first")
    parts.append("bias" if case.bias else "no bias")
    if case.lengths is not None:
        parts.append("lengths " + ", ".join(map(str, case.lengths)))
    if case.dtype != "float32":
        parts.append(case.dtype)
    return ", ".join(parts)


def describe_op(case: OpCase) -> str:
    parts = [f"T={case.seq_len}", f"B={case.batch}", f"heads={case.heads}", f"K={case.key_dim}",
             f"V={case.value_dim}"]
    if case.lengths is not None:
        parts.append("cu_seqlens lengths " + ", ".join(map(str, case.lengths)))
    if case.with_state:
        parts.append("initial state")
    if case.chunk_size:
        parts.append(f"chunk_size={case.chunk_size}")
    if case.stress:
        parts.append(f"gates {case.stress}")
    if case.dtype != "float32":
        parts.append(case.dtype)
    return ", ".join(parts)


def fewer(n: int) -> set[int]:
    """Smaller counts to try for ``n``: 1, 2, half, three quarters, and n - 1 while n is small
    (at thousands of steps, one step less is not worth a probe)."""
    found = {1, 2, n // 2, 3 * n // 4} | ({n - 1} if n <= 16 else set())
    return {m for m in found if 0 < m < n}


def smaller(case: Case) -> Iterator[Case]:
    """Candidate cases one step smaller than ``case``, the boldest first."""
    changes: list[dict] = []
    if case.num_layers > 1:
        changes.append({"num_layers": 1})
    if case.bidirectional:
        changes.append({"bidirectional": False})
    if case.lengths is not None:
        changes.append({"lengths": None})
    if case.batch_first:
        changes.append({"batch_first": False})
    if case.proj_size:
        changes.append({"proj_size": 0})
    if case.bias:
        changes.append({"bias": False})
    if case.dropout:
        changes.append({"dropout": 0.0})
    if case.batch is not None and case.batch > 1:
        for batch in sorted(fewer(case.batch)):
            lengths = None if case.lengths is None else case.lengths[:batch]
            changes.append({"batch": batch, "lengths": lengths})
    if case.seq_len > 1:
        for steps in sorted(fewer(case.seq_len)):
            lengths = None if case.lengths is None else tuple(min(n, steps)
                                                              for n in case.lengths)
            changes.append({"seq_len": steps, "lengths": lengths})
    for name in ("input_size", "hidden_size"):
        size = getattr(case, name)
        for smaller_size in sorted(fewer(size)):
            if smaller_size < size:
                extra = {}
                if name == "hidden_size" and case.proj_size >= smaller_size:
                    extra = {"proj_size": max(0, smaller_size - 1)}
                changes.append({name: smaller_size, **extra})
    for change in changes:
        try:
            yield case.with_(**change)
        except ValueError:
            continue


def shrink(spec: ImplSpec, case: Case, still_fails: Callable[[Case], bool],
           budget_s: float = BUDGET_S) -> Case:
    """The smallest case reachable from ``case`` by greedy steps (``smaller``) that the
    implementation still claims and still fails."""
    family, started = spec.family_def, time.monotonic()
    current, moved = case, True
    while moved and time.monotonic() - started < budget_s:
        moved = False
        for candidate in smaller(current):
            candidate = family.adapt(candidate)
            if candidate == current or spec.why_not(candidate) is not None:
                continue
            fails = within(budget_s - (time.monotonic() - started), still_fails, candidate)
            if fails is None:  # out of time, or a candidate that did not return within it
                return current
            if fails:
                current, moved = candidate, True
                break
    return current


def within(seconds: float, still_fails: Callable, candidate) -> bool | None:
    """Whether ``candidate`` still fails, or None when that took more than ``seconds`` (an
    implementation that hangs on a smaller case ends the shrinking there, not the check)."""
    if seconds <= 0:
        return None
    try:
        with bounded(seconds):
            return bool(still_fails(candidate))
    except PartTimeout:
        return None
