"""A check that failed because the implementation raised gets, where one plain call on the
case's inputs raises the same exception, that call shrunk to its smallest case, said in the
console, the record and the report, and a repro script that raises it alone; an exception only
the check's own calls raise gets none, and a correct implementation is never said to raise.
Where the check takes a backward pass, the call takes one too (an in-place write to a tensor
autograd saved raises only there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.cli import main
from harness.core.case import Case
from harness.diagnosis.raised import Raisings
from harness.registry import spec_for_class_path

ROOT = Path(__file__).resolve().parent.parent


def failed_records(out: Path, check: str) -> list[dict]:
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return [r for r in records if r["outcome"] == "failed" and r["check"] == check]


def test_a_raising_implementation_gets_its_call_shrunk_named_and_scripted(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--impl-class", "tests.mutants.bugs:SqueezedStateGRU", "--family",
                 "gru", "--suite", "shapes", "--workers", "0", "--confirm-alone", "0",
                 "-k", "values_match_reference", "--out", str(out)]) == 1
    failed = failed_records(out, "values_match_reference")
    assert failed and all(r["message"].startswith("raised during the check: IndexError")
                          and "diagnosis:" not in r["message"] for r in failed)
    said = [r["metrics"]["diagnosis"] for r in failed]
    assert {tuple(d["signatures"]) for d in said} == {("raises-IndexError",)}
    # shrunk to one step, one layer; a batch of one or none (unbatched: the state is 1-D too)
    assert all(d["smallest"].startswith("T=1, ") and "one layer" in d["smallest"]
               and ("B=1" in d["smallest"] or "unbatched" in d["smallest"]) for d in said), said
    printed = capsys.readouterr().out
    assert ("DIAGNOSIS squeezed-state-gru: one plain call of the implementation on the check's "
            "inputs raises IndexError") in printed
    report = (out / "report.md").read_text()
    (script,) = {d["script"] for d in said}
    assert f"python {script}" in report and "one plain call, which raises IndexError" in report
    done = subprocess.run([sys.executable, str(out / script)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    assert done.returncode == 1 and "IndexError" in done.stderr, done.stdout + done.stderr
    assert "squeeze" in done.stderr  # the traceback reaches the implementation's own line


def test_an_exception_of_the_backward_pass_gets_a_forward_and_backward_call(tmp_path):
    """An in-place write to sigmoid's saved output: the forward call returns, its backward pass
    raises. The script runs both with anomaly detection, so its output names the line."""
    out = tmp_path / "out"
    assert main(["run", "--impl-class", "tests.mutants.bugs:InPlaceClampGRU", "--family", "gru",
                 "--suite", "gradients", "--workers", "0", "--confirm-alone", "0",
                 "-k", "gradients_match_reference", "--out", str(out)]) == 1
    failed = failed_records(out, "gradients_match_reference")
    said = [r["metrics"]["diagnosis"] for r in failed]
    assert said and {tuple(d["signatures"]) for d in said} == {("raises-RuntimeError",)}
    assert all(d["sentence"].startswith("one forward and backward pass of the implementation")
               and "modified by an inplace operation" in d["sentence"] for d in said), said
    (script,) = {d["script"] for d in said}
    done = subprocess.run([sys.executable, str(out / script)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    assert done.returncode == 1 and "clamp_(0, 1)" in done.stderr, done.stdout + done.stderr


def test_an_exception_only_the_checks_own_calls_raise_gets_no_diagnosis(tmp_path):
    """.view on non-contiguous inputs raises under the strided-inputs check only: a plain call
    on the case returns, so nothing is said beyond the exception and no script is written."""
    out = tmp_path / "out"
    assert main(["run", "--impl-class", "tests.mutants.bugs:ViewingLSTM", "--family", "lstm",
                 "--suite", "shapes", "--workers", "0", "--confirm-alone", "0",
                 "-k", "non_contiguous_inputs", "--out", str(out)]) == 1
    failed = failed_records(out, "non_contiguous_inputs")
    assert failed and not [r for r in failed if "diagnosis" in (r["metrics"] or {})]
    assert not (out / "repro").exists()


def test_a_correct_implementation_is_never_said_to_raise():
    spec = spec_for_class_path("harness.impls.scratch:ScratchGRU", "gru")
    raisings = Raisings(spec)
    for case in (Case(seq_len=3, batch=1, input_size=2, hidden_size=3),
                 Case(seq_len=2, batch=0, input_size=2, hidden_size=3)):
        assert raisings.of(case, IndexError("as a check saw it")) is None
