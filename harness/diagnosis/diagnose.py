"""Diagnose a failing implementation: shrink the case while its outputs still differ from the
reference's, then try every signature of its family there; where none explains it, the
behaviours (experiments over several calls, harness.diagnosis.behaviours).

The outputs are compared on the case's own inputs with an initial state given (so a mistake
with h_0 shows), with no gradient. A value mismatch is an error above 10 times the family's
tolerance in the case's dtype, or the implementation's declared tolerance where larger
(``match_bound``: the diagnosis cases are small and well conditioned, so rounding stays far
below it); a signature *matches* when the transformed reference is within that bound of the
implementation's outputs while the plain reference is not. Where several match on the smallest
case, the ones that also match on the failing case itself are kept. A diagnosis names only
what matched or showed, and says "no known bug pattern matches" otherwise.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from harness.core.case import Case
from harness.core.contract import Inputs, Outputs, call
from harness.core.spec import Capabilities, ImplSpec
from harness.core.subject import Subject
from harness.diagnosis import signatures as sig
from harness.diagnosis.backward import backward_only
from harness.diagnosis.behaviours import Behaviour, cloned, match_bound, shown
from harness.diagnosis.found import Diagnosis
from harness.diagnosis.generic import of
from harness.diagnosis.shrink import shrink
from harness.diagnosis.signatures import Signature

TOTAL_S = 30.0  # seconds of diagnosis per implementation in one process; then no more


class Probe:
    """The implementation and the family's reference on one case, with no gradient."""

    def __init__(self, spec: ImplSpec, case: Case) -> None:
        self.spec, self.case = spec, case
        self.subject = Subject(spec, case)
        self.family = spec.family_def
        self.inputs = self.subject.inputs()
        self.atol, self.rtol = match_bound(spec, case)
        self.strict = match_bound(dataclasses.replace(spec, tolerance=None), case)
        with torch.no_grad():  # on a copy: an implementation may write into its inputs
            self.got = self.subject.run(self.subject.build(), cloned(self.inputs)).detach()
            self.plain = self.expected(None)

    def expected(self, signature: Signature | None) -> Outputs:
        """The reference's outputs, transformed by ``signature`` (None: the plain reference)."""
        case, inputs = self.case, self.inputs
        weights = self.subject.weights()
        if signature is not None and signature.weights is not None:
            weights = signature.weights(dict(weights), case)
        run_case = case if signature is None or signature.dtype is None else \
            case.with_(dtype=signature.dtype)
        build = self.family.build_reference if signature is None or \
            signature.reference is None else signature.reference
        module = build(**case.torch_kwargs(), **self.family.constructor_kwargs(case.proj_size),
                       dtype=run_case.torch_dtype)
        module.load_state_dict({k: v.to(run_case.torch_dtype) for k, v in weights.items()})
        module.train(case.training)
        fed = inputs if signature is None or signature.inputs is None else \
            signature.inputs(inputs, case)
        fed = fed.to(dtype=run_case.torch_dtype)

        def run(given: Inputs, on: Case) -> Outputs:
            out = call(module, Capabilities(), on, given, has_cell=self.family.has_cell)
            return cast(out.detach(), case.torch_dtype)

        if signature is None:
            return run(fed, run_case)
        if signature.composed is not None:
            out = signature.composed(lambda given, on: run(given.to(dtype=run_case.torch_dtype),
                                                           on.with_(dtype=run_case.dtype)),
                                     fed, case)
        else:
            out = run(fed, run_case)
        if signature.outputs is not None:
            out = signature.outputs(out, case, inputs)
        return out

    def error(self, expected: Outputs) -> float:
        """The largest difference from ``expected`` in units of the match bound (> 1: differs;
        inf where the shapes or finiteness differ)."""
        got = self.got.named()
        worst = 0.0
        for name, want in expected.named().items():
            mine = got.get(name)
            if mine is None or mine.shape != want.shape:
                return float("inf")
            mine, want = mine.double(), want.double()
            if not torch.equal(mine.isfinite(), want.isfinite()):
                return float("inf")
            finite = want.isfinite()
            bound = self.atol + self.rtol * want.abs()
            if name == "output" and self.case.varlen:  # zeros at padded steps are exact: no
                valid = sig.from_time_major(sig.valid_mask(self.case, want).expand(  # declared
                    -1, -1, want.shape[-1]), self.case)  # tolerance loosens them
                atol, rtol = self.strict
                bound = torch.where(valid, bound, atol + rtol * want.abs())
            gap = (mine - want).abs()[finite]
            bound = bound[finite]
            if gap.numel():
                worst = max(worst, float((gap / bound).max()))
        return worst

    def largest(self, expected: Outputs) -> float:
        """The largest absolute difference from ``expected`` (inf where shapes differ)."""
        got, worst = self.got.named(), 0.0
        for name, want in expected.named().items():
            mine = got.get(name)
            if mine is None or mine.shape != want.shape:
                return float("inf")
            if mine.numel():
                worst = max(worst, float((mine.double() - want.double()).abs().max()))
        return worst

    @property
    def fails(self) -> bool:
        return self.error(self.plain) > 1

    def matches(self, signature: Signature) -> bool:
        if not signature.applies(self.case):
            return False
        try:
            return self.error(self.expected(signature)) <= 1
        except Exception:  # a transformation that cannot apply here: no match
            return False


