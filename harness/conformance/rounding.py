"""How much a case's answer moves under rounding alone: the scale value checks are judged on.

A fixed atol is right for a well-conditioned case and wrong for an ill-conditioned one: with
saturated gates or an unbounded (ReLU) recurrence the exact answer is 1e6 and torch's own float32
module is 0.4 away from its float64 twin, so two correct float32 implementations summing in
different orders disagree by as much. The case itself says how sensitive it is: the reference
computed in float32 and in float64, with the same weights and inputs, differ by the case's
*rounding*. A value check then holds an implementation to

    max(the family's atol, K x the case's rounding)

(``conditioned``): a well-conditioned case keeps the family's atol (its rounding is far below
it), an ill-conditioned one is judged on its own scale. The same rounding also judges precision
on its own (``precision_verdict``): a correct float32 implementation is about as far from the
float64 answer as the float32 reference is; one that is many times farther (a log-space scan over
thousands of steps, sqrt(1 - a²) cancelling near a = 1, a tanh written as 1 - 2 / (1 + e^2x))
loses precision the maths does not, whatever atol would have let through.

For a float64 case the float64 reference is the answer, and the rounding is the float32
reference's distance to it scaled by float64's unit roundoff over float32's (first-order error
analysis: rounding errors grow with the unit roundoff); half precisions are measured directly
against float64. One sample of a rounding is a random draw: an ill-conditioned case amplifies
whichever errors float32 happened to make, so the rounding is taken as the largest over the
case's own point and three nearby ones (inputs and weights nudged by a few float32 units, each
against its own float64 twin).

K: measured on this kit's correct implementations — every float32 registry entry and the plain
loops of every family in another summation order (tests/plain_loops.py) — at the precision
checks' stresses over 20 seeds: the largest distance to the float64 answer was 8.0 roundings
(onnxruntime-gru at saturated gates; the plain loops 6.5), and over every value check of every
suite with ``--rounding always``, 2.8 where the rounding decided (docs/verdicts.md has the
figures and commands). K = 16
leaves a factor of two above that; the least precise mutant in tests/mutants sits at 57.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.core.contract import Twin

K = 16.0  # the multiple of a case's rounding a correct implementation stays within

# Where a comparison's bound came from (Record.metrics["tolerance_source"]).
ROUNDING = "the case's rounding"


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


@dataclass(frozen=True)
class Rounding:
    """How far rounding alone moves the reference's answer on one tensor, in the case's dtype.

    error: the largest |low - high| over the tensor and over every sample (the reference in
        the case's dtype against its twin in the other precision, at the case's point and at
        nearby ones: harness.core.contract.Twin), scaled to the case's dtype (float64 cases:
        the float32 twin's distance times float64's unit roundoff over float32's).
    scale: the largest |value| of the higher-precision answer (for a floor of one unit in the
        last place where the rounding is exactly 0).
    dtype: the case's dtype name.
    """

    error: float
    scale: float
    dtype: str

    @classmethod
    def over(cls, pairs: list[tuple[Tensor, Tensor]]) -> Rounding:
        """The rounding of the first pair's first tensor (the reference in the case's dtype),
        measured over every (case's dtype, other precision) pair."""
        expected = pairs[0][0]
        error, scale = 0.0, 0.0
        for mine, twin in pairs:
            low, high = (twin, mine) if mine.dtype == torch.float64 else (mine, twin)
            a = low.detach().to("cpu", torch.float64)
            b = high.detach().to("cpu", torch.float64)
            if not bool((torch.isfinite(a) & torch.isfinite(b)).all()):
                error = math.inf  # the reference itself over- or underflows: no scale to judge on
            elif a.numel():
                error = max(error, float((a - b).abs().max()))
            factor = unit_roundoff(expected.dtype) / unit_roundoff(low.dtype)
            magnitude = b[torch.isfinite(b)].abs()
            if magnitude.numel() and scale == 0.0:
                scale = float(magnitude.max())
        return cls(error * factor, scale, str(expected.dtype).removeprefix("torch."))

    @property
    def floor(self) -> float:
        """One unit in the last place of the largest value, in the case's dtype: what a
        rounding of exactly 0 still allows."""
        return 2 * unit_roundoff(getattr(torch, self.dtype)) * self.scale

    @property
    def unit(self) -> float:
        """The rounding, at least the floor: the unit errors are counted in."""
        return max(self.error, self.floor)

    @property
    def bound(self) -> float:
        """K units of rounding: how far a correct implementation may be."""
        return K * self.unit

    def __str__(self) -> str:
        return f"{self.unit:.3g}"


def rounding_of(name: str, expected: Tensor, twin: Twin) -> tuple[Rounding, Tensor]:
    """The rounding of the reference's tensor ``name`` (``expected``, in the case's dtype) and
    the float64 answer for it."""
    rounding = Rounding.over(twin.pairs(name, expected))
    exact = expected if expected.dtype == torch.float64 else twin.outputs.named()[name]
    return rounding, exact


def rounding_over(expected: Tensor, pairs: list[tuple[Tensor, Tensor]]) -> tuple[Rounding, Tensor]:
    """The rounding of ``expected`` from (case's dtype, other precision) pairs whose first one
    is at the case's point, and the float64 answer for it."""
    rounding = Rounding.over([(expected, pairs[0][1]), *pairs[1:]])
    exact = expected if expected.dtype == torch.float64 else pairs[0][1]
    return rounding, exact


Measured = Callable[[], tuple[Rounding, Tensor]]  # (the rounding, the float64 answer), on demand
