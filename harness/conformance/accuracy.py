"""How far from the reference: error figures that answer "how far from float", not only whether a
bound held.

A verdict against a tolerance says pass or fail; choosing between an int8, a compiled and an
exported model needs the distance itself. For every comparison of a quantity (outputs and final
states against the reference; gradients apart), a check pools:

- max_abs: the largest absolute error;
- rel_rms: the relative RMS error, ||reference - implementation||_2 / ||reference||_2 over every
  value compared (0 when both are zero; inf when only the reference is);
- p99_abs: the 99th percentile of the absolute errors (what most values are within);
- values: how many values were compared;
- error_sq, reference_sq: the sums of squares behind rel_rms, so that figures of several checks
  pool exactly (``pooled``; their p99 pools as the largest of the checks').

NaN counts as an infinite error, as in the verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from harness.conformance.figures import relative

FIGURES = ("max_abs", "rel_rms", "p99_abs")


def abs_errors(actual: Tensor, expected: Tensor) -> Tensor:
    """|actual - expected| in float64 on the CPU, flat; NaN and a differing inf are inf."""
    a = actual.detach().to("cpu", torch.float64).flatten()
    e = expected.detach().to("cpu", torch.float64).flatten()
    error = torch.where(a == e, torch.zeros_like(a), (a - e).abs())
    return torch.nan_to_num(error, nan=math.inf, posinf=math.inf)


def percentile(values: Tensor, q: float) -> float:
    """The q-th percentile (nearest rank) of a flat tensor; 0 for none."""
    if values.numel() == 0:
        return 0.0
    rank = max(1, math.ceil(q / 100 * values.numel()))
    return float(values.kthvalue(rank).values)


@dataclass
class ErrorPool:
    """Every absolute error of one quantity in one check, and the reference's squared norm."""

    errors: list[Tensor] = field(default_factory=list)
    reference_sq: float = 0.0

    def add(self, actual: Tensor, expected: Tensor) -> None:
        self.errors.append(abs_errors(actual, expected))
        finite = expected.detach().to("cpu", torch.float64).nan_to_num(posinf=0.0, neginf=0.0)
        self.reference_sq += float((finite * finite).sum())

    def figures(self) -> dict[str, float | int]:
        errors = torch.cat(self.errors) if self.errors else torch.zeros(0, dtype=torch.float64)
        error_sq = float((errors * errors).sum())
        return {"max_abs": float(errors.max()) if errors.numel() else 0.0,
                "rel_rms": relative(error_sq, self.reference_sq),
                "p99_abs": percentile(errors, 99), "values": int(errors.numel()),
                "error_sq": error_sq, "reference_sq": self.reference_sq}


def figures_of(actual: Tensor, expected: Tensor) -> dict[str, float | int]:
    """The error figures of one comparison."""
    pool = ErrorPool()
    pool.add(actual, expected)
    return pool.figures()
