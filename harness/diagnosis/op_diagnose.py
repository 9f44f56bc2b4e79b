"""Diagnose a failing op: the op counterpart of harness.diagnosis.diagnose — shrink the op case
while the op's outputs still differ from its family's reference loop, then try the family's op
signatures there (harness.diagnosis.op_signatures).

The outputs (o and the final state, the state compared as the family compares it: mLSTM's
rescaled to the reference's stabiliser) are compared on the case's own inputs, without a
gradient, within ten times the family's tolerance in the case's dtype; NaN and infinities must
sit where the expected ones do. A signature matches where its outputs are within that bound and
the plain reference's are not. Where none matches, or one call agrees with the reference, the
behaviours are tried (harness.diagnosis.op_behaviours: experiments over several calls, strided
views and poisoned scratch memory). A diagnosis names only what matched or showed, and says "no
known bug pattern matches" otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator

import torch

from harness.core.op_case import OpCase
from harness.core.op_subject import OpOutputs, OpSubject, call_op
from harness.core.spec import ImplSpec
from harness.diagnosis.behaviours import Behaviour
from harness.diagnosis.diagnose import Diagnoser
from harness.diagnosis.found import Diagnosis
from harness.diagnosis.op_behaviours import copies, shown
from harness.diagnosis.op_signatures import OpSignature, of
from harness.diagnosis.shrink import BUDGET_S, fewer, within

MATCH = 10.0  # the diagnosis' bound, in multiples of the family's tolerance


class OpProbe:
    """The op and its family's reference on one case, with no gradient."""

    def __init__(self, spec: ImplSpec, case: OpCase) -> None:
        self.spec, self.case = spec, case
        self.subject = OpSubject(spec, case)
        self.family = spec.family_def
        self.inputs = self.subject.inputs()
        atol, rtol = self.family.tolerance(case.dtype)
        self.atol, self.rtol = MATCH * atol, MATCH * rtol
        self.final = self.subject.final  # compare the state where claimed and asked for
        with torch.no_grad():
            # on a copy: an op may write into its inputs (a behaviour, not a value mismatch)
            self.got = self.subject.run(copies(self.inputs), final=self.final).detach()
            self.plain = self.expected(None)

    def expected(self, signature: OpSignature | None) -> OpOutputs:
        """The reference's outputs, or what an op making ``signature``'s mistake returns."""
        inputs = self.inputs.to("cpu")
        with torch.no_grad():
            if signature is None:
                out = call_op(self.family.reference, inputs, self.family)
            else:
                out = signature.run(inputs, self.case)
        return dataclasses.replace(out.detach(), state=out.state if self.final else None)

    def error(self, expected: OpOutputs) -> float:
        """The largest difference from ``expected`` in units of the bound (> 1: differs; inf
        where shapes or the places of NaN and infinities differ)."""
        got = self.subject.comparable(self.got, expected).named()
        worst = 0.0
        for name, want in expected.named().items():
            mine = got.get(name)
            if mine is None or mine.shape != want.shape:
                return float("inf")
            mine, want = mine.detach().cpu().double(), want.double()
            if not torch.equal(mine.isnan(), want.isnan()) or not torch.equal(
                    mine.isinf(), want.isinf()):
                return float("inf")
            finite = want.isfinite()
            gap = (mine - want).abs()[finite]
            if gap.numel():
                worst = max(worst, float((gap / (self.atol + self.rtol * want.abs()[finite]))
                                         .max()))
        return worst

    def largest(self, expected: OpOutputs) -> float:
        got, worst = self.subject.comparable(self.got, expected).named(), 0.0
        for name, want in expected.named().items():
            mine = got.get(name)
            if mine is None or mine.shape != want.shape:
                return float("inf")
            gap = (mine.detach().cpu().double() - want.double()).abs()
            if gap.numel():
                worst = max(worst, float(gap.nan_to_num(nan=float("inf")).max()))
        return worst

    @property
    def fails(self) -> bool:
        return self.error(self.plain) > 1

    def matches(self, signature: OpSignature) -> bool:
        if not signature.applies(self.case):
            return False
        try:
            return self.error(self.expected(signature)) <= 1
        except Exception:  # a mistake that cannot be made on this case: no match
            return False


