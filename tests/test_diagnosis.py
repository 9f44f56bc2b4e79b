"""The diagnosis names the bug: each mutant in tests/mutants whose failure is a value mismatch is
shrunk and matched against its family's signatures and behaviours, and the right one is named
first; no correct implementation ever gets a diagnosis; every signature changes the reference
where it applies (none is named for nothing); and the diagnosis reaches the record, the console
and the report of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.case import Case
from harness.core.families import Family, family
from harness.diagnosis.diagnose import Diagnoser, Probe, diagnosis_case
from harness.diagnosis.generic import of
from harness.diagnosis.shrink import describe
from harness.registry import Registry, spec_for_class_path

ROOT = Path(__file__).resolve().parents[1]  # tests.mutants import from the repository
BASE = Case(5, 3, 3, 7)
VARLEN = BASE.with_(lengths=(3, 5, 1))

# Every mutant of tests/mutants whose failure is a value mismatch with the reference (one call,
# several calls, or at large inputs): the case its check fails on, and the pattern that names
# it (None: no pattern of the kit names it; counted against the share below).
VALUE_MUTANTS = [
    ("bugs:SwappedGatesLSTM", "lstm", BASE, "gate-order-figo"),
    ("bugs:SigmoidCandidateLSTM", "lstm", BASE, "candidate-sigmoid"),
    ("bugs:ResetBeforeMatmulGRU", "gru", BASE, "reset-before-matmul"),
    ("bugs:SwappedUpdateGRU", "gru", BASE, "update-gate-swapped"),
    ("bugs:OneBiasRNN", "rnn_tanh", BASE, "bias-hh-dropped"),
    ("bugs:Float32AccumulatingLSTM", "lstm", BASE.with_(dtype="float64"),
     "computes-in-float32"),
    ("bugs:PaddingLeaksGRU", "gru", VARLEN, "state-runs-through-padding"),
    ("bugs:ReverseIgnoresLengthsLSTM", "lstm", VARLEN.with_(bidirectional=True),
     "reverse-ignores-lengths"),
    ("bugs:LastPaddedStepLSTM", "lstm", VARLEN, "h-n-at-last-padded-step"),
    ("bugs:CarriedPaddingGRU", "gru", VARLEN, "padding-not-zeroed"),
    ("bugs:SortedOrderLSTM", "lstm", VARLEN, "h-n-in-sorted-order"),
    ("bugs:SortedCellStateLSTM", "lstm", VARLEN, "c-n-in-sorted-order"),
    ("bugs:IgnoresHxRNN", "rnn_tanh", BASE, "h0-ignored"),
    ("bugs:DirectionMajorGRU", "gru", BASE.with_(num_layers=2, bidirectional=True),
     "h-n-direction-major"),
    ("bugs:ReverseNotRealignedRNN", "rnn_tanh", BASE.with_(bidirectional=True),
     "reverse-output-not-realigned"),
    ("bugs:SwappedFinalStateLSTM", "lstm", BASE, "h-n-c-n-swapped"),
    ("bugs:ReverseForwardWeightsLSTM", "lstm", BASE.with_(bidirectional=True),
     "reverse-with-forward-weights"),
    ("bugs:FirstRowHxGRU", "gru", BASE.with_(num_layers=2, with_hx=True),
     "h0-first-row-everywhere"),
    ("bugs:DirectionMajorHxGRU", "gru", BASE.with_(num_layers=2, bidirectional=True,
                                                   with_hx=True), "hx-read-direction-major"),
    ("bugs:StatefulLSTM", "lstm", BASE, "state-kept-between-calls"),
    ("bugs:ReverseFromZerosGRU", "gru", BASE.with_(bidirectional=True, with_hx=True),
     "reverse-from-zeros"),
    ("bugs:ReversedConcatLSTM", "lstm", BASE.with_(num_layers=2, bidirectional=True),
     "directions-concatenated-reversed"),
    ("bugs:EvalDropoutGRU", "gru", BASE.with_(num_layers=2, dropout=0.5), "dropout-in-eval"),
    ("bugs:OutputDropoutLSTM", "lstm", BASE.with_(num_layers=2, dropout=0.5),
     "dropout-after-last-layer"),
    ("bugs:CachedWeightsRNN", "rnn_tanh", BASE, "stale-weights"),
    ("bugs:VersionCachedWeightsRNN", "rnn_tanh", BASE, "stale-weights"),
    ("bugs:ReusedBufferLSTM", "lstm", BASE, "shared-output-buffer"),
    ("bugs:InPlaceHxGRU", "gru", BASE, "inputs-modified"),
    ("bugs:NoGradInPlaceHxGRU", "gru", BASE, "inputs-modified"),
    ("bugs:ZeroesPaddingLSTM", "lstm", VARLEN, "inputs-modified"),
    ("bugs:NoGradCachedWeightsRNN", "rnn_tanh", BASE, "stale-weights"),
    ("bugs:ExpTanhRNN", "rnn_tanh", BASE, "overflows"),
    ("broken:WornOutGRU", "gru", BASE, "wears-out"),
    ("families:ScanIgnoresH0MinGRU", "mingru", BASE, "h0-ignored"),
    ("families:GTwiceMinGRU", "mingru", BASE, "g-twice"),
    ("families:SwappedBlocksMinLSTM", "minlstm", BASE, "gate-order-ifh"),
    ("families:ChunkOffByOneMinGRU", "mingru", Case(40, 2, 3, 5), "chunk-carry-off-by-one-16"),
    ("families:ExpSpaceScanMinGRU", "mingru", BASE, "overflows"),
    ("families:RatioMinLSTM", "minlstm", BASE, "overflows"),
    ("families:SigmoidCandidateMinGRU", "mingru", BASE, "candidate-sigmoid"),
    ("families:NoActivationMinLSTM", "minlstm", BASE, "g-missing"),
    ("families:StepPathMinLSTM", "minlstm", BASE, "steps-otherwise"),
    ("families:UnscaledInputRGLRU", "rglru", BASE, "input-scale-missing"),
    ("families:NoDecayConstantRGLRU", "rglru", BASE, "decay-constant-missing"),
    ("families:TanhIndRNN", "indrnn", BASE, "tanh-instead-of-relu"),
    ("families:ReluBeforeRecurrenceIndRNN", "indrnn", BASE, "relu-on-input-side-only"),
    ("compiled:ResetOutsideFastGRU", "gru", BASE, "reset-scales-input-side"),
    ("compiled:UnclampedExpFastLSTM", "lstm", BASE, "overflows"),
    ("deploy:LooseCarriedPaddingGRU", "gru", VARLEN, "padding-not-zeroed"),
    # precision: right to a few float32 units on ordinary inputs, many roundings off on long
    # sequences or small values (numerics::precision_*): the check's own message says how far
    ("families:LogSpaceScanMinGRU", "mingru", BASE, None),
    ("families:CancellingRGLRU", "rglru", BASE, None),
    ("compiled:PlainTanhFastRNN", "rnn_tanh", BASE, None),
    # an int8 entry declaring a float-like tolerance: quantisation, not a mistake in the maths
    ("deploy:TightInt8LSTM", "lstm", BASE, None),
]


def spec_of(target: str, family_name: str):
    module, _, name = target.partition(":")
    return spec_for_class_path(f"tests.mutants.{module}:{name}", family_name)


@pytest.fixture(scope="module")
def diagnosed():
    """Every value mutant's diagnosis on its case, computed once."""
    from tests.mutants.broken import WornOutGRU

    found = {}
    for target, family_name, case, _ in VALUE_MUTANTS:
        spec = spec_of(target, family_name)
        found[target] = Diagnoser(spec).of(spec.family_def.adapt(case))
    WornOutGRU.calls_in_this_process[0] = 0  # its process-wide count, as other tests expect it
    return found


