"""Each suite catches the bug it exists for: every mutant in tests/mutants fails its check, and the
correct class it was derived from passes the same suites."""

from __future__ import annotations

import ast
import json

import pytest

from harness.cli import main
from harness.conformance.suites import suites

# mutant class (tests.mutants.bugs), family, the suite and check written to catch it
MUTANTS = [
    ("SwappedGatesLSTM", "lstm", "shapes", "values_match_reference"),
    ("SigmoidCandidateLSTM", "lstm", "shapes", "values_match_reference"),
    ("ResetBeforeMatmulGRU", "gru", "shapes", "values_match_reference"),
    ("SwappedUpdateGRU", "gru", "shapes", "values_match_reference"),
    ("OneBiasRNN", "rnn_tanh", "shapes", "values_match_reference"),
    ("Float32AccumulatingLSTM", "lstm", "shapes", "values_match_reference"),
    ("BatchFirstStateGRU", "gru", "shapes", "output_and_state_shapes"),
    ("UnbatchedKeepsBatchRNN", "rnn_tanh", "shapes", "output_and_state_shapes"),
    ("SqueezingRNN", "rnn_tanh", "shapes", "output_and_state_shapes"),
    ("SqueezedStateGRU", "gru", "shapes", "values_match_reference"),
    ("InPlaceClampGRU", "gru", "gradients", "gradients_match_reference"),
    ("TransposesUnbatchedGRU", "gru", "shapes", "output_and_state_shapes"),
    ("DirectionMajorGRU", "gru", "shapes", "h_n_rows_are_layer_major"),
    ("ReverseNotRealignedRNN", "rnn_tanh", "shapes", "h_n_rows_are_layer_major"),
    ("SwappedFinalStateLSTM", "lstm", "shapes", "values_match_reference"),
    ("ReverseForwardWeightsLSTM", "lstm", "shapes", "values_match_reference"),
    ("FirstRowHxGRU", "gru", "shapes", "values_match_reference"),
    ("DirectionMajorHxGRU", "gru", "state", "given_hx_is_used"),
    ("ViewingLSTM", "lstm", "shapes", "non_contiguous_inputs"),
    ("PaddingLeaksGRU", "gru", "padding", "each_sequence_alone"),
    ("ReverseIgnoresLengthsLSTM", "lstm", "padding", "each_sequence_alone"),
    ("LastPaddedStepLSTM", "lstm", "padding", "each_sequence_alone"),
    ("LastPaddedStepLSTM", "lstm", "many-to-one", "last_valid_step_is_the_final_state"),
    ("SortedOrderLSTM", "lstm", "padding", "each_sequence_alone"),
    ("CarriedPaddingGRU", "gru", "padding", "padded_steps_output_zero"),
    ("CarriedPaddingGRU", "gru", "many-to-one", "naive_last_step_is_wrong_on_padded_input"),
    ("IgnoresHxRNN", "rnn_tanh", "state", "given_hx_is_used"),
    ("IgnoresHxRNN", "rnn_tanh", "many-to-many", "stepwise_equals_full_sequence"),
    ("StatefulLSTM", "lstm", "state", "calls_do_not_leak_state"),
    ("StatefulLSTM", "lstm", "state", "hx_none_equals_zeros"),
    ("ShapeCachedMaskGRU", "gru", "state", "calls_do_not_leak_state"),
    ("UnmaskedSingleRowGRU", "gru", "padding", "matches_reference"),
    ("UnmaskedSingleRowGRU", "gru", "padding", "padded_steps_output_zero"),
    ("InPlaceHxGRU", "gru", "state", "inputs_are_not_modified"),
    ("NoGradInPlaceHxGRU", "gru", "state", "inputs_are_not_modified"),
    ("NoGradInPlaceHxGRU", "gru", "inference", "repeated_calls_under_no_grad"),
    ("ZeroesPaddingLSTM", "lstm", "state", "inputs_are_not_modified"),
    ("ReusedBufferLSTM", "lstm", "state", "results_survive_the_next_call"),
    ("HnViewGRU", "gru", "state", "returned_tensors_do_not_share_memory"),
    ("CachedWeightsRNN", "rnn_tanh", "state", "parameter_updates_are_seen"),
    ("VersionCachedWeightsRNN", "rnn_tanh", "state", "writes_through_data_are_seen"),
    ("NoGradCachedWeightsRNN", "rnn_tanh", "state", "writes_through_data_are_seen"),
    ("EvalDropoutGRU", "gru", "state", "dropout_only_between_layers_in_training"),
    ("OutputDropoutLSTM", "lstm", "state", "dropout_only_between_layers_in_training"),
    ("KeepProbDropoutGRU", "gru", "state", "dropout_moves_outputs_as_torch_s_does"),
    ("UnscaledDropoutLSTM", "lstm", "state", "dropout_moves_outputs_as_torch_s_does"),
    ("VariationalDropoutGRU", "gru", "state", "dropout_moves_outputs_as_torch_s_does"),
    ("BatchSharedDropoutLSTM", "lstm", "state", "dropout_moves_outputs_as_torch_s_does"),
    ("ValueErrorLSTM", "lstm", "errors", "wrong_hx_layers"),
    ("BroadcastingHxGRU", "gru", "errors", "wrong_hx_layers"),
    ("BarePackedLSTM", "lstm", "errors", "wrong_input_size"),
    ("BarePackedLSTM", "lstm", "errors", "wrong_hx_batch"),
    ("ExpTanhRNN", "rnn_tanh", "numerics", "large_inputs"),
    ("TruncatedBackpropGRU", "gru", "gradients", "gradients_match_reference"),
    ("TruncatedBackpropGRU", "gru", "gradients", "gradcheck"),
    ("TruncatedBackpropGRU", "gru", "stability", "gradient_norms_over_time"),
    ("WrongGateDerivativeLSTM", "lstm", "gradients", "gradients_match_reference"),
    ("WrongGateDerivativeLSTM", "lstm", "gradients", "gradcheck"),
    ("RemainderDerivativeLSTM", "lstm", "gradients", "gradcheck"),
    ("WrongTanhDerivativeRNN", "rnn_tanh", "gradients", "gradients_match_reference"),
    ("Float32AccumulatingLSTM", "lstm", "gradients", "gradcheck"),
    ("NoGradLSTM", "lstm", "gradients", "gradients_match_reference"),
    ("NoGradLSTM", "lstm", "gradients", "padded_steps_get_zero_gradient"),
    ("NoGradLSTM", "lstm", "gradients", "gradcheck"),
    ("NoGradLSTM", "lstm", "stability", "gradient_norms_over_time"),
    ("NoGradLSTM", "lstm", "stability", "large_recurrent_weights_finite_or_flagged"),
    ("NoGradLSTM", "lstm", "adding", "adding_problem"),
    ("DetachedOutputsGRU", "gru", "gradients", "gradients_match_reference"),
    ("DetachedOutputsGRU", "gru", "gradients", "padded_steps_get_zero_gradient"),
    ("DetachedOutputsGRU", "gru", "gradients", "gradcheck"),
    ("DetachedOutputsGRU", "gru", "stability", "gradient_norms_over_time"),
    ("DetachedInputRNN", "rnn_tanh", "gradients", "gradients_match_reference"),
    ("DetachedInputRNN", "rnn_tanh", "gradients", "padded_steps_get_zero_gradient"),
    ("DetachedInputRNN", "rnn_tanh", "gradients", "gradcheck"),
    ("EvalNoGradLSTM", "lstm", "gradients", "gradients_in_eval_mode"),
    ("EvalNoGradLSTM", "lstm", "gradients", "gradients_match_reference"),
    ("ReentrantCheckpointGRU", "gru", "gradients", "parameter_gradients_when_training"),
    ("NaiveSigmoidLSTM", "lstm", "extremes", "gradients_stay_finite"),
    ("RandnInitLSTM", "lstm", "shapes", "parameters_initialised_like_torch"),
    ("TruncatedLongBackpropGRU", "gru", "gradients", "gradient_reaches_h0_over_long_sequences"),
    ("FrozenNoGradLSTM", "lstm", "gradients", "input_gradients_with_frozen_parameters"),
    ("OwnGeneratorDropoutGRU", "gru", "state", "dropout_follows_torch_s_seed"),
    ("RecomputedDropoutGRU", "gru", "gradients", "gradients_with_dropout_follow_the_forward"),
    ("DirectionSharedDropoutLSTM", "lstm", "state", "dropout_masks_each_direction_apart"),
    ("IgnoredDropoutGRU", "gru", "state", "dropout_only_between_layers_in_training"),
    ("PositionalNonlinearityRNN", "rnn_relu", "shapes", "built_positionally_as_torch"),
    ("SlicedBatchGRU", "gru", "shapes", "values_match_reference"),
    ("ForgottenFoldFastGRU", "gru", "gradients", "gradients_match_reference"),
    ("SortedCellStateLSTM", "lstm", "padding", "matches_reference"),
    ("WorkspaceGradFastRNN", "rnn_tanh", "gradients", "two_calls_in_one_graph"),
    ("ZeroStateAttributeLSTM", "lstm", "state", "converted_after_building"),
    ("HoistedWideGRU", "gru", "shapes", "values_match_reference"),
    ("SortedIndicesGRU", "gru", "padding", "matches_reference"),
    ("SavedDerivativeLSTM", "lstm", "gradients", "second_derivatives"),
    ("ReverseFromZerosGRU", "gru", "state", "given_hx_is_used"),
    ("ReversedConcatLSTM", "lstm", "shapes", "values_match_reference"),
    ("ZeroBiasGRU", "gru", "shapes", "parameters_initialised_like_torch"),
    ("ForgetBiasOneLSTM", "lstm", "shapes", "parameters_initialised_like_torch"),
    ("ZeroStateCacheGRU", "gru", "state", "converted_after_building"),
    ("NoBiasZerosGRU", "gru", "shapes", "values_match_reference"),
    ("TiledBatchLSTM", "lstm", "shapes", "values_match_reference"),
    ("EarlyReturnBackwardRNN", "rnn_tanh", "gradients", "input_gradients_with_frozen_parameters"),
    ("InferenceCachedStateGRU", "gru", "state", "trains_after_an_inference_call"),
    ("CtxKeptOutputsRNN", "rnn_tanh", "gradients", "output_changed_in_place_before_backward"),
    ("PiecewiseProjectionGRU", "gru", "accuracy", "error_at_standard_shape"),
    ("LambdaGateGRU", "gru", "state", "saved_whole_and_loaded"),
    ("TracedOnceGRU", "gru", "state", "deep_copies_compute_apart"),
]

