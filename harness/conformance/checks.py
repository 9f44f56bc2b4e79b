"""Assertions the suites make, each one measured: how far off, against which tolerance.

A Check is handed to every suite test. Each comparison it makes keeps the largest absolute error
it saw and the tolerance it was held to, so the record of the check says not only pass or fail but
by how much. A failed comparison raises CheckFailed with a message that names the tensor, the
error, the tolerance and the first index where it was exceeded.

Comparisons of a named quantity (``measure="output"`` for outputs and final states against the
reference, ``"gradient"`` for gradients) also pool their errors into the figures of
harness.conformance.accuracy (max abs, relative RMS, 99th percentile), kept apart by quantity.

Every comparison also counts the values it compared. A check that ends having compared nothing
(an empty mask, a zero-size tensor, a case whose lengths leave no padded step) has not passed:
the plugin records it as *not supported*, naming what was empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.conformance.accuracy import ErrorPool
from harness.core.case import Case
from harness.core.contract import Outputs
from harness.core.families import DEFAULT_TOLERANCES, Family


class CheckFailed(AssertionError):
    """A conformance check found a difference from the expected behaviour."""


class NotSupported(Exception):
    """Raised inside a check when the case is outside what the implementation claims."""


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


class Check:
    """The measuring assertions of one suite test; the plugin records what it saw.

    tolerance: what value comparisons are held to by default (the family's, or the one the
        implementation declares; ``source`` says which).
    tolerances: the bounds of other quantities by name (harness.conformance.tolerance):
        ``strict`` for exact properties, ``gradient``, ``large``; each defaults to ``tolerance``.
    """

    def __init__(self, tolerance: Tolerance, *, reference_name: str = "reference",
                 tolerances: Mapping[str, Tolerance] | None = None,
                 source: str = "family default") -> None:
        self.tolerance = tolerance
        self.tolerances = dict(tolerances or {})
        self.source = source
        self.pools: dict[str, ErrorPool] = {}  # measured quantity -> its errors
        self.reference_name = reference_name
        self.max_error: float | None = None  # the largest absolute error compared
        self.tolerance_used: Tolerance | None = None
        self.notes: list[str] = []
        self.metrics: dict[str, object] = {}  # figures a check measures (kept in its record)
        self.compared = 0  # values compared so far; 0 at the end means nothing was checked
        self.empty: list[str] = []  # comparisons that had no values to compare

    def tolerance_of(self, quantity: str) -> Tolerance:
        """The bound of a quantity: strict, gradient, large (see the class docstring)."""
        return self.tolerances.get(quantity, self.tolerance)

    @property
    def strict(self) -> Tolerance:
        """The bound of exact properties: the family default, never loosened."""
        return self.tolerance_of("strict")

    def error_figures(self) -> dict[str, dict[str, float | int]]:
        """Per measured quantity: max abs, relative RMS and p99 errors over every value."""
        return {name: pool.figures() for name, pool in self.pools.items()}

    def count(self, what: str, values: int) -> None:
        """Count values compared by something other than this class's methods (e.g. the
        Jacobian entries torch.autograd.gradcheck compared)."""
        self.compared += values
        if values == 0:
            self.empty.append(what)

    @property
    def vacuous_reason(self) -> str | None:
        """Why a check that passed compared nothing (None when it compared something)."""
        if self.compared:
            return None
        if self.empty:
            return "compared nothing: " + "; ".join(f"{w} has no values" for w in self.empty)
        return "compared nothing: the check made no comparison"

    def _measure(self, diff: Difference, tol: Tolerance) -> None:
        if self.max_error is None or diff.max_abs_error > self.max_error:
            self.max_error = diff.max_abs_error
            self.tolerance_used = tol
        elif self.tolerance_used is None:
            self.tolerance_used = tol

    def note(self, text: str) -> None:
        """A figure worth keeping in the record (e.g. how wrong the naive answer is)."""
        self.notes.append(text)

    def not_supported(self, why: str) -> None:
        raise NotSupported(why)

    def fail(self, message: str) -> None:
        raise CheckFailed(message)

    # Comparisons -----------------------------------------------------------------------------

    def close(
        self, what: str, actual: Tensor, expected: Tensor, tol: Tolerance | None = None, *,
        measure: str | None = None,
    ) -> Difference:
        """actual equals expected within the tolerance (the check's by default); ``measure``
        names the quantity whose error figures the comparison adds to."""
        tol = tol or self.tolerance
        if not isinstance(actual, Tensor):
            raise CheckFailed(f"{what} is a {type(actual).__name__}; expected a Tensor")
        if tuple(actual.shape) != tuple(expected.shape):
            raise CheckFailed(
                f"{what} has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}"
            )
        diff = difference(actual, expected, tol)
        self.count(what, expected.numel())
        self._measure(diff, tol)
        if measure is not None:
            self.pools.setdefault(measure, ErrorPool()).add(actual, expected)
        if not diff.ok:
            declared = f", {self.source}" if tol == self.tolerance and self.source != (
                "family default") else ""
            raise CheckFailed(
                f"{what} differs: max abs error {diff.max_abs_error:.3g} > {tol}{declared} "
                f"(first at index {list(diff.first_bad or ())})"
            )
        return diff

    def outputs_close(
        self, actual: Outputs, expected: Outputs, tol: Tolerance | None = None, *,
        against: str | None = None,
    ) -> None:
        """output, h_n (and c_n) all equal the expected ones; against the reference (no
        ``against``), their errors are measured as the ``output`` quantity."""
        who = against or self.reference_name
        measure = "output" if against is None else None
        for name, want in expected.named().items():
            got = actual.named().get(name)
            if got is None:
                raise CheckFailed(f"{name} is missing (expected as {who} returns it)")
            self.close(f"{name} (vs {who})", got, want, tol, measure=measure)

    def measure(self, what: str, actual: Tensor, expected: Tensor, *, measure: str) -> None:
        """Measure how far actual is from expected (the quantity's error figures) without
        holding it to a bound: a measurement, not a verdict."""
        if tuple(actual.shape) != tuple(expected.shape):
            raise CheckFailed(
                f"{what} has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}"
            )
        self.count(what, expected.numel())
        self.pools.setdefault(measure, ErrorPool()).add(actual, expected)

    def differs(self, what: str, a: Tensor, b: Tensor, *, at_least: float | None = None) -> float:
        """a and b differ somewhere by more than ``at_least`` (default 100x the strict
        tolerance: a and b both come from the implementation, so a declared tolerance does not
        make a real difference smaller); returns the largest difference."""
        threshold = at_least if at_least is not None else 100 * self.strict.atol
        self.count(what, a.numel())
        if a.numel() == 0:
            raise NotSupported(f"compared nothing: {what} has no values")
        gap = float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())
        if not gap > threshold:
            raise CheckFailed(f"{what}: largest difference {gap:.3g} is not above {threshold:g}")
        return gap

    def shape(self, what: str, tensor: object, expected: tuple[int, ...]) -> None:
        if not isinstance(tensor, Tensor):
            raise CheckFailed(f"{what} is a {type(tensor).__name__}; expected a Tensor")
        self.count(f"shape of {what}", len(expected) + 1)  # every dimension, and the rank
        if tuple(tensor.shape) != tuple(expected):
            raise CheckFailed(f"{what} has shape {tuple(tensor.shape)}; expected {expected}")

    def holds(self, what: str, condition: bool, failure: str) -> None:
        """One property of one value holds (counted as one compared value); CheckFailed with
        ``failure`` when it does not."""
        self.count(what, 1)
        if not condition:
            raise CheckFailed(failure)

    def finite(self, what: str, tensor: Tensor) -> None:
        self.count(what, tensor.numel())
        bad = (~torch.isfinite(tensor.detach())).nonzero()
        if len(bad):
            index = [int(i) for i in bad[0]]
            raise CheckFailed(
                f"{what} has {len(bad)} non-finite values (first at index {index}: "
                f"{float(tensor.detach()[tuple(index)])})"
            )

    def raises_like(self, what: str, reference: Callable[[], object],
                    implementation: Callable[[], object]) -> str:
        """The implementation raises what the reference raises (an instance of the same
        exception type) rather than returning a silent answer; returns the reference's type."""
        try:
            reference()
        except Exception as expected:
            kind = type(expected)
        else:
            raise RuntimeError(f"{what}: the reference accepted this input; nothing to compare")
        self.count(what, 1)
        try:
            implementation()
        except kind:
            return kind.__name__
        except Exception as other:
            raise CheckFailed(
                f"{what}: raised {type(other).__name__} ({other}); torch raises {kind.__name__}"
            ) from other
        raise CheckFailed(f"{what}: returned a result; torch raises {kind.__name__}")