def probe(spec: ImplSpec, case: OpCase) -> OpProbe | None:
    try:
        return OpProbe(spec, case)
    except Exception:  # the op raises here: not a value mismatch
        return None


def smaller(case: OpCase) -> Iterator[OpCase]:
    """Op cases one step smaller than ``case``, the boldest first: fewer heads, batch rows,
    steps, key and value features (a variable-length batch keeps its sequences)."""
    changes: list[dict] = []
    if case.heads > 1:
        changes.append({"heads": 1})
    if case.lengths is None:
        changes += [{"batch": b} for b in sorted(fewer(case.batch))]
        changes += [{"seq_len": t} for t in sorted(fewer(case.seq_len))]
    changes += [{"key_dim": d} for d in sorted(fewer(case.key_dim))]
    changes += [{"value_dim": d} for d in sorted(fewer(case.value_dim))]
    for change in changes:
        try:
            yield dataclasses.replace(case, **change)
        except ValueError:
            continue


def fails(spec: ImplSpec, case: OpCase) -> bool:
    """Whether the op's outputs differ from the reference's on ``case``."""
    found = probe(spec, case)
    return found is not None and found.fails


def shrink(spec: ImplSpec, case: OpCase, still_fails: Callable[[OpCase], bool] | None = None,
           budget_s: float = BUDGET_S) -> OpCase:
    """The smallest case reachable by greedy steps that the op still claims and still fails
    (``still_fails``; by default: its outputs differ)."""
    still_fails = functools.partial(fails, spec) if still_fails is None else still_fails
    started, current, moved = time.monotonic(), case, True
    while moved and time.monotonic() - started < budget_s:
        moved = False
        for candidate in smaller(current):
            if spec.why_not(candidate) is not None:
                continue
            failing = within(budget_s - (time.monotonic() - started), still_fails, candidate)
            if failing is None:  # out of time, or a candidate that did not return within it
                return current
            if failing:
                current, moved = candidate, True
                break
    return current


class OpDiagnoser(Diagnoser):
    """Diagnoses of one op, remembered (harness.diagnosis.diagnose.Diagnoser): the op's own
    probe, shrinking, signatures and behaviours; the case as the check ran it."""

    def prepared(self, case: OpCase) -> OpCase:
        return case

    def probe(self, case: OpCase) -> OpProbe | None:
        return probe(self.spec, case)

    def shown(self, case: OpCase) -> tuple[Behaviour, ...]:
        return shown(self.spec, case)

    def shrunk(self, case: OpCase, still_fails: Callable[[OpCase], bool]) -> OpCase:
        return shrink(self.spec, case, still_fails)

    def _signatures(self, case: OpCase, first: OpProbe) -> Diagnosis:
        spec, family = self.spec, self.spec.family_def
        smallest = self.shrunk(case, functools.partial(fails, spec))
        last = first if smallest == case else probe(spec, smallest)
        candidates = [s for s in of(family) if s.applies(smallest)]
        matched = [s for s in candidates if last.matches(s)]
        if len(matched) > 1 and smallest != case:  # several fit the smallest case: the
            matched = [s for s in matched if first.matches(s)] or matched  # failing one decides
        if not matched and smallest != case:  # the smallest case fails another way (a shape
            # error where the mistake needs two steps): the failing case itself may say more
            found = [s for s in of(family) if first.matches(s)]
            if found:
                return Diagnosis(case, case, first.largest(first.plain), tuple(found),
                                 len(candidates), family.reference_label)
        return Diagnosis(case, smallest, last.largest(last.plain), tuple(matched),
                         len(candidates), family.reference_label)