# The families torch does not have (tests.mutants.families), each against its correct parent.
FAMILY_MUTANTS = [
    ("ScanIgnoresH0MinGRU", "mingru", "state", "given_hx_is_used"),
    ("ScanIgnoresH0MinGRU", "mingru", "streaming", "split_sequence_equals_whole"),
    ("GTwiceMinGRU", "mingru", "shapes", "values_match_reference"),
    ("WhereOverflowMinGRU", "mingru", "extremes", "gradients_stay_finite"),
    ("StepPathMinLSTM", "minlstm", "many-to-many", "stepwise_equals_full_sequence"),
    ("SoftplusAsWrittenRGLRU", "rglru", "numerics", "precision_like_the_reference"),
    ("SoftplusAsWrittenRGLRU", "rglru", "numerics", "precision_over_long_sequences"),
    ("SwappedBlocksMinLSTM", "minlstm", "shapes", "values_match_reference"),
    ("ChunkOffByOneMinGRU", "mingru", "parallel-vs-reference",
     "lengths_around_chunk_boundaries_match_reference"),
    ("ChunkOffByOneMinGRU", "mingru", "parallel-vs-reference", "chunk_size_invariance"),
    ("ExpSpaceScanMinGRU", "mingru", "extremes", "gates_open_decays_huge"),
    ("ExpSpaceScanMinGRU", "mingru", "numerics", "long_sequence"),
    ("LogSpaceScanMinGRU", "mingru", "numerics", "precision_over_long_sequences"),
    ("LogSpaceScanMinGRU", "mingru", "numerics", "long_sequence"),
    ("CancellingRGLRU", "rglru", "numerics", "precision_like_the_reference"),
    ("CancellingRGLRU", "rglru", "extremes", "saturated_gates"),
    ("RatioMinLSTM", "minlstm", "extremes", "gates_underflow"),
    ("SigmoidCandidateMinGRU", "mingru", "shapes", "values_match_reference"),
    ("NoActivationMinLSTM", "minlstm", "shapes", "values_match_reference"),
    ("UnscaledInputRGLRU", "rglru", "shapes", "values_match_reference"),
    ("NoDecayConstantRGLRU", "rglru", "shapes", "values_match_reference"),
    ("TanhIndRNN", "indrnn", "shapes", "values_match_reference"),
    ("ReluBeforeRecurrenceIndRNN", "indrnn", "shapes", "values_match_reference"),
    ("ProjectionCacheMinGRU", "mingru", "state", "input_refilled_in_place_is_seen"),
    ("LogOfH0MinLSTM", "minlstm", "gradients", "gradients_through_a_zero_initial_state"),
    ("BlockRestartMinGRU", "mingru", "numerics", "long_sequence"),
    ("UnscannedCarryMinGRU", "mingru", "numerics", "long_sequence"),
]
MUTANTS += [(f"families:{m}", *rest) for m, *rest in FAMILY_MUTANTS]

