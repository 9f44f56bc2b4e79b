"""Outputs that must stay finite and equal the reference's where float rounding accumulates:
large inputs, saturated gates, long sequences, extreme weights. Shared by the numerics and
extremes suites.

Errors are held relative to the size of the value as well (rtol), on top of the family's
absolute tolerance: saturated gates and recurrences over thousands of steps accumulate rounding
in proportion to the values they carry.
"""

from __future__ import annotations

from torch import Tensor

from harness.conformance.checks import Check, Tolerance
from harness.core.contract import Inputs
from harness.core.subject import Subject

RTOL = {"float32": 1e-5, "float64": 1e-12}


def finite_and_close(subject: Subject, check: Check, inputs: Inputs,
                     weights: dict[str, Tensor] | None = None) -> None:
    """The implementation's outputs (with ``weights``, or the case's reference weights) are
    finite and equal the reference's with the same weights."""
    got = subject.run(subject.build(weights), inputs)
    for name, tensor in got.named().items():
        check.finite(name, tensor)
    tol = Tolerance.for_case(subject.case, subject.family_def)
    reference = subject.reference(weights)
    check.outputs_close(got, subject.run_reference(inputs, reference),
                        tol.scaled(rtol=max(tol.rtol, RTOL.get(subject.case.dtype, 0.0))))