def cast(outputs: Outputs, dtype: torch.dtype) -> Outputs:
    c_n = None if outputs.c_n is None else outputs.c_n.to(dtype)
    return Outputs(outputs.output.to(dtype), outputs.h_n.to(dtype), c_n)


def probe(spec: ImplSpec, case: Case) -> Probe | None:
    try:
        return Probe(spec, case)
    except Exception:  # the implementation raises here: not a value mismatch
        return None


def diagnose(spec: ImplSpec, case: Case) -> Diagnosis | None:
    """The diagnosis of ``spec`` failing on ``case``; None when its outputs equal the
    reference's on the case's inputs (the failure is not a value mismatch there)."""
    return Diagnoser(spec).of(case)


class Diagnoser:
    """Diagnoses of one implementation, remembered: a failing case that a signature already
    found explains is diagnosed by trying that signature on it, without shrinking again. An
    op's (harness.diagnosis.op_diagnose.OpDiagnoser) overrides how a case is prepared, probed,
    shrunk and matched, and what behaviours it tries."""

    def __init__(self, spec: ImplSpec, budget_s: float = TOTAL_S) -> None:
        self.spec, self.budget_s, self.spent_s = spec, budget_s, 0.0
        self.found: dict[str, Diagnosis | None] = {}  # by the failing case's id

    def of(self, case: Case, *, gradients: bool = False) -> Diagnosis | None:
        """The case's diagnosis (None: not a value mismatch on its inputs, nothing shown, or
        this implementation's diagnosis time spent). ``gradients``: the failed check compares
        gradients, so a forward pass that agrees places the bug in the backward pass."""
        key = f"{case.id}|gradients" if gradients else case.id
        if key not in self.found:
            if self.spent_s >= self.budget_s:
                return None
            started = time.monotonic()
            found = self._diagnose(self.prepared(case), case)
            if found is None and gradients:
                found = backward_only(self.spec, case, self.probe, self.shrunk)
            self.found[key] = found
            self.spent_s += time.monotonic() - started
        return self.found[key]

    def prepared(self, case: Case) -> Case:
        """The failing case as the diagnosis runs it (``diagnosis_case``)."""
        return diagnosis_case(self.spec, case)

    def probe(self, case: Case) -> Probe | None:
        return probe(self.spec, case)

    def shown(self, case: Case) -> tuple[Behaviour, ...]:
        return shown(self.spec, case)

    def shrunk(self, case: Case, still_fails: Callable[[Case], bool]) -> Case:
        """The smallest case reachable from ``case`` on which ``still_fails``."""
        return shrink(self.spec, case, still_fails)

    def _diagnose(self, case: Case, original: Case) -> Diagnosis | None:
        """``case``: the failing case as the diagnosis runs it (``prepared``); ``original``: as
        the check ran it (its dropout and mode, for the behaviours)."""
        first = self.probe(case)
        found = None  # what the signatures say where one call differs
        if first is not None and first.fails:
            for known in (d for d in self.found.values() if d is not None and not d.backward):
                if known.matched and all(first.matches(s) for s in known.matched):
                    return dataclasses.replace(known, case=case)
            found = self._signatures(case, first)
            if found.matched:
                return found
        behaviours = self.shown(original)
        if behaviours:  # "smallest": the smallest case one of them still shows on (a
            names = {b.name for b in behaviours}  # dropout's experiment: the check's own)
            smallest = original if any(b.random for b in behaviours) else self.shrunk(
                original, lambda c: any(b.name in names for b in self.shown(c)))
            return Diagnosis(case, smallest, 0.0 if found is None else found.error, (), 0,
                             self.spec.family_def.reference_label, behaviours)
        return found  # "no known bug pattern matches", or None where one call agrees

    def _signatures(self, case: Case, first: Probe) -> Diagnosis:
        spec = self.spec

        def still_fails(candidate: Case) -> bool:
            found = probe(spec, candidate)
            return found is not None and found.fails

        smallest = self.shrunk(case, still_fails)
        last = first if smallest == case else probe(spec, smallest)
        family = spec.family_def
        candidates = [s for s in of(family) if s.applies(smallest)]
        matched = [s for s in candidates if last.matches(s)]
        if len(matched) > 1 and smallest != case:  # several fit the smallest case: the
            matched = [s for s in matched if first.matches(s)] or matched  # failing one decides
        return Diagnosis(case, smallest, last.largest(last.plain), tuple(matched),
                         len(candidates), family.reference_label)


def diagnosis_case(spec: ImplSpec, case: Case) -> Case:
    """The failing case as the diagnosis runs it: an initial state given where the
    implementation takes one (a mistake with h_0 then shows), no dropout drawn, eval mode."""
    plain = dataclasses.replace(case, with_hx=True, dropout=0.0, training=False)
    return plain if spec.why_not(plain) is None else case

