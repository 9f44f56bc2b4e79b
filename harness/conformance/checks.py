"""Assertions the suites make, each one measured: how far off, against which tolerance.

A Check is handed to every suite test. Each comparison it makes keeps the largest absolute error
it saw and the tolerance it was held to, so the record of the check says not only pass or fail but
by how much. A failed comparison raises CheckFailed with a message that names the tensor, the
error, the tolerance and the first index where it was exceeded.

Comparisons of a named quantity (``measure="output"`` for outputs and final states against the
reference, ``"gradient"`` for gradients) also pool their errors into the figures of
harness.conformance.accuracy (max abs, relative RMS, 99th percentile), kept apart by quantity.

A comparison with the reference is judged on the case's own scale as well: when the outputs
differ by more than the family's atol, the reference's twin in another precision says how far
the answer moves under rounding alone, and the bound becomes max(atol, K x that rounding)
(harness.conformance.rounding); the record keeps the rounding and which bound decided.

Every comparison also counts the values it compared. A check that ends having compared nothing
(an empty mask, a zero-size tensor, a case whose lengths leave no padded step) has not passed:
the plugin records it as *not supported*, naming what was empty.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from harness.conformance.accuracy import ErrorPool
from harness.conformance.difference import Difference, Tolerance, difference, distance
from harness.conformance.rounding import ROUNDING, K, Measured, Rounding, rounding_of
from harness.core.contract import Outputs
from harness.core.failed import CheckFailed


class NotSupported(Exception):
    """Raised inside a check when the case is outside what the implementation claims."""


def against_float64(actual: Tensor, exact: Tensor, rounding: Rounding) -> str:
    """Both errors against the float64 answer, in words: the implementation's, and the
    reference's own in the case's dtype (its rounding)."""
    return (f"against float64 this implementation is {distance(actual, exact):.3g} off, the "
            f"reference's own {rounding.dtype} rounding on this case is {rounding} (allowed: "
            f"the larger of the atol and {K:g} x that)")


class Check:
    """The measuring assertions of one suite test; the plugin records what it saw.

    tolerance: what value comparisons are held to by default (the family's, or the one the
        implementation declares; ``source`` says which).
    tolerances: the bounds of other quantities by name (harness.conformance.tolerance):
        ``strict`` for exact properties, ``gradient``, ``large``; each defaults to ``tolerance``.
    """

    def __init__(self, tolerance: Tolerance, *, reference_name: str = "reference",
                 tolerances: Mapping[str, Tolerance] | None = None,
                 source: str = "family default", always_rounding: bool = False) -> None:
        self.tolerance = tolerance
        self.tolerances = dict(tolerances or {})
        self.source = source
        self.always_rounding = always_rounding  # measure the rounding even where atol holds
        self.rounding: float | None = None  # the largest rounding measured (case's dtype)
        self.rounding_ratio: float | None = None  # largest error / rounding of one tensor
        self.atol_before: float | None = None  # the atol a measured rounding was weighed against
        self.source_used: str | None = None  # where the bound of the largest error came from
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

    def _measure(self, diff: Difference, tol: Tolerance, source: str | None = None) -> None:
        if self.max_error is None or diff.max_abs_error > self.max_error:
            self.max_error = diff.max_abs_error
            self.tolerance_used = tol
            self.source_used = source
        elif self.tolerance_used is None:
            self.tolerance_used = tol
            self.source_used = source

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
        measure: str | None = None, rounding: Measured | None = None,
    ) -> Difference:
        """actual equals expected within the tolerance (the check's by default); ``measure``
        names the quantity whose error figures the comparison adds to. ``rounding`` measures
        the case's rounding of ``expected`` (a reference): beyond the tolerance, the bound
        becomes max(atol, K x that rounding) (see the module docstring)."""
        tol = tol or self.tolerance
        if not isinstance(actual, Tensor):
            raise CheckFailed(f"{what} is a {type(actual).__name__}; expected a Tensor")
        if tuple(actual.shape) != tuple(expected.shape):
            raise CheckFailed(
                f"{what} has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}"
            )
        diff = difference(actual, expected, tol)
        self.count(what, expected.numel())
        if measure is not None:
            self.pools.setdefault(measure, ErrorPool()).add(actual, expected)
        found = None
        if rounding is not None and (self.always_rounding or not diff.ok):
            found, exact = rounding()
            self.rounding = max(self.rounding or 0.0, found.error)
            self.atol_before = max(self.atol_before or 0.0, tol.atol)
            ratio = diff.max_abs_error / max(found.unit, 1e-300)
            self.rounding_ratio = max(self.rounding_ratio or 0.0, ratio)
        if diff.ok or found is None or not found.bound > tol.atol:
            self._measure(diff, tol)
        else:  # the case's own rounding is the larger scale: judge on it
            widened = Tolerance(found.bound, tol.rtol)
            conditioned = difference(actual, expected, widened)
            if conditioned.ok:
                self._measure(conditioned, widened, ROUNDING)
                return conditioned
            self._measure(conditioned, widened, ROUNDING)
        if not diff.ok:
            declared = f", {self.source}" if tol == self.tolerance and self.source != (
                "family default") else ""
            raise CheckFailed(
                f"{what} differs: max abs error {diff.max_abs_error:.3g} > {tol}{declared} "
                f"(first at index {list(diff.first_bad or ())})"
                + ("" if found is None else "; " + against_float64(actual, exact, found))
            )
        return diff

    def precise(self, what: str, actual: Tensor, rounding: Rounding, exact: Tensor) -> float:
        """The implementation's distance to the float64 answer ``exact`` is at most K times the
        case's rounding (no atol floor: a precision loss shows at any magnitude); returns that
        multiple."""
        if tuple(actual.shape) != tuple(exact.shape):
            raise CheckFailed(
                f"{what} has shape {tuple(actual.shape)}; expected {tuple(exact.shape)}"
            )
        self.count(what, exact.numel())
        if exact.numel() == 0:
            return 0.0
        error = distance(actual, exact)
        self.rounding = max(self.rounding or 0.0, rounding.error)
        self.rounding_ratio = max(self.rounding_ratio or 0.0, error / max(rounding.unit, 1e-300))
        if self.max_error is None or error > self.max_error:
            self.max_error, self.tolerance_used = error, Tolerance(rounding.bound)
            self.source_used = ROUNDING
        if not error <= rounding.bound:
            raise CheckFailed(
                f"{what}: {error:.3g} from the float64 answer, {error / rounding.unit:.3g}x the "
                f"reference's own {rounding.dtype} rounding on this case ({rounding}); a "
                f"correct implementation stays within {K:g}x")
        return error / rounding.unit

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
            rounding = None
            if against is None and expected.twin is not None:
                rounding = functools.partial(
                    lambda n, e: rounding_of(n, e, expected.twin()), name, want)
            self.close(f"{name} (vs {who})", got, want, tol, measure=measure, rounding=rounding)

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

    def finite(self, what: str, tensor: Tensor, where: Tensor | None = None) -> None:
        """Every value of ``tensor`` is finite (``where``: at the positions where it is True
        only, a mask of the tensor's shape — the reference's finite ones)."""
        bad = ~torch.isfinite(tensor.detach())
        if where is not None:
            bad &= where.to(bad.device)
        self.count(what, tensor.numel() if where is None else int(where.sum()))
        bad = bad.nonzero()
        if len(bad):
            index = [int(i) for i in bad[0]]
            raise CheckFailed(
                f"{what} has {len(bad)} non-finite values"
                f"{'' if where is None else ' where the reference has none'} (first at index "
                f"{index}: {float(tensor.detach()[tuple(index)])})"
            )

    def raises_like(self, what: str, reference: Callable[[], object],
                    implementation: Callable[[], object], *, who: str = "torch",
                    any_type: bool = False) -> str:
        """The implementation raises what the reference raises (an instance of the same
        exception type; any exception with ``any_type``, as kernels raise ValueError, assert or
        fail in a launch) rather than returning a silent answer; returns the type it raised.
        ``who``: how messages name the reference."""
        try:
            reference()
        except Exception as expected:
            kind = Exception if any_type else type(expected)
            named = "an error" if any_type else kind.__name__
        else:
            raise RuntimeError(f"{what}: the reference accepted this input; nothing to compare")
        self.count(what, 1)
        try:
            implementation()
        except kind as raised:
            return type(raised).__name__
        except Exception as other:
            raise CheckFailed(
                f"{what}: raised {type(other).__name__} ({other}); {who} raises {named}"
            ) from other
        raise CheckFailed(f"{what}: returned a result; {who} raises {named}")
