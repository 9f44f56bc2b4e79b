"""A bug in the backward pass, made small: the gradients of an implementation and of its family's
reference on one case, for the same weights, inputs and upstream gradients, by name — so a
failure placed in the backward pass (``backward-only``, harness.diagnosis.diagnose) is shrunk to
its smallest case and gets a repro script, as a forward one does.

Gradients are those the gradients suite compares: with respect to the input, h_0, c_0 and every
parameter (by torch's names where the implementation uses them, otherwise as directional
derivatives through its weight loader) for a module; to q, k, v, each gate and the initial state
for an op. A gradient the reference has and the implementation lacks is reported as missing,
never as zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.conformance.gradients import (
    Gradients,
    NoGradient,
    backward,
    directional_derivatives,
    uses_torch_names,
)
from harness.conformance.op_checks import gradients, names
from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.diagnosis.behaviours import MATCH, match_bound
from harness.diagnosis.gradient_signatures import GradientSignature

GRADIENT_ATOL = {"float64": 1e-10}  # the gradients suite's absolute bound; 1e-4 otherwise


def bound(spec: ImplSpec, case: Case | OpCase) -> tuple[float, float]:
    """(atol, rtol) beyond which a gradient differs: MATCH times the gradients suite's bound,
    or the diagnosis' value bound where larger."""
    atol, rtol = match_bound(spec, case)
    return max(atol, MATCH * GRADIENT_ATOL.get(case.dtype, 1e-4)), rtol


def gradients_of(spec: ImplSpec, case: Case | OpCase, mistake: GradientSignature | None = None
                 ) -> tuple[dict[str, Tensor | None], dict[str, Tensor]]:
    """(the implementation's, the reference's) gradients on ``case``, keyed "d input",
    "d h_0", "d weight_ih_l0", "d q", ... (None where the implementation's do not reach); the
    reference's making ``mistake`` where one is given (harness.diagnosis.gradient_signatures)."""
    if isinstance(case, OpCase):
        return op_gradients(spec, case, mistake)
    return module_gradients(spec, case, mistake)


def module_gradients(spec: ImplSpec, case: Case, mistake: GradientSignature | None = None
                     ) -> tuple[dict[str, Tensor | None], dict[str, Tensor]]:
    subject = Subject(spec, case)
    inputs, module, reference = subject.inputs(), subject.build(gradients=True), \
        subject.reference()
    has_cell = subject.family_def.has_cell

    def run(given):
        if mistake is not None and mistake.run is not None:
            return mistake.run(reference, given, case.with_(device="cpu"), has_cell)
        return subject.run_reference(given, reference)

    want, upstream = backward(run, reference, inputs.to("cpu"), None, seed=case.data_seed)
    try:
        got, _ = backward(lambda i: subject.run(module, i), module, inputs, upstream,
                          seed=case.data_seed)
    except NoGradient:  # computed without autograd: nothing reaches anything
        got = Gradients(dict.fromkeys(want.wrt), dict.fromkeys(dict(module.named_parameters())))
    mine = {f"d {n}": g for n, g in got.wrt.items()}
    theirs = {f"d {n}": g for n, g in want.wrt.items() if g is not None}
    if uses_torch_names(module, reference):
        mine |= {f"d {n}": g for n, g in got.params.items()}
        theirs |= {f"d {n}": g for n, g in want.params.items() if g is not None}
    elif any(g is not None for g in got.params.values()):
        # another layout: the derivative along random directions through its weight loader,
        # per unit of the direction's size (so the bound is the gradient's own)
        for k, (along_impl, along_ref, l1) in enumerate(
                directional_derivatives(subject, got, want)):
            name = f"d parameters (along random direction {k})"
            mine[name] = torch.tensor([along_impl / l1], dtype=torch.float64)
            theirs[name] = torch.tensor([along_ref / l1], dtype=torch.float64)
    return mine, theirs


def op_gradients(spec: ImplSpec, case: OpCase, mistake: GradientSignature | None = None
                 ) -> tuple[dict[str, Tensor | None], dict[str, Tensor]]:
    subject = OpSubject(spec, case)
    inputs = subject.inputs()
    labels = [f"d {n}" for n in names(subject, inputs)]
    reference = subject.family_def.reference
    if mistake is not None and mistake.op is not None:
        reference = mistake.op(reference, spec, case)
    want, upstream = gradients(reference, subject, inputs.to("cpu"), None)
    try:
        got, _ = gradients(spec.factory, subject, inputs, upstream, chunk_size=case.chunk_size)
    except NoGradient:
        got = [None] * len(labels)
    theirs = {n: w for n, w in zip(labels, want) if w is not None}
    if mistake is not None and mistake.gradients is not None:
        theirs = mistake.gradients(theirs, case)
    return dict(zip(labels, got)), theirs


def beyond(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> Tensor:
    """Where ``actual`` is beyond atol + rtol |expected|, or NaN where ``expected`` is not (or
    the reverse): a boolean mask, both compared in float64 on the CPU."""
    actual, expected = actual.detach().cpu().double(), expected.detach().cpu().double()
    return ((actual - expected).abs() > atol + rtol * expected.abs()) | (
        actual.isnan() != expected.isnan())


def differing(got: dict[str, Tensor | None], want: dict[str, Tensor], atol: float,
              rtol: float) -> list[str]:
    """The names of ``want`` whose gradient in ``got`` is missing, of another shape, or
    ``beyond`` the bound somewhere."""
    return [name for name, expected in want.items()
            if (actual := got.get(name)) is None or actual.shape != expected.shape
            or bool(beyond(actual, expected, atol, rtol).any())]


def largest(got: dict[str, Tensor | None], want: dict[str, Tensor]) -> float:
    """The largest absolute difference over the gradients both have (inf where one lacks one)."""
    worst = 0.0
    for name, expected in want.items():
        actual = got.get(name)
        if actual is None or actual.shape != expected.shape:
            return float("inf")
        if expected.numel():
            gap = (actual.detach().cpu().double() - expected.detach().cpu().double()).abs()
            worst = max(worst, float(gap.nan_to_num(nan=float("inf")).max()))
    return worst