@pytest.mark.parametrize(("target", "expected"),
                         [(t, e) for t, _, _, e in VALUE_MUTANTS if e is not None],
                         ids=[t for t, _, _, e in VALUE_MUTANTS if e is not None])
def test_the_mutants_bug_is_named_first(diagnosed, target, expected):
    found = diagnosed[target]
    assert found is not None, f"{target}: not diagnosed"
    assert found.names[:1] == (expected,), f"{target}: {found.sentence}"


def test_at_least_80_percent_of_value_mutants_are_named(diagnosed):
    named = [t for t, _, _, e in VALUE_MUTANTS
             if e is not None and diagnosed[t] is not None and diagnosed[t].names[:1] == (e,)]
    share = len(named) / len(VALUE_MUTANTS)
    print(f"named {len(named)} of {len(VALUE_MUTANTS)} value mutants ({share:.0%})")
    assert share >= 0.8


@pytest.mark.parametrize("target", [t for t, _, _, e in VALUE_MUTANTS if e is None])
def test_what_no_pattern_explains_is_not_given_a_name(diagnosed, target):
    found = diagnosed[target]
    assert found is None or found.names == (), found.sentence
    if found is not None:
        assert found.sentence.startswith("no known bug pattern matches")


def registry_modules():
    registry = Registry.load()
    return [s for s in registry.specs.values()
            if s.family_def.kind == "module" and s.unavailable() is None
            and "cpu" in s.capabilities.devices]


