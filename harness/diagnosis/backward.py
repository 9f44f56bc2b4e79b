"""A bug in the backward pass, placed, made small and named: where a check of gradients fails and
the forward pass agrees (``backward_only``), the gradients of the implementation and of its
family's reference on one case, for the same weights, inputs and upstream gradients, by name —
so the failure is shrunk to its smallest case, tried against the backward-pass signatures
(harness.diagnosis.gradient_signatures) and given a repro script, as a forward one is.

Gradients are those the gradients suite compares: with respect to the input, h_0, c_0 and every
parameter (by torch's names where the implementation uses them, otherwise as directional
derivatives through its weight loader) for a module; to q, k, v, each gate and the initial state
for an op. A gradient the reference has and the implementation lacks is reported as missing,
never as zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness.core.backprop import (
    Gradients,
    NoGradient,
    backward,
    directional_derivatives,
    gradients,
    names,
    uses_torch_names,
)
from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.diagnosis import gradient_signatures
from harness.diagnosis.behaviours import MATCH, match_bound
from harness.diagnosis.found import Diagnosis
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


def backward_only(spec: ImplSpec, case, probe_of: Callable, shrunk: Callable
                  ) -> Diagnosis | None:
    """The backward-pass diagnosis of a failed gradient check on ``case``: where the forward
    pass on the case itself (as the check ran it: no dropout drawn in training) equals the
    reference's, the gradients are what differs; shrunk while that holds and a gradient still
    differs beyond the diagnosis' bound, keeping two steps (on the case itself only where none
    differs), and the gradient signatures tried there. None where that cannot be said.
    ``probe_of(case)``: the implementation and its reference on a case (a Probe, or None);
    ``shrunk(case, still_fails)``: the smallest such case."""
    if getattr(case, "dropout", 0) and getattr(case, "training", False):
        return None  # dropout draws anew: the forward cannot be compared

    def agrees(candidate) -> bool:  # within the family's own tolerance, not the match bound
        found = probe_of(candidate)
        return found is not None and found.error(found.plain) <= 1 / MATCH

    def gradients_differ(candidate) -> tuple[list[str], float]:
        try:
            got, want = gradients_of(spec, candidate)
        except Exception:  # a call that raises here says nothing of the gradients
            return [], 0.0
        names = differing(got, want, *bound(spec, candidate))
        return [f"{n} (none arrives)" if got.get(n) is None else n for n in names], \
            largest(got, want)

    if not agrees(case):
        return None
    names, error = gradients_differ(case)
    smallest, matched, tried = case, [], 0
    if names:
        steps = min(2, case.seq_len)  # a mistake through time needs two steps to show
        smallest = shrunk(case, lambda c: c.seq_len >= steps and agrees(c)
                          and bool(gradients_differ(c)[0]))
        if smallest != case:
            names, error = gradients_differ(smallest)
        candidates = gradient_signatures.of(smallest)
        matched = named_on(spec, smallest, candidates)
        if len(matched) > 1 and smallest != case:  # the failing case itself decides
            matched = [s for s in matched if explains(spec, case, s)] or matched
        if not matched and smallest != case:  # none applies or fits the smallest case: the
            candidates = gradient_signatures.of(case)  # failing case itself may say more
            matched = named_on(spec, case, candidates)
        tried = len({s.name for s in candidates})
    return Diagnosis(case, smallest, error if names else 0.0, tuple(matched), tried,
                     spec.family_def.reference_label, backward=True, differing=tuple(names))


def named_on(spec: ImplSpec, case, candidates) -> list:
    """The gradient signatures among ``candidates`` that explain the implementation's gradients
    on ``case``, one per name (the first of its variants)."""
    found = {}
    for signature in candidates:
        if signature.name not in found and explains(spec, case, signature):
            found[signature.name] = signature
    return list(found.values())


def explains(spec: ImplSpec, case, signature) -> bool:
    """Whether the implementation's gradients on ``case`` equal the reference's making
    ``signature``'s mistake (harness.diagnosis.gradient_signatures)."""
    try:
        got, want = gradients_of(spec, case, signature)
    except Exception:  # a mistake that cannot be made on this case: no match
        return False
    return not differing(got, want, *bound(spec, case))
