"""The diagnosis of matrix-state ops names the bug: each op mutant in tests/mutants/ops.py whose
failure is a value mismatch is matched against its family's op signatures and the right one is
named, and each whose mistake shows only over calls (an input written in place, a reused output
buffer, strides ignored, unwritten scratch read, a state kept, NaN where the reference is
finite, the final state's gradient dropped) by its behaviour; the built-in
forms never get a diagnosis; every op signature changes the reference where it applies; and a
run records and reports it, with a repro script that reproduces it alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.op_case import OpCase
from harness.diagnosis.op_diagnose import OpDiagnoser, OpProbe
from harness.diagnosis.op_signatures import of
from harness.families.ops import GATED_DELTA, MLSTM, SCALAR_DECAY
from harness.registry import spec_for_class_path

ROOT = Path(__file__).resolve().parent.parent
BASE = OpCase(seq_len=20, batch=2, heads=2, key_dim=4, value_dim=3, with_state=True)
LONG = OpCase(seq_len=150, batch=2, heads=2, key_dim=4, value_dim=3, with_state=True)
SQUARE = BASE.with_(value_dim=4)  # K == V: a state laid out (N, H, V, K) has the same shape
VARLEN = OpCase(seq_len=30, lengths=(10, 0, 20), heads=2, key_dim=4, value_dim=3,
                with_state=True)

# Every op mutant whose failure is a value mismatch, its case, and the signature that names it
# (None: no signature of the kit names it; counted against the share below).
OP_VALUE_MUTANTS = [
    ("MaskAfterExpScalarDecay", "scalar_decay", OpCase(seq_len=65, batch=2, heads=2,
                                                       stress="s0.01"), "mask-after-exp-64"),
    ("CarryOffByOneScalarDecay", "scalar_decay", LONG, "carry-one-step-short-64"),
    ("PaddedChunkScalarDecay", "scalar_decay", LONG.with_(seq_len=70),
     "padded-final-state-64"),
    ("IgnoresInitialStateScalarDecay", "scalar_decay", BASE, "initial-state-ignored"),
    ("LeakyVarlenScalarDecay", "scalar_decay", VARLEN, "state-across-sequences"),
    ("DecayAfterDeltaGatedDelta", "gated_delta", BASE, "decay-after-delta"),
    ("HardcodedScaleGatedDelta", "gated_delta", BASE.with_(scale=1.0), "scale-ignored"),
    ("TwoPathsGatedDelta", "gated_delta", BASE.with_(final_state=False),
     "initial-state-ignored"),
    ("LowerBoundOneMLSTM", "mlstm", BASE, "normaliser-bound-one"),
    ("DroppedStabiliserMLSTM", "mlstm", BASE, "final-stabiliser-dropped"),
    ("InitialStabiliserIgnoredMLSTM", "mlstm", BASE, "initial-stabiliser-ignored"),
    # m_0 shows through eps e^m only (a relative 1e-7): in float64, from the op's own state
    ("MinusInfStartMLSTM", "mlstm", BASE.with_(with_state=False, dtype="float64"),
     "stabiliser-starts-at-minus-inf"),
    ("ScaleOnKeysScalarDecay", "scalar_decay", BASE, "scale-on-keys"),
    ("ValueDimScaleScalarDecay", "scalar_decay", BASE, "scale-from-value-dim"),
    ("TransposedStateGatedDelta", "gated_delta", SQUARE, "state-as-v-by-k"),
    ("FirstStateForAllScalarDecay", "scalar_decay", VARLEN,
     "first-initial-state-for-every-sequence"),
    ("EmptySequenceZeroStateScalarDecay", "scalar_decay", VARLEN, "empty-sequence-state-zeroed"),
    ("BetaOnValueOnlyGatedDelta", "gated_delta", BASE, "beta-on-value-only"),
    ("NoAbsNormaliserMLSTM", "mlstm", BASE, "normaliser-without-abs"),
    # a relative 1e-6 where e^-m is the larger: in float64
    ("EpsInsideMaxMLSTM", "mlstm", BASE.with_(dtype="float64"), "eps-inside-the-max"),
    ("Float32InsideGatedDelta", "gated_delta", BASE.with_(dtype="float64"),
     "computes-in-float32"),
    # a sentinel of -1e4 for "no decay" loses float32 digits in the chunk's cumulative sums:
    # the mistake's own rounding, which no exact signature reproduces
    ("ZeroDecayIsResetScalarDecay", "scalar_decay", OpCase(seq_len=20, batch=2, heads=2,
                                                           stress="zero-some"), None),
    # the WY form's inverse with the diagonal kept: no recurrence with one step changed equals it
    ("DiagonalKeptGatedDelta", "gated_delta", BASE, None),
]


def spec_of(name: str, family_name: str):
    return spec_for_class_path(f"tests.mutants.ops:{name}", family_name)


@pytest.fixture(scope="module")
def diagnosed():
    return {name: OpDiagnoser(spec_of(name, fam)).of(case)
            for name, fam, case, _ in OP_VALUE_MUTANTS}


@pytest.mark.parametrize(("name", "expected"),
                         [(n, e) for n, _, _, e in OP_VALUE_MUTANTS if e is not None])
def test_the_op_mutants_bug_is_named_first(diagnosed, name, expected):
    found = diagnosed[name]
    assert found is not None and found.names[:1] == (expected,), found and found.sentence
    assert found.sentence.startswith("output equals the ")


@pytest.mark.parametrize("name", [n for n, _, _, e in OP_VALUE_MUTANTS if e is None])
def test_what_no_op_signature_explains_is_not_given_a_name(diagnosed, name):
    found = diagnosed[name]
    assert found is not None and not found.names
    assert found.sentence.startswith("no known bug pattern matches")


def test_at_least_80_percent_of_op_value_mutants_are_named(diagnosed):
    named = [n for n, _, _, e in OP_VALUE_MUTANTS if e is not None
             and diagnosed[n].names[:1] == (e,)]
    assert len(named) / len(OP_VALUE_MUTANTS) >= 0.8


# Op mutants whose mistake no single call on fresh inputs shows, and the behaviour that names it
OP_BEHAVIOUR_MUTANTS = [
    ("InPlaceScaledQueryScalarDecay", "scalar_decay", BASE, "inputs-modified"),
    ("ReusedBufferMLSTM", "mlstm", BASE, "shared-output-buffer"),
    ("StridesIgnoredScalarDecay", "scalar_decay", BASE, "strides-ignored"),
    ("EmptyTailScalarDecay", "scalar_decay", BASE, "reads-unwritten-memory"),
    ("CachedStateGatedDelta", "gated_delta", BASE.with_(with_state=False),
     "state-kept-between-calls"),
    ("DetachedFinalStateGatedDelta", "gated_delta", BASE, "final-state-gradient-dropped"),
    # NaN from the chunk whose cumulative log decay passes 88 on: the NaN it returns equals a
    # reference started from its own NaN state, which is no state kept between calls
    ("FactoredDecaysGatedDelta", "gated_delta", OpCase(seq_len=65, batch=2, heads=2,
                                                       stress="s0.01"), "overflows"),
]


@pytest.mark.parametrize(("name", "family_name", "case", "expected"), OP_BEHAVIOUR_MUTANTS,
                         ids=[m[0] for m in OP_BEHAVIOUR_MUTANTS])
def test_an_op_mistake_over_calls_is_named_by_its_behaviour(name, family_name, case, expected):
    found = OpDiagnoser(spec_of(name, family_name)).of(case)
    assert found is not None and found.names == (expected,), found and found.sentence
    assert found.sentence.startswith("it ")


CORRECT = [BASE, SQUARE, LONG, VARLEN, BASE.with_(dtype="float64"), VARLEN.with_(scale=1.0),
           OpCase(seq_len=65, batch=2, heads=2, stress="s0.01"),
           OpCase(seq_len=20, batch=2, heads=2, stress="zero-some")]


@pytest.mark.parametrize("target", [
    ("harness.ops.scalar_decay:scalar_decay_chunk", "scalar_decay"),
    ("harness.ops.scalar_decay:scalar_decay_parallel", "scalar_decay"),
    ("harness.ops.gated_delta:gated_delta_chunk", "gated_delta"),
    ("harness.ops.mlstm:mlstm_chunk", "mlstm"),
    ("harness.ops.mlstm:mlstm_parallel", "mlstm")], ids=lambda t: t[0].split(":")[1])
def test_no_built_in_form_gets_a_diagnosis(target):
    spec = spec_for_class_path(*target)
    diagnoser = OpDiagnoser(spec)
    for case in CORRECT:
        if spec.why_not(case) is None:
            assert diagnoser.of(case) is None, (case.id, diagnoser.of(case).sentence)


@pytest.mark.parametrize("family", [SCALAR_DECAY, GATED_DELTA, MLSTM], ids=lambda f: f.name)
def test_every_op_signature_changes_the_reference_where_it_applies(family):
    """On cases rich enough for each (a state, variable lengths, strong and zero decays, more
    steps than a chunk), every applicable signature moves the outputs beyond the bound: none
    could be named for a correct op."""
    reference = spec_for_class_path(
        f"{family.reference.__module__}:{family.reference.__name__}", family.name)
    tried = set()
    for case in [BASE, SQUARE, LONG, VARLEN, BASE.with_(scale=1.0),
                 BASE.with_(with_state=False, dtype="float64"),
                 OpCase(seq_len=65, batch=2, heads=2, stress="s0.01"),
                 OpCase(seq_len=20, batch=2, heads=2, stress="zero-some")]:
        if reference.why_not(case) is not None:
            continue
        probe = OpProbe(reference, case)
        assert not probe.fails
        for signature in of(family):
            if signature.applies(case) and probe.error(probe.expected(signature)) > 1:
                tried.add(signature.name)
    assert tried == {s.name for s in of(family)}


def test_a_run_records_and_reports_an_op_diagnosis(tmp_path, capsys):
    code = main(["run", "--impl-fn", "tests.mutants.ops:DecayAfterDeltaGatedDelta", "--family",
                 "gated_delta", "--suite", "values", "--workers", "0", "--confirm-alone", "0",
                 "-k", "matches_reference and (T63-B2-H4-K16-V16-state or T1-B2-H4-K16-V16)",
                 "--out", str(tmp_path)])
    assert code == 1
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert failed and any(r["metrics"].get("diagnosis", {}).get("signatures")
                          == ["decay-after-delta"] for r in failed)
    assert "DIAGNOSIS" in capsys.readouterr().out
    report = (tmp_path / "report.md").read_text()
    assert "decay applied after the delta update" in report
    # its repro script: linked from the report, alone in a fresh interpreter it prints the
    # first differing value of o and the state and exits 1
    (script,) = {r["metrics"]["diagnosis"]["script"] for r in failed
                 if r["check"] == "matches_reference"}
    assert f"python {script}" in report
    done = subprocess.run([sys.executable, str(tmp_path / script)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "o differs first at" in done.stdout and "S differs first at" in done.stdout