CORRECT_CASES = (BASE, BASE.with_(num_layers=2, bidirectional=True, batch_first=True),
                 VARLEN.with_(bidirectional=True), BASE.with_(num_layers=2, dropout=0.5),
                 BASE.with_(dtype="float64", proj_size=2))


# In CI one entry of each kind (a loop, torch's module, packed, fused C kernels, a scan, int8,
# onnxruntime, TorchScript); every other entry, the compiled ones included, in the slow tier.
IN_CI = {"scratch-rnn", "scratch-lstm", "torch-gru", "torch-lstm-packed", "fast-lstm",
         "mingru-scan", "minlstm-loop", "indrnn-fused", "rglru-scan", "torch-gru-int8",
         "onnxruntime-gru", "script-lstm"}


@pytest.mark.parametrize("spec", [
    pytest.param(s, id=s.name, marks=[] if s.name in IN_CI else [pytest.mark.slow])
    for s in registry_modules()])
def test_no_correct_implementation_gets_a_diagnosis(spec):
    """The registry's entries are correct: whatever a failure on them would be, no signature
    or behaviour is named."""
    diagnoser = Diagnoser(spec)
    ran = 0
    for case in CORRECT_CASES:
        case = spec.family_def.adapt(case)
        if spec.why_not(case) is not None or (case.proj_size
                                              and not spec.family_def.supports_proj):
            continue
        ran += 1
        found = diagnoser.of(case)
        assert found is None, f"{spec.name} on {case}: {found.sentence}"
    assert ran


@pytest.mark.parametrize("family_name", ["rnn_tanh", "rnn_relu", "lstm", "gru", "mingru",
                                         "minlstm", "indrnn", "rglru"])
def test_every_signature_changes_the_reference_where_it_applies(family_name):
    """A signature equal to the plain reference could never be told apart from it: on cases
    rich enough for each (hx, biases, lengths, directions, layers, float64), every applicable
    one moves the outputs beyond the match bound."""
    fam = family(family_name)
    reference = spec_for_class_path_of(fam)
    cases = [BASE.with_(input_size=7), VARLEN, VARLEN.with_(bidirectional=True),
             BASE.with_(num_layers=2, bidirectional=True), BASE.with_(dtype="float64"),
             Case(40, 2, 3, 5)]
    tried = set()
    for case in cases:
        case = diagnosis_case(reference, fam.adapt(case))
        if reference.why_not(case) is not None:
            continue
        probe = Probe(reference, case)
        assert not probe.fails
        for signature in of(fam):
            if signature.applies(case):
                tried.add(signature.name)
                assert probe.error(probe.expected(signature)) > 1, (signature.name, case.id)
    assert len(tried) >= 10


