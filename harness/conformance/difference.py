"""Elementwise comparison of two tensors against a tolerance: the primitive every check uses.

A Tolerance is |actual - expected| <= atol + rtol |expected|; ``difference`` compares in float64
on the CPU and says by how much and where the bound was exceeded; NaN is an infinite error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.core.case import Case
from harness.core.families import DEFAULT_TOLERANCES, Family


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= atol + rtol * |expected|, elementwise."""

    atol: float
    rtol: float = 0.0

    @classmethod
    def for_case(cls, case: Case, family: Family | None = None) -> Tolerance:
        """The family's tolerance for the case's dtype (by default float32 1e-5 and float64
        1e-10 at the small sizes of the conformance grids; half precisions 1e-2); CUDA float32
        is held to at least torch's own CPU-vs-cuDNN tolerance, 5e-5."""
        atol, rtol = (family.tolerance(case.dtype) if family is not None
                      else DEFAULT_TOLERANCES[case.dtype])
        if case.device != "cpu" and case.dtype == "float32":
            atol = max(atol, 5e-5)
        return cls(atol, rtol)

    def scaled(self, *, rtol: float) -> Tolerance:
        return Tolerance(self.atol, rtol)

    def __str__(self) -> str:
        return f"atol {self.atol:g}" + (f" + rtol {self.rtol:g}" if self.rtol else "")


@dataclass(frozen=True)
class Difference:
    """The outcome of one elementwise comparison."""

    max_abs_error: float
    worst_excess: float  # max of |a - e| - (atol + rtol |e|); > 0 means out of tolerance
    first_bad: tuple[int, ...] | None

    @property
    def ok(self) -> bool:
        return self.worst_excess <= 0


def difference(actual: Tensor, expected: Tensor, tol: Tolerance) -> Difference:
    """Compare two tensors of the same shape in float64 on the CPU. NaN is an infinite error
    wherever it appears (even against NaN: a property check comparing an implementation with
    itself must not pass on NaN); inf counts as equal only to the same inf."""
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    error = (a - e).abs()
    error = torch.where(a == e, torch.zeros_like(error), error)  # inf - inf would be nan
    error = torch.nan_to_num(error, nan=math.inf, posinf=math.inf)
    excess = error - (tol.atol + tol.rtol * e.abs().nan_to_num(posinf=0.0, neginf=0.0))
    if error.numel() == 0:
        return Difference(0.0, -math.inf, None)
    bad = (excess > 0).nonzero()
    first = tuple(int(i) for i in bad[0]) if len(bad) else None
    return Difference(float(error.max()), float(excess.max()), first)


def distance(actual: Tensor, exact: Tensor) -> float:
    """The largest |actual - exact|, NaN counted as infinite."""
    gap = actual.detach().cpu().double() - exact.detach().cpu().double()
    return float(gap.abs().nan_to_num(nan=math.inf).max()) if gap.numel() else 0.0
