"""A standalone script per failing check: the smallest failing case, built with its fixed seeds,
the same weights in the implementation and the family's reference (an op: the same q, k, v, gates
and initial state in the op and its family's reference loop), both called, and the first
differing value printed — what a user pastes into an issue or steps through in a debugger. A
mistake no single call shows (a behaviour: harness.diagnosis.behaviours, op_behaviours) gets a
script that runs the behaviours' experiments again on the case they showed on and says which
still show; one placed in the backward pass (``backward-only``) a script that compares the
gradients of one backward pass each and prints the first differing value of each; one where
the implementation raised (harness.diagnosis.raised) a script that makes the one call (with its
backward pass where only that raises) that raises it, exiting 1 with the implementation's
traceback.

The script needs torch, seq-harness and the implementation's own package, nothing else; it
exits 1 while the failure reproduces and 0 once it is fixed.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.spec import ImplSpec
from harness.diagnosis.backward import beyond
from harness.diagnosis.found import Diagnosis
from harness.diagnosis.raised import Raised
from harness.diagnosis.shrink import describe

DIRECTORY = "repro"

HEADER = '''"""{impl} fails {suite}::{check}; this is its smallest failing case: {words}.
{diagnosis}
Produced by seq-harness; run it with `python {name}` (exit 1: it still fails)."""

import sys

import torch

'''

MODULE = HEADER + '''from harness.core.case import Case
from harness.core.subject import Subject
from harness.diagnosis.behaviours import match_bound
from harness.diagnosis.repro import differs
from harness.registry import spec_by_origin

CASE = Case.from_dict({case!r})
SPEC = spec_by_origin({impl!r}, {origin!r}, {family!r})

subject = Subject(SPEC, CASE)
inputs = subject.inputs()  # the case's fixed seeds: the same data on every machine
with torch.no_grad():
    got = subject.run(subject.build(), inputs)  # the reference's weights, loaded as the run did
    want = subject.run_reference(inputs)
sys.exit(1 if differs(got.named(), want.named(), *match_bound(SPEC, CASE)) else 0)
'''

OP = HEADER + '''from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.diagnosis.op_behaviours import copies
from harness.diagnosis.op_diagnose import MATCH
from harness.diagnosis.repro import differs
from harness.registry import spec_by_origin

CASE = OpCase.from_dict({case!r})
SPEC = spec_by_origin({impl!r}, {origin!r}, {family!r})

subject = OpSubject(SPEC, CASE)
inputs = subject.inputs()  # the case's fixed seeds: the same data on every machine
with torch.no_grad():
    got = subject.run(copies(inputs))  # on copies: the reference gets the inputs as drawn
    want = subject.run_reference(inputs, final=got.state is not None)
got = subject.comparable(got, want)  # mLSTM's state rescaled to the reference's stabiliser
atol, rtol = SPEC.family_def.tolerance(CASE.dtype)
sys.exit(1 if differs(got.named(), want.named(), MATCH * atol, MATCH * rtol) else 0)
'''

BEHAVIOUR = HEADER + '''from harness.core.{case_module} import {case_class}
from harness.diagnosis.{behaviours} import BEHAVIOURS, shown
from harness.registry import spec_by_origin

CASE = {case_class}.from_dict({case!r})
SPEC = spec_by_origin({impl!r}, {origin!r}, {family!r})
NAMES = {names!r}  # what the diagnosis saw; no single call shows it

found = {{b.name for b in shown(SPEC, CASE)}}  # each behaviour's experiment, run again here
for behaviour in BEHAVIOURS:
    if behaviour.name in NAMES:
        print(f"{{behaviour.name}}: {{'shows' if behaviour.name in found else 'no longer shows'}}"
              f" (it {{behaviour.says}})")
sys.exit(1 if found & set(NAMES) else 0)
'''

GRADIENTS = HEADER + '''from harness.core.{case_module} import {case_class}
from harness.diagnosis.backward import bound, gradients_of
from harness.diagnosis.repro import differs
from harness.registry import spec_by_origin

CASE = {case_class}.from_dict({case!r})
SPEC = spec_by_origin({impl!r}, {origin!r}, {family!r})

# one backward pass each, from the same weights, inputs and random upstream gradients (the
# case's fixed seeds); the forward passes agree: the gradients are what differs
got, want = gradients_of(SPEC, CASE)
sys.exit(1 if differs(got, want, *bound(SPEC, CASE)) else 0)
'''

RAISES = HEADER + '''from harness.core.{case_module} import {case_class}
from harness.diagnosis.raised import call_once
from harness.registry import spec_by_origin

CASE = {case_class}.from_dict({case!r})
SPEC = spec_by_origin({impl!r}, {origin!r}, {family!r})

# {call} on the case's inputs (its fixed seeds): what it raises is printed with its
# traceback, the implementation's own frames last, and the script exits 1. With a backward
# pass, anomaly detection also prints where the forward pass made what the backward broke on.
torch.autograd.set_detect_anomaly({backward!r})
call_once(SPEC, CASE, backward={backward!r})
print("no exception: the call returns")
'''


def differs(got: dict[str, Tensor], want: dict[str, Tensor], atol: float, rtol: float) -> bool:
    """Print, for each output the reference returns, its first value beyond atol + rtol |want|
    (or that it matches); whether any differs. What a repro script ends with."""
    found = False
    for name, expected in want.items():
        actual = got.get(name)
        if actual is None or actual.shape != expected.shape:
            shape = None if actual is None else tuple(actual.shape)
            print(f"{name}: shape {shape}, the reference's {tuple(expected.shape)}")
            found = True
            continue
        wrong = beyond(actual, expected, atol, rtol)
        actual, expected = actual.detach().cpu().double(), expected.detach().cpu().double()
        gap = (actual - expected).abs()
        if bool(wrong.any()):
            index = tuple(int(i) for i in wrong.nonzero()[0])
            print(f"{name} differs first at {list(index)}: {float(actual[index]):.9g}, the "
                  f"reference {float(expected[index]):.9g} (error {float(gap[index]):.3g}; "
                  f"largest {float(gap.nan_to_num(nan=float('inf')).max()):.3g} over "
                  f"{int(wrong.sum())} of {gap.numel()} values)")
            found = True
        else:
            print(f"{name} matches (largest error {float(gap.max()) if gap.numel() else 0:.3g})")
    return found


def script_name(impl: str, suite: str, check: str) -> str:
    """repro/<impl>--<suite>--<check>.py, with only safe characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{impl}--{suite}--{check}")
    return f"{DIRECTORY}/{safe}.py"