def spec_for_class_path_of(fam: Family):
    """The family's reference as an implementation: a correct one by construction."""
    from harness.core.spec import ImplSpec

    return ImplSpec(name="the-reference", family=fam.name,
                    factory=lambda **kw: fam.build_reference(**kw))


def test_the_smallest_failing_case_is_found_and_said_in_words():
    found = Diagnoser(spec_of("bugs:SwappedGatesLSTM", "lstm")).of(
        BASE.with_(num_layers=2, bidirectional=True, batch_first=True))
    smallest = found.smallest
    assert (smallest.seq_len, smallest.batch, smallest.input_size, smallest.hidden_size,
            smallest.num_layers, smallest.bidirectional, smallest.bias) == (1, 1, 1, 1, 1,
                                                                           False, False)
    assert describe(smallest) == "T=1, B=1, I=1, H=1, one layer, no bias"


def test_a_smaller_case_that_hangs_ends_the_shrinking_not_the_check():
    """A candidate that never returns ends the shrinking at the last case that failed, within
    the shrinking's budget; the check's own deadline (an outer timer) runs on."""
    import signal
    import time

    from harness.conformance.isolation import deadline
    from harness.diagnosis.shrink import shrink

    def still_fails(case: Case) -> bool:
        if case.seq_len < 4:
            time.sleep(60)  # a loop that never ends below 4 steps
        return True

    spec = spec_of("bugs:SwappedGatesLSTM", "lstm")
    with deadline(50.0):
        started = time.monotonic()
        smallest = shrink(spec, BASE.with_(seq_len=5), still_fails, budget_s=1.0)
        took, (left, _) = time.monotonic() - started, signal.getitimer(signal.ITIMER_REAL)
    assert smallest.seq_len == 5 and took < 5
    assert 40 < left < 50  # still armed, less what the shrinking took


def test_a_part_s_time_limit_defers_to_a_check_deadline_due_first():
    import time

    from harness.conformance.isolation import CheckTimeout, deadline
    from harness.core.time_limit import PartTimeout, bounded

    # the check's deadline is due first: it fires, as it would have
    with pytest.raises(CheckTimeout), deadline(0.3), bounded(10.0):
        time.sleep(5)
    with pytest.raises(PartTimeout), bounded(0.2):  # alone: its own limit
        time.sleep(5)


def test_gate_names_must_name_every_gate():
    with pytest.raises(ValueError, match=r"gate_names .* name 2 gates; expected 3"):
        Family("odd", family("gru").reference, gates=3, gate_names=("r", "z"))


def test_a_run_records_prints_and_reports_the_diagnosis(tmp_path, capsys):
    code = main(["run", "--impl-class", "tests.mutants.bugs:SwappedGatesLSTM", "--family",
                 "lstm", "--suite", "shapes", "--workers", "0", "--confirm-alone", "0",
                 "-k", "values_match_reference", "--out", str(tmp_path)])
    assert code == 1
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert failed and all(r["metrics"]["diagnosis"]["signatures"] == ["gate-order-figo"]
                          for r in failed)
    assert all("diagnosis: output equals torch lstm with gate blocks ordered (f, i, g, o)"
               in r["message"] for r in failed)
    out = capsys.readouterr().out
    assert "DIAGNOSIS swapped-gates-lstm: output equals torch lstm with gate blocks ordered " \
           "(f, i, g, o)" in out
    report = (tmp_path / "report.md").read_text()
    assert "### Diagnosis" in report and "T=1, B=1, I=1, H=1, one layer, no bias" in report
    script = failed[0]["metrics"]["diagnosis"]["script"]
    assert f"python {script}" in report


