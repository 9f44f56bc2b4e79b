"""Outputs that must stay finite and equal the reference's where float rounding accumulates:
large inputs, saturated gates, long sequences, extreme weights. Shared by the numerics and
extremes suites.

Errors are held relative to the size of the value as well (rtol), on top of the family's
absolute tolerance: saturated gates and recurrences over thousands of steps accumulate rounding
in proportion to the values they carry (the "large" and "long" quantities of
harness.conformance.tolerance). Precision is judged on its own as well: an implementation's
distance to the float64 answer against the float32 reference's (precise_as_the_reference).
"""

from __future__ import annotations

from torch import Tensor

from harness.conformance.checks import Check
from harness.conformance.rounding import rounding_of
from harness.core.contract import Inputs
from harness.core.subject import Subject


def finite_and_close(subject: Subject, check: Check, inputs: Inputs | None, quantity: str,
                     weights: dict[str, Tensor] | None = None) -> None:
    """The implementation's outputs (with ``weights``, or the case's reference weights) are
    finite and equal the reference's with the same weights, held to the tolerance of
    ``quantity`` ("large" inputs or "long" sequences: harness.conformance.tolerance).
    ``inputs`` None: the case's own with its weights, the calls other checks share."""
    if inputs is None and weights is None:
        got, want = subject.first_call(), subject.reference_call()
    else:
        inputs = subject.inputs() if inputs is None else inputs
        got = subject.run(subject.build(weights), inputs)
        want = subject.run_reference(inputs, subject.reference(weights))
    for name, tensor in got.named().items():
        check.finite(name, tensor)
    check.outputs_close(got, want, check.tolerance_of(quantity))


def precise_as_the_reference(subject: Subject, check: Check, label: str, *,
                             weight_scale: float = 1.0, input_scale: float = 1.0,
                             regime: str = "") -> None:
    """The implementation's outputs, with the reference weights times ``weight_scale`` (in the
    family's weight regime ``regime`` first, where one is named) and the inputs times
    ``input_scale``, are as close to the float64 answer as the reference's own in the case's
    dtype allows (Check.precise). Float32 only: an implementation declaring its own tolerance
    (int8, another runtime's arithmetic) is not held to float32's rounding."""
    case = subject.case
    if case.dtype != "float32":
        check.not_supported(f"dtype {case.dtype}: the check holds float32 to float64")
    if subject.spec.tolerance is not None and subject.spec.tolerance.get("float32"):
        check.not_supported(f"{subject.spec.name} declares its own float32 tolerance: it is not "
                            "held to float32's rounding")
    weights = subject.weights()
    if regime:
        weights = subject.family_def.weight_regimes[regime](weights)
    weights = {name: value * weight_scale for name, value in weights.items()}
    inputs = subject.inputs(scale=input_scale)
    got = subject.run(subject.build(weights), inputs)
    for name, tensor in got.named().items():
        check.finite(f"{name}, {label}", tensor)
    want = subject.run_reference(inputs, subject.reference(weights))
    twin = want.twin()
    for name, expected in want.named().items():
        rounding, exact = rounding_of(name, expected, twin)
        check.precise(f"{name}, {label}", got.named()[name], rounding, exact)