def write_script(directory: Path, spec: ImplSpec, suite: str, check: str,
                 diagnosis: Diagnosis | Raised) -> str:
    """Write the script for one failing check into ``directory``; its path relative to it."""
    name = script_name(spec.name, suite, check)
    case: Case | OpCase = diagnosis.smallest
    op = isinstance(case, OpCase)
    template = OP if op else MODULE
    if isinstance(diagnosis, Raised):  # one plain call raises: make it
        template = RAISES
    elif diagnosis.behaviours and not diagnosis.matched:  # shown over calls: run it again
        template = BEHAVIOUR
    elif diagnosis.backward:  # the forward agrees: compare the gradients
        template = GRADIENTS
    text = template.format(
        impl=spec.name, suite=suite, check=check, words=describe(case), name=name,
        diagnosis=f"Diagnosis: {diagnosis.sentence}.", case=case.to_dict(),
        origin=spec.origin or "", family=spec.family,
        case_module="op_case" if op else "case", case_class="OpCase" if op else "Case",
        behaviours="op_behaviours" if op else "behaviours",
        names=[b.name for b in getattr(diagnosis, "behaviours", ())],
        call=diagnosis.call.capitalize() if isinstance(diagnosis, Raised) else "",
        backward=isinstance(diagnosis, Raised) and diagnosis.backward)
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)  # whole, even with two workers writing the same check's script
    return name