@pytest.mark.parametrize(("target", "family_name", "suite", "check"), [
    ("bugs:SwappedGatesLSTM", "lstm", "shapes", "values_match_reference"),
    ("bugs:PaddingLeaksGRU", "gru", "padding", "each_sequence_alone"),
    pytest.param("bugs:DirectionMajorGRU", "gru", "shapes", "h_n_rows_are_layer_major",
                 marks=pytest.mark.slow),
    pytest.param("families:GTwiceMinGRU", "mingru", "shapes", "values_match_reference",
                 marks=pytest.mark.slow),
])
def test_the_repro_script_reproduces_the_failure_alone(tmp_path, target, family_name, suite,
                                                       check):
    """The script a failed check leaves in the results directory runs in a fresh interpreter
    with nothing but the packages, prints the first differing value, and exits 1."""
    module, _, name = target.partition(":")
    out = tmp_path / "out"
    assert main(["run", "--impl-class", f"tests.mutants.{module}:{name}", "--family",
                 family_name, "--suite", suite, "--workers", "0", "--confirm-alone", "0",
                 "-k", check, "--out", str(out)]) == 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    scripts = {r["metrics"]["diagnosis"].get("script") for r in records
               if r["outcome"] == "failed" and r["check"] == check}
    assert len(scripts) == 1 and None not in scripts
    (script,) = scripts
    done = subprocess.run([sys.executable, str(out / script)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "differs first at" in done.stdout, done.stdout


def test_no_diagnosis_leaves_failures_as_they_were(tmp_path):
    main(["run", "--impl-class", "tests.mutants.bugs:SwappedGatesLSTM", "--family", "lstm",
          "--suite", "shapes", "--workers", "0", "--confirm-alone", "0", "--no-diagnosis",
          "-k", "values_match_reference and T5-B3-I3-H7]", "--out", str(tmp_path)])
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert failed and not any("diagnosis" in (r["metrics"] or {}) for r in failed)


OP_GRADIENT_CASE = dict(seq_len=20, batch=2, heads=2, key_dim=4, value_dim=3, with_state=True)


@pytest.mark.parametrize(("target", "family_name", "case", "named"), [
    ("bugs:WrongGateDerivativeLSTM", "lstm", BASE.with_(with_hx=True), None),
    ("bugs:WrongTanhDerivativeRNN", "rnn_tanh", BASE, None),
    ("bugs:TruncatedBackpropGRU", "gru", BASE, "truncated-backprop"),
    ("ops:ScaleMissingInDqScalarDecay", "scalar_decay", OP_GRADIENT_CASE, "dq-scale-missing"),
    ("ops:ChunkDetachedGatedDelta", "gated_delta", {**OP_GRADIENT_CASE, "chunk_size": 8},
     "state-detached-between-chunks"),
], ids=lambda v: v if isinstance(v, str) and ":" in v else "")
def test_a_gradient_failure_whose_forward_is_right_is_placed_in_the_backward_pass(
        target, family_name, case, named):
    """A check of gradients that fails where the forward pass equals the reference's: the
    diagnosis places the bug in the backward pass, shrinks it while a gradient still differs,
    and names the backward-pass mistake where a gradient signature reproduces it (and none
    where none does); asked about a check that compares no gradients, it says nothing."""
    from harness.core.op_case import OpCase
    from harness.diagnosis.op_diagnose import OpDiagnoser

    spec = spec_of(target, family_name)
    diagnoser = Diagnoser
    if isinstance(case, dict):
        case, diagnoser = OpCase(**case), OpDiagnoser
    found = diagnoser(spec).of(case, gradients=True)
    assert found is not None and found.backward, found and found.sentence
    assert found.names == ("backward-only",) + ((named,) if named else ()), found.sentence
    if named is None:
        assert "the bug is in the backward pass" in found.sentence
    assert diagnoser(spec).of(case) is None
    # shrunk while a gradient still differs, each differing one named
    assert found.smallest.seq_len < found.case.seq_len and found.error > 0, found.smallest
    assert found.differing, found.sentence
    if named == "dq-scale-missing":  # the scale forgotten in dq: dq alone differs
        assert found.differing == ("d q",), found.differing


def test_a_correct_backward_pass_is_never_shrunk_as_a_failure_nor_named():
    """Against the correct forms the backward diagnosis holds nothing: the gradients differ
    nowhere beyond its bound, and no gradient signature equals them where its mistake shows."""
    from harness.core.op_case import OpCase
    from harness.diagnosis import backward, gradient_signatures
    from harness.diagnosis.backward import explains

    registry = Registry.load()
    for spec, case in [(registry.specs["scratch-gru"], BASE.with_(with_hx=True)),
                       (registry.specs["torch-lstm"], BASE),
                       (registry.specs["gated-delta-chunk"],
                        OpCase(**OP_GRADIENT_CASE, chunk_size=8)),
                       (registry.specs["scalar-decay-chunk"],
                        OpCase(**OP_GRADIENT_CASE, chunk_size=8))]:
        got, want = backward.gradients_of(spec, case)
        assert want and backward.differing(got, want, *backward.bound(spec, case)) == []
        signatures = gradient_signatures.of(case)
        assert signatures and not [s.name for s in signatures if explains(spec, case, s)]


def test_a_forward_bug_failing_a_gradient_check_keeps_its_signature():
    found = Diagnoser(spec_of("bugs:SwappedGatesLSTM", "lstm")).of(BASE, gradients=True)
    assert found is not None and found.matched and not found.backward, found and found.sentence


@pytest.mark.parametrize(("target", "family_name", "flag", "check"), [
    ("bugs:WrongGateDerivativeLSTM", "lstm", "--impl-class", "gradients_match_reference"),
    ("ops:ScaleMissingInDqScalarDecay", "scalar_decay", "--impl-fn",
     "op_gradients_match_reference"),
], ids=["module", "op"])
def test_a_backward_only_failure_s_repro_script_compares_gradients(tmp_path, target,
                                                                   family_name, flag, check):
    """A failure placed in the backward pass leaves a script: alone in a fresh interpreter it
    runs one backward pass of each on the smallest case, prints the first differing gradient
    value, and exits 1."""
    module, _, mutant = target.partition(":")
    out = tmp_path / "out"
    assert main(["run", flag, f"tests.mutants.{module}:{mutant}", "--family", family_name,
                 "--suite", "gradients", "--workers", "0", "--confirm-alone", "0",
                 "-k", f"{check} and not gradcheck", "--maxfail", "1",
                 "--out", str(out)]) == 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    diagnoses = [r["metrics"]["diagnosis"] for r in records if r["outcome"] == "failed"]
    assert diagnoses and diagnoses[0]["signatures"][0] == "backward-only", diagnoses
    done = subprocess.run([sys.executable, str(out / diagnoses[0]["script"])],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "d " in done.stdout and "differs first at" in done.stdout, done.stdout


@pytest.mark.parametrize(("target", "family_name", "flag", "suite", "check", "name"), [
    ("bugs:ReusedBufferLSTM", "lstm", "--impl-class", "state", "results_survive_the_next_call",
     "shared-output-buffer"),
    ("ops:CachedStateGatedDelta", "gated_delta", "--impl-fn", "state",
     "op_calls_do_not_leak_state", "state-kept-between-calls"),
], ids=["module", "op"])
def test_a_behaviour_s_repro_script_runs_its_experiment_again(tmp_path, target, family_name,
                                                               flag, suite, check, name):
    """A failure that no single call shows leaves a script too: alone in a fresh interpreter it
    runs the behaviour's experiment on the case it showed on, says it shows, and exits 1."""
    module, _, mutant = target.partition(":")
    out = tmp_path / "out"
    assert main(["run", flag, f"tests.mutants.{module}:{mutant}", "--family", family_name,
                 "--suite", suite, "-k", check, "--maxfail", "1", "--workers", "0",
                 "--confirm-alone", "0", "--out", str(out)]) == 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    scripts = {r["metrics"]["diagnosis"].get("script") for r in records
               if r["outcome"] == "failed" and name in r["metrics"].get("diagnosis", {})
               .get("signatures", [])}
    scripts.discard(None)
    assert scripts
    done = subprocess.run([sys.executable, str(out / sorted(scripts)[0])], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{name}: shows" in done.stdout, done.stdout


def test_a_behaviour_failure_is_shrunk_unless_its_experiment_draws_dropout():
    """A behaviour's failing case is shrunk while it still shows (a state kept between calls
    shows at one step and one feature); a dropout experiment's is not (on one unit, dropout
    keeps or drops it alike in two calls half the time: a script of that case would reproduce
    by chance)."""
    kept = Diagnoser(spec_of("bugs:StatefulLSTM", "lstm")).of(BASE)
    assert kept is not None and kept.names == ("state-kept-between-calls",), kept
    assert (kept.smallest.seq_len, kept.smallest.hidden_size) == (1, 1), describe(kept.smallest)
    case = BASE.with_(num_layers=2, dropout=0.5)
    random = Diagnoser(spec_of("bugs:EvalDropoutGRU", "gru")).of(case)
    assert random is not None and random.names == ("dropout-in-eval",), random
    assert random.smallest == case


def test_an_empty_batch_with_wrong_shapes_is_not_taken_for_stale_weights():
    """With no rows and a squeezed h_n, the outputs before and after new weights are equal (both
    empty) and differ from the reference's in shape: no experiment can judge the weights, and
    no behaviour is named (it was once 'stale-weights')."""
    found = Diagnoser(spec_of("bugs:SqueezingRNN", "rnn_tanh")).of(BASE.with_(batch=0))
    assert found is None or "stale-weights" not in found.names, found.sentence


def survey_rows():
    from tests.test_mutants import MUTANTS, SLOW

    return [pytest.param(*row, id=f"{row[0]}-{row[3]}") for row in MUTANTS
            if (row[1], row[2]) not in SLOW]


@pytest.mark.slow
@pytest.mark.parametrize(("mutant", "family_name", "suite", "check"), survey_rows())
def test_every_diagnosed_failure_of_a_mutant_has_a_script_that_reproduces_it(
        tmp_path, mutant, family_name, suite, check):
    """Each mutant through the check written for it, diagnosis on: every failure the diagnosis
    explains (a value mismatch, a behaviour, the backward pass) has its smallest case and a
    repro script, and each script, alone in a fresh interpreter, exits 1. (A failure it does not
    explain — a missing gradient, an exception no plain call raises, the error contract — says
    itself and has the report's reproduce command.)"""
    from tests.test_mutants import only

    module, _, name = mutant.rpartition(":")
    flag = "--impl-fn" if module == "ops" else "--impl-class"
    out = tmp_path / "out"
    main(["run", flag, f"tests.mutants.{module or 'bugs'}:{name}", "--family", family_name,
          "--suite", suite, "--workers", "0", "--confirm-alone", "0", "--out", str(out),
          "-k", only(suite, check)])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["outcome"] == "failed" and r["check"] == check]
    assert failed
    explained = [r["metrics"]["diagnosis"] for r in failed if "diagnosis" in (r["metrics"] or {})]
    # a failure the check named itself (harness.core.failed.Explained: nothing tried, no error
    # measured), or one placed in a backward pass whose plain call agrees (the check's own way
    # of calling shows it: two calls, an output changed in place), keeps the report's
    # reproduce command instead of a script: a plain call would not reproduce it
    plain = [d for d in explained if "backward-only" in d["signatures"] and not d.get("error")]
    assert all("so do its gradients in a plain call" in d["sentence"] for d in plain), plain
    explained = [d for d in explained if (d.get("tried") or d.get("error") is not None)
                 and d not in plain]
    assert all(d.get("script") and d.get("smallest") for d in explained), explained
    for script in {d["script"] for d in explained}:
        done = subprocess.run([sys.executable, str(out / script)], capture_output=True,
                              text=True, cwd=tmp_path, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 1, (script, done.stdout, done.stderr)


def test_every_backward_failure_of_truncated_backprop_is_named_so(tmp_path):
    """Through the whole gradients suite (lengths, two directions, layers, float64): each failure
    the backward diagnosis places is named truncated-backprop — its cases shrink keeping two
    steps, where the mistake still shows, not to one step, where it cannot be told from a lost
    h_0 gradient."""
    out = tmp_path / "out"
    main(["run", "--impl-class", "tests.mutants.bugs:TruncatedBackpropGRU", "--family", "gru",
          "--suite", "gradients", "-k", "not gradcheck",  # its failures: full Jacobians
          "--workers", "0", "--confirm-alone", "0", "--out", str(out)])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    placed = [r["metrics"]["diagnosis"] for r in records if r["outcome"] == "failed"
              and "backward-only" in (r["metrics"] or {}).get("diagnosis", {}).get(
                  "signatures", [])]
    assert len(placed) >= 5, placed
    assert all(d["signatures"] == ["backward-only", "truncated-backprop"] for d in placed), [
        (d["smallest"], d["sentence"][:120]) for d in placed]


@pytest.mark.parametrize(("flag", "target", "family_name", "check", "at"), [
    ("--impl-class", "tests.mutants.bugs:NaiveSigmoidLSTM", "lstm", "gradients_stay_finite",
     "inputs x100"),
    ("--impl-fn", "tests.mutants.ops:LogOfSigmoidMLSTM", "mlstm", "op_gradients_stay_finite",
     "gates f-low"),
])
def test_a_gradient_that_overflows_is_named_by_its_check(tmp_path, flag, target, family_name,
                                                         check, at):
    """NaN gradients under a finite forward at an extreme are named by the check that finds
    them (the extreme is not a case the shrinking can rebuild): the pattern, the fix and the
    extreme, in the record, the message and the report's diagnosis table."""
    out = tmp_path / "out"
    code = main(["run", flag, target, "--family", family_name, "--suite", "extremes",
                 "-k", check, "--workers", "0", "--confirm-alone", "0", "--out", str(out)])
    assert code == 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert failed and all(r["check"] == check for r in failed)
    for r in failed:
        found = r["metrics"]["diagnosis"]
        assert found["signatures"] == ["overflowing backward"]
        assert found["smallest"].endswith(at)
        assert "non-finite values where the reference has none" in r["message"]
        assert "F.logsigmoid" in found["sentence"]
    assert "its gradients are NaN or inf at an extreme" in (out / "report.md").read_text()


@pytest.mark.parametrize(("target", "family_name", "check", "pattern", "named"), [
    ("RecomputedDropoutGRU", "gru", "gradients_with_dropout_follow_the_forward",
     "dropout mask redrawn in backward", True),
    # wrong in eval mode too: not a mask's doing
    ("WrongGateDerivativeLSTM", "lstm", "gradients_with_dropout_follow_the_forward",
     "dropout mask redrawn in backward", False),
    ("DirectionSharedDropoutLSTM", "lstm", "dropout_masks_each_direction_apart",
     "dropout mask shared by the directions", True),
    # no dropout in training at all: not a shared mask
    ("IgnoredDropoutGRU", "gru", "dropout_masks_each_direction_apart",
     "dropout mask shared by the directions", False),
])
def test_a_dropout_mistake_is_named_only_where_its_control_experiment_says_so(
        tmp_path, target, family_name, check, pattern, named):
    """A gradient in training with dropout that is not its forward's is named as masks redrawn
    in the backward pass only where the same comparison holds in eval mode; training equal to
    eval under mirrored directions is named a mask shared by the directions only where the
    module drops at all. Otherwise the generic diagnosis, never those names."""
    out = tmp_path / "out"
    code = main(["run", "--impl-class", f"tests.mutants.bugs:{target}", "--family",
                 family_name, "-k", check, "--workers", "0", "--confirm-alone", "0",
                 "--out", str(out)])
    assert code == 1
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["outcome"] == "failed" and r["check"] == check]
    assert failed
    for r in failed:
        signatures = (r["metrics"] or {}).get("diagnosis", {}).get("signatures", [])
        assert (pattern in signatures) is named, signatures
