"""Outputs that must stay finite and equal the reference's where float rounding accumulates:
large inputs, saturated gates, long sequences, extreme weights. Shared by the numerics and
extremes suites.

Errors are held relative to the size of the value as well (rtol), on top of the family's
absolute tolerance: saturated gates and recurrences over thousands of steps accumulate rounding
in proportion to the values they carry (the "large" and "long" quantities of
harness.conformance.tolerance).
"""

from __future__ import annotations

from torch import Tensor

from harness.conformance.checks import Check
from harness.core.contract import Inputs
from harness.core.subject import Subject


def finite_and_close(subject: Subject, check: Check, inputs: Inputs, quantity: str,
                     weights: dict[str, Tensor] | None = None) -> None:
    """The implementation's outputs (with ``weights``, or the case's reference weights) are
    finite and equal the reference's with the same weights, held to the tolerance of
    ``quantity`` ("large" inputs or "long" sequences: harness.conformance.tolerance)."""
    got = subject.run(subject.build(weights), inputs)
    for name, tensor in got.named().items():
        check.finite(name, tensor)
    reference = subject.reference(weights)
    check.outputs_close(got, subject.run_reference(inputs, reference),
                        check.tolerance_of(quantity))
