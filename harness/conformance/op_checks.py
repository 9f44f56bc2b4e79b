"""What the suites check on an op, written once for every op family: outputs and final states
against the reference loop and gradients with respect to every input (scratch memory poisoned
during a call is harness.core.scratch's). The suites (values, chunking, varlen, streaming,
gradients, extremes, poisoning, determinism) are thin tests over these.

Gradients follow fla's tests: the loss is (o · do).sum() + (final state · dht).sum() with random
do and dht, and dq, dk, dv, each gate's gradient and the initial state's are compared with the
reference's. A gradient the reference has and the op lacks is a failure naming the input.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from harness.conformance.checks import Check, CheckFailed
from harness.conformance.gradients import finite_like
from harness.conformance.rounding import rounding_over
from harness.core.backprop import NoGradient, gradients, names
from harness.core.op_subject import OpInputs, OpOutputs, OpSubject


def outputs_match(subject: OpSubject, check: Check, inputs: OpInputs | None = None,
                  quantity: str = "output") -> tuple[OpOutputs, OpOutputs]:
    """o and the final state equal the reference's (the state as the family compares it), held
    to ``quantity``'s bound and the case's rounding; returns (op's, reference's) outputs."""
    inputs = subject.inputs() if inputs is None else inputs
    got = subject.run(inputs)
    for name, tensor in got.named().items():
        check.finite(name, tensor)
    want = subject.run_reference(inputs, final=got.state is not None)
    dtypes_match(got, want)
    check.outputs_close(subject.comparable(got, want), want, check.tolerance_of(quantity))
    return got, want


def gradients_finite(subject: OpSubject, check: Check) -> None:
    """At the case's gate stress, o, the final state and every gradient are finite wherever the
    reference's are (harness.conformance.gradients.finite_like: a non-finite gradient under a
    finite forward is an overflowing backward, log(sigmoid(f)) for F.logsigmoid(f), say)."""
    inputs = subject.inputs()
    with torch.no_grad():
        got = subject.run(inputs)
        want = subject.run_reference(inputs, final=got.state is not None)
    for name, tensor in got.named().items():
        finite_like(check, name, tensor, want.named().get(name))
    found, grads = gradients(subject.spec.factory, subject, inputs, None,
                             chunk_size=subject.case.chunk_size)
    expected, _ = gradients(subject.family_def.reference, subject, inputs.to("cpu"), grads)
    labels = names(subject, inputs)
    missing = [n for n, g, w in zip(labels, found, expected) if w is not None and g is None]
    if missing:
        raise NoGradient(f"no gradient reaches {', '.join(missing)}")
    for label, g, w in zip(labels, found, expected):
        if w is not None:
            finite_like(check, f"d loss / d {label}", g, w, gradient=True,
                        at=f"gates {subject.case.stress}")


def dtypes_match(got: OpOutputs, want: OpOutputs) -> None:
    """o in the inputs' dtype and each part of the final state in the reference's (fla's
    convention: float32, float64 for float64 inputs): a kernel returning o widened (float32 for
    bfloat16 inputs) or the state narrowed breaks the layer that consumes it."""
    for name, expected in want.named().items():
        found = got.named().get(name)
        if found is not None and found.dtype != expected.dtype:
            what = "the inputs' dtype" if name == "o" else "the reference's (float32; float64 " \
                "for float64 inputs)"
            raise CheckFailed(f"{name} has dtype {found.dtype}; expected {expected.dtype}, "
                              f"{what}")


def gradients_match(subject: OpSubject, check: Check, inputs: OpInputs | None = None, *,
                    state_needs_grad: bool = True) -> None:
    """Every gradient equals the reference's (the gradient bound, and the case's rounding);
    ``state_needs_grad`` False: the initial state passed as a plain tensor (no gradient asked
    of it), the others' gradients compared."""
    inputs = subject.inputs() if inputs is None else inputs
    got, grads = gradients(subject.spec.factory, subject, inputs, None,
                           chunk_size=subject.case.chunk_size, state_needs_grad=state_needs_grad)
    reference = subject.family_def.reference
    want, _ = gradients(reference, subject, inputs.to("cpu"), grads,
                        state_needs_grad=state_needs_grad)
    labels = names(subject, inputs)
    missing = [n for n, g, w in zip(labels, got, want) if w is not None and g is None]
    if missing:
        raise NoGradient(f"no gradient reaches {', '.join(missing)}")
    twins = functools.cache(lambda: gradient_twins(subject, inputs.to("cpu"), grads))
    tol = check.tolerance_of("gradient")
    for index, (label, g, w) in enumerate(zip(labels, got, want)):
        if w is None:
            continue
        check.close(f"d loss / d {label}", g, w, tol, measure="gradient",
                    rounding=functools.partial(rounding_of_gradient, twins, index, w))


def rounding_of_gradient(twins, index: int, expected: Tensor):
    return rounding_over(expected, [(low[index], high[index]) for low, high in twins()])


def gradient_twins(subject: OpSubject, inputs: OpInputs, grads: list[Tensor]):
    """The reference's gradients in the case's dtype and the other precision, at the case's
    point and nearby ones (harness.conformance.rounding)."""
    from harness.core.twins import NEARBY, nudged

    case = subject.case
    other = torch.float32 if case.dtype == "float64" else torch.float64
    reference = subject.family_def.reference
    points = [inputs]
    for k in range(NEARBY):
        generator = torch.Generator().manual_seed(case.data_seed + 104729 * (k + 1))
        points.append(inputs.rebuilt(nudged(t, generator) for t in inputs.tensors()))
    pairs = []
    for point in points:
        pair = []
        for dtype in (case.torch_dtype, other):
            found, _ = gradients(reference, subject, point.to(dtype=dtype),
                                 [g.to(dtype) for g in grads])
            pair.append(found)
        pairs.append(tuple(pair))
    return pairs