# The fast layers with a bug in their compiled gate maths (tests.mutants.compiled).
COMPILED_MUTANTS = [
    ("UnclampedExpFastLSTM", "lstm", "numerics", "large_inputs"),
    ("ResetOutsideFastGRU", "gru", "shapes", "values_match_reference"),
    ("PlainTanhFastRNN", "rnn_tanh", "numerics", "precision_like_the_reference"),
]
MUTANTS += [(f"compiled:{m}", *rest) for m, *rest in COMPILED_MUTANTS]

# Matrix-state ops with one bug each (tests.mutants.ops), the bug classes their users report.
OP_MUTANTS = [
    ("MaskAfterExpScalarDecay", "scalar_decay", "extremes", "op_gate_stress"),
    ("CarryOffByOneScalarDecay", "scalar_decay", "chunking", "chunk_size_invariance"),
    ("CarryOffByOneScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("PaddedChunkScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("EmptyTailScalarDecay", "scalar_decay", "poisoning", "reads_only_what_it_wrote"),
    ("ZeroDecayIsResetScalarDecay", "scalar_decay", "extremes", "op_gate_stress"),
    ("IgnoresInitialStateScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("DetachedInitialStateScalarDecay", "scalar_decay", "streaming",
     "op_split_sequence_equals_whole"),
    ("DetachedInitialStateScalarDecay", "scalar_decay", "gradients",
     "op_gradients_match_reference"),
    ("LeakyVarlenScalarDecay", "scalar_decay", "varlen", "op_sequences_alone"),
    ("VarlenScaleDroppedMLSTM", "mlstm", "varlen", "op_sequences_alone"),
    ("DecayAfterDeltaGatedDelta", "gated_delta", "values", "matches_reference"),
    ("DiagonalKeptGatedDelta", "gated_delta", "values", "matches_reference"),
    ("HardcodedScaleGatedDelta", "gated_delta", "values", "matches_reference"),
    ("TwoPathsGatedDelta", "gated_delta", "values", "matches_reference"),
    ("StridesIgnoredScalarDecay", "scalar_decay", "values", "non_contiguous_inputs"),
    ("InPlaceScaledQueryScalarDecay", "scalar_decay", "state", "op_inputs_are_not_modified"),
    ("ReusedBufferMLSTM", "mlstm", "state", "op_results_survive_the_next_call"),
    ("CachedStateGatedDelta", "gated_delta", "state", "op_calls_do_not_leak_state"),
    ("DetachedFinalStateGatedDelta", "gated_delta", "gradients", "op_gradients_match_reference"),
    ("ScaleMissingInDqScalarDecay", "scalar_decay", "gradients", "op_gradients_match_reference"),
    ("ChunkDetachedGatedDelta", "gated_delta", "gradients", "op_gradients_match_reference"),
    ("WidenedOutputScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("NarrowedStateMLSTM", "mlstm", "values", "matches_reference"),
    ("UncheckedScalarDecay", "scalar_decay", "errors", "op_key_dim_differs_from_q"),
    ("UncheckedScalarDecay", "scalar_decay", "errors", "op_gate_one_step_too_long"),
    ("UncheckedScalarDecay", "scalar_decay", "errors", "op_initial_state_one_row_too_many"),
    ("UncheckedScalarDecay", "scalar_decay", "errors", "op_cu_seqlens_with_two_batch_rows"),
    ("LowerBoundOneMLSTM", "mlstm", "values", "matches_reference"),
    ("DroppedStabiliserMLSTM", "mlstm", "values", "matches_reference"),
    ("InitialStabiliserIgnoredMLSTM", "mlstm", "values", "matches_reference"),
    ("MinusInfStartMLSTM", "mlstm", "values", "matches_reference"),
    ("ScaleOnKeysScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("ValueDimScaleScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("TransposedStateGatedDelta", "gated_delta", "values", "matches_reference"),
    ("FirstStateForAllScalarDecay", "scalar_decay", "varlen", "op_sequences_alone"),
    ("EmptySequenceZeroStateScalarDecay", "scalar_decay", "varlen", "op_sequences_alone"),
    ("BetaOnValueOnlyGatedDelta", "gated_delta", "values", "matches_reference"),
    ("NoAbsNormaliserMLSTM", "mlstm", "values", "matches_reference"),
    ("EpsInsideMaxMLSTM", "mlstm", "values", "matches_reference"),
    ("FactoredDecaysGatedDelta", "gated_delta", "extremes", "op_gate_stress"),
    ("Float32InsideGatedDelta", "gated_delta", "values", "matches_reference"),
    ("LogOfSigmoidMLSTM", "mlstm", "extremes", "op_gradients_stay_finite"),
    ("IgnoredChunkSizeScalarDecay", "scalar_decay", "chunking", "chunk_size_takes_effect"),
    ("InputDtypeScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("MeanDecayFactoredScalarDecay", "scalar_decay", "extremes", "op_gate_stress"),
    ("DetachedMaskGatedDelta", "gated_delta", "gradients", "op_gradients_match_reference"),
    ("DecodeScaleDroppedScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("TrailingEmptyDroppedScalarDecay", "scalar_decay", "varlen", "op_sequences_alone"),
    ("Float32ScaleGatedDelta", "gated_delta", "values", "matches_reference"),
    ("WidenedBfloat16OutputGatedDelta", "gated_delta", "values", "matches_reference"),
    ("BucketedVarlenMLSTM", "mlstm", "varlen", "op_sequences_alone"),
    ("TwoLevelInverseGatedDelta", "gated_delta", "chunking", "chunk_size_invariance"),
    ("RememberedOffsetsScalarDecay", "scalar_decay", "state", "op_cu_seqlens_refilled_in_place"),
    ("Float32MaskGatedDelta", "gated_delta", "values", "matches_reference"),
    ("UncheckedOffsetsScalarDecay", "scalar_decay", "errors", "op_cu_seqlens_invalid"),
    ("GroupsRestartScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("DecodeAlwaysStateScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("DecodeNeedsStateGatedDelta", "gated_delta", "values", "matches_reference"),
    ("DecodeBfloat16StateMLSTM", "mlstm", "values", "matches_reference"),
    ("SegmentsRestartScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("TokenPerSequenceGatedDelta", "gated_delta", "varlen", "op_sequences_alone"),
    ("MultipleOf16InverseGatedDelta", "gated_delta", "chunking", "chunk_size_invariance"),
    ("FirstChunkDecidesScalarDecay", "scalar_decay", "extremes", "op_gate_stress"),
    ("StatesFromZerosScalarDecay", "scalar_decay", "gradients",
     "op_gradients_with_the_initial_state_detached"),
    ("CachedScaleTensorGatedDelta", "gated_delta", "state", "op_trains_after_an_inference_call"),
    ("FlattenedInputsScalarDecay", "scalar_decay", "gradients",
     "op_gradients_from_non_contiguous_inputs"),
    ("Float16NativeScalarDecay", "scalar_decay", "values", "matches_reference"),
    ("Bfloat16OnlyOutputMLSTM", "mlstm", "values", "matches_reference"),
]
MUTANTS += [(f"ops:{m}", *rest) for m, *rest in OP_MUTANTS]

# Precision mutants: every value failure names both errors against float64 (the implementation's
# and the reference's own rounding), so a reader sees it is not rounding.
PRECISION = {"LogSpaceScanMinGRU", "CancellingRGLRU", "PlainTanhFastRNN", "SoftplusAsWrittenRGLRU"}

# Mutants whose gradient never reaches something torch's does: every failing check must say so.
NO_GRADIENT = {"NoGradLSTM", "DetachedOutputsGRU", "DetachedInputRNN", "EvalNoGradLSTM",
               "DetachedInitialStateScalarDecay", "ReentrantCheckpointGRU", "FrozenNoGradLSTM"}

CORRECT = {
    "mingru": "tests.mutants.families:ChunkedMinGRU",
    "minlstm": "tests.mutants.families:ChunkedMinLSTM",
    "rglru": "tests.mutants.families:ChunkedRGLRU",
    "indrnn": "harness.impls.diagonal:IndRNNFused",
    "lstm": "harness.impls.scratch:ScratchLSTM",
    "gru": "harness.impls.scratch:ScratchGRU",
    "rnn_tanh": "harness.impls.course_cell:ScratchRNN",
    "rnn_relu": "harness.impls.course_cell:ScratchRNN",
    "scalar_decay": "harness.ops.scalar_decay:scalar_decay_chunk",
    "gated_delta": "harness.ops.gated_delta:gated_delta_chunk",
    "mlstm": "harness.ops.mlstm:mlstm_chunk",
}


def run_suite(target: str, family: str, suite: str, out, keyword: str | None = None,
              workers: int = 0, maxfail: int = 0) -> tuple[int, list[dict]]:
    code = main(["run", "--impl-class", target, "--family", family, "--suite", suite,
                 "--workers", str(workers), "--confirm-alone", "0", "--out", str(out),
                 "--no-diagnosis",  # catching is checked here; naming, in test_diagnosis
                 "--no-report",  # the records are what is read
                 "--maxfail", str(maxfail), *(["-k", keyword] if keyword else [])])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return code, records


# Training tasks take a minute in CI: in the slow tier (the gradient checks catch NoGradLSTM).
SLOW = {("lstm", "adding")}
# Rows whose mutant CI already sees caught by a cheaper check (gradients_match_reference names
# the wrong derivative in a second; float64 gradcheck takes ten): in the slow tier.
SLOW_ROWS = {("WrongGateDerivativeLSTM", "gradcheck"),
             # shapes::values_match_reference catches it in CI (float32 sums differ at once)
             ("Float32AccumulatingLSTM", "gradcheck"),
             # gradients_match_reference catches it in CI (the truncated gradient differs)
             ("TruncatedBackpropGRU", "gradcheck"),
             # precision_like_the_reference catches it in CI (T=5 against 2000 steps)
             ("SoftplusAsWrittenRGLRU", "precision_over_long_sequences"),
             # a measuring suite's check at H=512 (11 s): with the suite, in the main job
             ("PiecewiseProjectionGRU", "error_at_standard_shape")}


def only(suite: str, check: str) -> str:
    """A -k expression for the check alone: not the suite's checks whose names hold its name
    (numerics::long_sequence is in precision_over_long_sequences)."""
    by_name = {s.name: s for s in suites()}
    tree = ast.parse(by_name[suite].path.read_text())
    others = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
              and check in node.name and node.name != f"test_{check}"]
    return f"{check} and not ({' or '.join(others)})" if others else check


def in_slow_tier(row) -> bool:
    """Whether a (mutant, family, suite, check) row runs in the slow tier only (its mutant
    named without its module, as SLOW_ROWS names it)."""
    return (row[1], row[2]) in SLOW or (row[0].rpartition(":")[2], row[3]) in SLOW_ROWS


def marked(rows):
    """pytest params of (mutant, family, suite, check) rows, the SLOW suites and rows marked
    slow."""
    return [pytest.param(*row, id=f"{row[0]}-{row[3]}",
                         marks=[pytest.mark.slow] if in_slow_tier(row) else [])
            for row in rows]


def controls() -> list:
    """pytest params of (family, suite, checks): the checks of each family's suite that rows
    catch mutants with, those of CI's rows apart from those only slow rows use (marked slow)."""
    tiers: dict[tuple[str, str, bool], set[str]] = {}
    for row in MUTANTS:
        tiers.setdefault((row[1], row[2], in_slow_tier(row)), set()).add(row[3])
    params = []
    for (family, suite, slow), checks in sorted(tiers.items()):
        if slow:
            checks = checks - tiers.get((family, suite, False), set())
        if checks:
            params.append(pytest.param(family, suite, tuple(sorted(checks)),
                                       id=f"{family}-{suite}{'-slow' if slow else ''}",
                                       marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize(("mutant", "family", "suite", "check"), marked(MUTANTS))
def test_suite_catches_mutant(mutant, family, suite, check, tmp_path):
    module, _, name = mutant.rpartition(":")  # tests.mutants.bugs unless named
    # The check's cases only, up to the first that fails (the control runs them all).
    code, records = run_suite(f"tests.mutants.{module or 'bugs'}:{name}", family, suite,
                              tmp_path, only(suite, check), maxfail=1)
    failed = [r for r in records if r["check"] == check and r["outcome"] == "failed"]
    assert code == 1
    assert failed, f"{suite}::{check} did not catch {mutant}"
    assert all(r["message"] for r in failed)
    if name in NO_GRADIENT and check != "gradcheck":
        assert all("no gradient reaches" in r["message"] for r in failed), failed[0]["message"]
    if name in PRECISION:
        assert all("float64" in r["message"] and "rounding" in r["message"] for r in failed), \
            failed[0]["message"]


@pytest.mark.parametrize(("family", "suite", "checks"), controls())
def test_correct_classes_pass_the_same_suites(family, suite, checks, tmp_path):
    """The control: the classes the mutants were derived from pass the checks that catch the
    mutants, so each failure above is the bug's doing."""
    code, records = run_suite(CORRECT[family], family, suite, tmp_path, " or ".join(checks))
    failed = [f"{r['check']}[{r['case_id']}]: {r['message']}" for r in records
              if r["outcome"] == "failed"]
    assert failed == []
    assert code == 0
    assert any(r["outcome"] == "passed" for r in records)


# TorchScript's executor keeps what it profiled per scripted function for the whole process: once
# the scripted LSTM has run elsewhere in a test process, its plan is already optimised and the
# inference-mode failure no longer shows. This one is checked as a run meets it: in a fresh
# worker process.
FRESH_PROCESS = {"InferenceModeScriptLSTM"}

# Deployment variants with one mistake each (tests.mutants.deploy): the check that catches it
# and what its failure says. The Loose* mutants declare atol 10: exact checks are not loosened.
DEPLOY_MUTANTS = [
    ("TightInt8LSTM", "lstm", "shapes", "values_match_reference", "declared by tight-int-8-lstm"),
    ("AutogradClaimingInt8GRU", "gru", "gradients", "gradients_match_reference",
     "no gradient reaches"),
    ("EagerCompiledGRU", "gru", "compile", "compile_captures_graphs",
     "captured no graph during a call: it ran eagerly"),
    ("ChunkedScriptLSTM", "lstm", "gradients", "gradcheck", "expected those two sizes"),
    ("InferenceModeScriptLSTM", "lstm", "inference", "repeated_calls_under_inference_mode",
     "Inference tensors cannot be saved for backward"),
    ("LooseCarriedPaddingGRU", "gru", "padding", "padded_steps_output_zero",
     "output at padded steps differs"),
    ("LooseInPlaceHxGRU", "gru", "state", "inputs_are_not_modified", "h_0 after a call"),
    ("LooseBatchFirstStateGRU", "gru", "shapes", "output_and_state_shapes", "h_n has shape"),
    ("LooseValueErrorLSTM", "lstm", "errors", "wrong_hx_layers", "raised ValueError"),
]
# The built-in entries the first five derive from pass the same checks.
DEPLOY_CONTROLS = [
    # the correct parents of the fast-layer mutants in tests.mutants.bugs
    ("tests.mutants.bugs:TorchGatesFastGRU", "gru", "gradients", "gradients_match_reference"),
    ("tests.mutants.bugs:TorchGatesFastRNN", "rnn_tanh", "gradients", "two_calls_in_one_graph"),
    ("harness.impls.int8:Int8LSTM", "lstm", "shapes", "values_match_reference"),
    ("harness.impls.compiled:CompiledGRU", "gru", "compile", "compile_captures_graphs"),
    ("harness.impls.script_lstm:ScriptLSTM", "lstm", "gradients", "gradcheck"),
    ("harness.impls.script_lstm:ScriptLSTM", "lstm", "inference",
     "repeated_calls_under_inference_mode"),
]


@pytest.mark.parametrize(("mutant", "family", "suite", "check", "says"), DEPLOY_MUTANTS,
                         ids=[m for m, *_ in DEPLOY_MUTANTS])
def test_suite_catches_deployment_mutant(mutant, family, suite, check, says, tmp_path):
    code, records = run_suite(f"tests.mutants.deploy:{mutant}", family, suite, tmp_path,
                              only(suite, check), workers=1 if mutant in FRESH_PROCESS else 0,
                              maxfail=1)
    failed = [r for r in records if r["check"] == check and r["outcome"] == "failed"]
    assert code == 1
    assert failed, f"{suite}::{check} did not catch {mutant}"
    assert all(says in r["message"] for r in failed), failed[0]["message"]


def test_a_tolerance_tighter_than_the_real_error_fails_with_the_measured_figure(tmp_path):
    code, records = run_suite("tests.mutants.deploy:TightInt8LSTM", "lstm", "shapes", tmp_path,
                              "values_match_reference")
    failed = [r for r in records if r["outcome"] == "failed"]
    assert code == 1 and failed
    for r in failed:
        assert r["max_error"] > r["tolerance"] == 1e-4
        assert f"max abs error {r['max_error']:.3g} > atol 0.0001" in r["message"]
        assert r["metrics"]["tolerance_source"] == "declared by tight-int-8-lstm"


@pytest.mark.parametrize(("target", "family", "suite", "check"), DEPLOY_CONTROLS,
                         ids=[t.rpartition(":")[2] for t, *_ in DEPLOY_CONTROLS])
def test_deployment_entries_pass_the_same_checks(target, family, suite, check, tmp_path):
    code, records = run_suite(target, family, suite, tmp_path, check)
    assert [r["message"] for r in records if r["outcome"] == "failed"] == []
    assert code == 0 and any(r["outcome"] == "passed" for r in records)


@pytest.mark.parametrize(("mutant", "family", "suite", "check"), COMPILED_MUTANTS,
                         ids=[m for m, *_ in COMPILED_MUTANTS])
def test_the_fast_layers_pass_what_their_compiled_mutants_fail(mutant, family, suite, check,
                                                               tmp_path):
    """The control for tests.mutants.compiled: the correct library passes the same check."""
    parent = {"lstm": "FastLSTM", "gru": "FastGRU", "rnn_tanh": "FastRNN"}[family]
    _, records = run_suite(f"harness.impls.fast:{parent}", family, suite, tmp_path)
    mine = [r for r in records if r["check"] == check]
    assert [r["message"] for r in mine if r["outcome"] == "failed"] == []
    assert any(r["outcome"] == "passed" for r in mine)
