"""A standalone script per failing check: the smallest failing case, built with its fixed seeds,
the same weights in the implementation and the family's reference, both called, and the first
differing value printed — what a user pastes into an issue or steps through in a debugger.

The script needs torch, seq-harness and the implementation's own package, nothing else; it
exits 1 while the failure reproduces and 0 once it is fixed.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.core.case import Case
from harness.core.spec import ImplSpec
from harness.diagnosis.diagnose import Diagnosis, describe

DIRECTORY = "repro"

TEMPLATE = '''"""{impl} fails {suite}::{check}; this is its smallest failing case: {words}.
{diagnosis}
Produced by seq-harness; run it with `python {name}` (exit 1: it still differs)."""

import sys

import torch

from harness.core.case import Case
from harness.core.subject import Subject
from harness.diagnosis.behaviours import match_bound
from harness.registry import spec_by_origin

CASE = Case.from_dict({case!r})
SPEC = spec_by_origin({impl!r}, {origin!r}, {family!r})

subject = Subject(SPEC, CASE)
inputs = subject.inputs()  # the case's fixed seeds: the same data on every machine
with torch.no_grad():
    got = subject.run(subject.build(), inputs)  # the reference's weights, loaded as the run did
    want = subject.run_reference(inputs)
atol, rtol = match_bound(SPEC, CASE)
differs = False
for name, expected in want.named().items():
    actual = got.named()[name]
    if actual.shape != expected.shape:
        print(f"{{name}}: shape {{tuple(actual.shape)}}, the reference's {{tuple(expected.shape)}}")
        differs = True
        continue
    gap = (actual.double() - expected.double()).abs()
    wrong = (gap > atol + rtol * expected.double().abs()) | (actual.isnan() != expected.isnan())
    if bool(wrong.any()):
        index = tuple(int(i) for i in wrong.nonzero()[0])
        print(f"{{name}} differs first at {{list(index)}}: {{float(actual[index]):.9g}}, the "
              f"reference {{float(expected[index]):.9g}} (error {{float(gap[index]):.3g}}; "
              f"largest {{float(gap.max()):.3g}} over {{int(wrong.sum())}} of {{gap.numel()}} "
              "values)")
        differs = True
    else:
        print(f"{{name}} matches (largest error {{float(gap.max()) if gap.numel() else 0:.3g}})")
sys.exit(1 if differs else 0)
'''


def script_name(impl: str, suite: str, check: str) -> str:
    """repro/<impl>--<suite>--<check>.py, with only safe characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{impl}--{suite}--{check}")
    return f"{DIRECTORY}/{safe}.py"


def write_script(directory: Path, spec: ImplSpec, suite: str, check: str,
                 diagnosis: Diagnosis) -> str:
    """Write the script for one failing check into ``directory``; its path relative to it."""
    name = script_name(spec.name, suite, check)
    case: Case = diagnosis.smallest
    text = TEMPLATE.format(
        impl=spec.name, suite=suite, check=check, words=describe(case), name=name,
        diagnosis=f"Diagnosis: {diagnosis.sentence}.", case=case.to_dict(),
        origin=spec.origin or "", family=spec.family)
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)  # whole, even with two workers writing the same check's script
    return name
