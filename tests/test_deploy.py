"""Deployment variants are first-class: declared tolerances (never loosening exact checks),
inference-only classes, declared families across one command, first-call cost, memory another
runtime holds, unavailable entries, and the built-in int8 / compiled / TorchScript / onnxruntime
entries."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from harness.cli import main
from harness.conformance.accuracy import ErrorPool, figures_of
from harness.conformance.checks import Check, CheckFailed, Tolerance
from harness.conformance.figures import pooled
from harness.conformance.tolerance import Override, tolerance_for
from harness.core.case import Case
from harness.core.declared import parse_tolerance
from harness.core.spec import Capabilities, ImplSpec, spec_from_class
from harness.impls import int8, onnx_runtime
from harness.impls.builtin import COMPILED_GRU, TORCH_GRU, TORCH_LSTM_INT8
from harness.latency.first_call import first_call
from harness.latency.grids import load_grid
from harness.latency.plan import Plan
from harness.latency.rss import peak_growth, reset_peak
from harness.latency.run import not_supported
from harness.registry import entry_points as registry_module
from tests import fixtures_deploy

FIXTURES = "tests.fixtures_deploy"
SMALL = Case(seq_len=5, batch=3, input_size=3, hidden_size=7)


def records(out):
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


# Declarations ----------------------------------------------------------------------------------


def test_a_class_declares_its_family_tolerance_and_timeout():
    spec = spec_from_class(fixtures_deploy.InferenceOnlyGRU)
    assert spec.family == "gru" and spec.name == "inference-only-gru"
    assert spec.tolerance.get("float32").atol == 2e-5 and spec.tolerance.get("float64") is None
    assert not spec.capabilities.autograd
    assert spec_from_class(fixtures_deploy.SlowToBuildGRU).check_timeout == 30.0


@pytest.mark.parametrize(("declared", "named"), [
    ({"float16x": {"atol": 1e-3}}, "'float16x'"),
    ({"float32": {"rtol": 1e-3}}, "atol"),
    ({"float32": {"atol": -1.0}}, "atol=-1.0"),
    ({"float32": {"atol": 1e-3, "rol": 0.1}}, "'rol'"),
    ({"float32": {"atol": 1e-3, "large_inputs": {"atol": float("nan")}}}, "atol=nan"),
    ("1e-3", "'1e-3'"),
])
def test_a_malformed_tolerance_names_the_bad_value(declared, named):
    with pytest.raises((ValueError, TypeError), match=named.replace("[", r"\[")):
        parse_tolerance(declared)


def test_family_given_and_declared_differently_is_one_line_exit_2(tmp_path, capsys):
    code = main(["run", "--impl-class", f"{FIXTURES}:InferenceOnlyGRU", "--family", "lstm",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--family lstm differs from the family gru" in err and "harness_family" in err


# Which tolerance applies -----------------------------------------------------------------------


def spec_with(tolerance) -> ImplSpec:
    return ImplSpec("declaring", "gru", nn.GRU, tolerance=tolerance)


def test_tolerance_resolution_declared_command_line_and_exact():
    case = SMALL
    family = Tolerance.for_case(case)
    plain = spec_with(None)
    declared = spec_with({"float32": {"atol": 0.1, "large_inputs": {"atol": 2.0}}})
    assert tolerance_for(case, plain) == (family, "family default")
    assert tolerance_for(case, declared) == (Tolerance(0.1), "declared by declaring")
    assert tolerance_for(case, declared, quantity="large")[0] == Tolerance(2.0)
    assert tolerance_for(case, declared, quantity="long")[0] == Tolerance(0.1)
    longer = spec_with({"float32": {"atol": 0.1, "long_sequences": {"atol": 0.5, "rtol": 1e-3}}})
    assert tolerance_for(case, longer, quantity="long")[0] == Tolerance(0.5, 1e-3)
    assert tolerance_for(case, longer, quantity="large")[0] == Tolerance(0.1)
    assert longer.tolerance.as_dict()["float32"]["long_sequences"] == {"atol": 0.5, "rtol": 1e-3}
    # exact properties never move; the command line beats the declaration
    assert tolerance_for(case, declared, quantity="strict") == (family, "family default")
    assert tolerance_for(case, declared, Override(atol=0.5)) == (Tolerance(0.5), "--atol/--rtol")
    # float64 declares nothing here: its family default stays
    assert tolerance_for(case.with_(dtype="float64"), declared)[1] == "family default"


def test_a_declaration_never_tightens_gradients_below_their_default():
    tight = spec_with({"float32": {"atol": 1e-7}})
    loose = spec_with({"float32": {"atol": 1e-2}})
    assert tolerance_for(SMALL, tight, quantity="gradient")[0] == Tolerance(1e-4)
    assert tolerance_for(SMALL, loose, quantity="gradient")[0] == Tolerance(1e-2)


def test_bad_atol_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    assert main(["run", "--impl", "torch-gru", "--atol", "-1", "--out", str(tmp_path)]) == 2
    assert "--atol -1.0 is invalid" in capsys.readouterr().err


def test_atol_on_the_command_line_overrides_a_declaration(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--impl-class", "tests.mutants.deploy:TightInt8LSTM", "--suite",
                 "shapes", "-k", "values_match_reference", "--atol", "0.2", "--workers", "0",
                 "--confirm-alone", "0", "--out", str(out)]) == 0
    ran = [r for r in records(out) if r["outcome"] == "passed"]
    assert ran and all(r["tolerance"] == 0.2 for r in ran)
    assert {r["metrics"]["tolerance_source"] for r in ran} == {"--atol/--rtol"}


# Error figures ---------------------------------------------------------------------------------


def test_error_figures_are_exact_and_pool():
    got = figures_of(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 5.0]))
    assert got["max_abs"] == 1.0 and got["p99_abs"] == 1.0 and got["values"] == 4
    assert got["rel_rms"] == pytest.approx(1 / math.sqrt(39))
    more = figures_of(torch.zeros(100), torch.ones(100))
    both = pooled([got, more])
    assert both["max_abs"] == 1.0 and both["values"] == 104
    assert both["rel_rms"] == pytest.approx(math.sqrt(101 / 139))
    assert figures_of(torch.tensor([math.nan]), torch.tensor([0.0]))["max_abs"] == math.inf


def test_p99_is_what_most_values_are_within():
    pool = ErrorPool()
    pool.add(torch.cat([torch.zeros(990), torch.ones(10)]), torch.zeros(1000))
    assert pool.figures()["p99_abs"] == 0.0 and pool.figures()["max_abs"] == 1.0


def test_check_keeps_outputs_and_gradients_apart_and_names_the_declaration():
    check = Check(Tolerance(1e-3), source="declared by mine")
    check.close("output", torch.tensor([1.0005]), torch.tensor([1.0]), measure="output")
    check.close("d loss / d input", torch.tensor([0.5]), torch.tensor([0.0]), Tolerance(1.0),
                measure="gradient")
    figures = check.error_figures()
    assert figures["output"]["max_abs"] == pytest.approx(5e-4, rel=1e-3)
    assert figures["gradient"]["max_abs"] == 0.5
    with pytest.raises(CheckFailed, match=r"max abs error 0.002 > atol 0.001, declared by mine"):
        check.close("output", torch.tensor([1.002]), torch.tensor([1.0]))


# Inference only, declared families, one command ------------------------------------------------


def test_classes_of_two_families_run_with_no_family_and_autograd_off(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--impl-class", f"{FIXTURES}:InferenceOnlyGRU", "--impl-class",
                 f"{FIXTURES}:DeclaredLSTM", "--suite", "shapes", "--suite", "gradients",
                 "-k", "values_match_reference or gradients_match_reference", "--workers", "0",
                 "--confirm-alone", "0", "--out", str(out)])
    assert code == 0
    found = records(out)
    gru = [r for r in found if r["impl"] == "inference-only-gru"]
    lstm = [r for r in found if r["impl"] == "declared-lstm"]
    assert {r["family"] for r in gru} == {"gru"} and {r["family"] for r in lstm} == {"lstm"}
    gradients = [r for r in gru if r["suite"] == "gradients"]
    assert gradients and all(r["outcome"] == "not supported" and "autograd (inference only"
                             in r["message"] for r in gradients)
    values = [r for r in gru if r["check"] == "values_match_reference" and r["outcome"] == "passed"]
    assert values and all(r["metrics"]["tolerance_source"] == "declared by inference-only-gru"
                          for r in values if r["case"]["dtype"] == "float32")
    assert any(r["suite"] == "gradients" and r["outcome"] == "passed" for r in lstm)


def test_bench_times_both_families_with_first_calls_and_skips_autograd_phases(tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", "--impl-class", f"{FIXTURES}:InferenceOnlyGRU", "--impl-class",
                 f"{FIXTURES}:DeclaredLSTM", "--grid", "smoke", "--workers", "1",
                 "--min-run-time", "0.01", "--phase", "inference", "--phase", "forward",
                 "--no-memory", "--no-peak", "--out", str(out)])
    assert code == 0
    assert not [r for r in records(out) if r["impl"] == "peak"]  # --no-peak
    found = records(out)
    first = {r["impl"]: r["metrics"] for r in found if r["check"] == "first_call"}
    assert set(first) == {"inference-only-gru", "declared-lstm"}
    assert all(m["first_call_s"] > 0 and m["graphs"] == 0 for m in first.values())
    outcome = {(r["impl"], r["check"]): r for r in found if r["check"] != "first_call"}
    assert outcome[("inference-only-gru", "inference")]["outcome"] == "passed"
    skipped = outcome[("inference-only-gru", "forward")]
    assert skipped["outcome"] == "not supported" and "autograd" in skipped["message"]
    assert outcome[("declared-lstm", "forward")]["outcome"] == "passed"
    assert "### First call" in (out / "report-latency.md").read_text()


def test_plan_leaves_autograd_phases_of_inference_only_entries_to_not_supported():
    spec = spec_from_class(fixtures_deploy.InferenceOnlyGRU)
    plan = Plan(specs=(spec, TORCH_GRU), grid=load_grid("smoke"),
                phases=("inference", "forward_backward"), workers=1, min_run_time=0.01,
                threads=1)
    assert {(s.name, t.phase) for s, t in plan.tasks()} == {
        ("inference-only-gru", "inference"), ("torch-gru", "inference"),
        ("torch-gru", "forward_backward")}
    assert [(s.name, t.phase) for s, t, _ in plan.unsupported()] == [
        ("inference-only-gru", "forward_backward")]


def test_a_declared_check_timeout_covers_a_slow_first_call(tmp_path):
    for name, outcome in (("SlowToBuildGRU", "passed"), ("UndeclaredSlowToBuildGRU", "failed")):
        out = tmp_path / name
        main(["run", "--impl-class", f"{FIXTURES}:{name}", "--suite", "shapes", "-k",
              "values_match_reference and T5-B3-I3-H7]", "--check-timeout", "0.3",
              "--workers", "0", "--confirm-alone", "0", "--out", str(out)])
        (found,) = records(out)
        assert found["outcome"] == outcome, found["message"]


# Unavailable entries ---------------------------------------------------------------------------


class FakeEntryPoint:
    def __init__(self, name, value):
        self.name, self.value = name, value

    def load(self):
        return self.value


@pytest.fixture
def unavailable_registry(monkeypatch):
    spec = ImplSpec("missing-runtime-gru", "gru", nn.GRU, origin="builtin",
                    availability=lambda: "fancyrt not installed; install with: pip install x")
    monkeypatch.setattr(registry_module, "entry_points",
                        lambda group: [FakeEntryPoint("missing-runtime-gru", spec)])
    return spec


def test_an_unavailable_entry_is_listed_and_its_checks_are_not_supported(
        unavailable_registry, tmp_path, capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "missing-runtime-gru (unavailable)" in listing
    assert "unavailable missing-runtime-gru: fancyrt not installed; install with" in listing
    out = tmp_path / "run"
    assert main(["run", "--suite", "shapes", "--workers", "0", "--confirm-alone", "0",
                 "--out", str(out)]) == 0
    found = records(out)
    assert found and all(r["outcome"] == "not supported" and "fancyrt not installed"
                         in r["message"] for r in found)
    plan = Plan(specs=(unavailable_registry,), grid=load_grid("smoke"), phases=("inference",),
                workers=1, min_run_time=0.01, threads=1)
    assert plan.tasks() == []
    timed = not_supported(plan, tmp_path / "bench", run_id="r")  # what bench records
    assert [(r.check, r.outcome) for r in timed] == [("inference", "not supported")]
    assert "fancyrt not installed" in timed[0].message


def test_onnx_entries_without_the_extra_name_the_install_command(monkeypatch):
    onnx_runtime.onnx_unavailable.cache_clear()
    real = onnx_runtime.importlib.util.find_spec
    monkeypatch.setattr(onnx_runtime.importlib.util, "find_spec",
                        lambda name: None if name == "onnxruntime" else real(name))
    try:
        why = onnx_runtime.onnx_unavailable()
    finally:
        onnx_runtime.onnx_unavailable.cache_clear()
    assert why == ("onnxruntime not installed; install with: "
                   "pip install 'onnxruntime>=1.16' 'onnx>=1.14'")


def test_int8_entries_on_a_torch_without_quantized_tensors_say_why(monkeypatch):
    def removed(float_module):
        raise AttributeError("module 'torch' has no attribute 'quantize_per_tensor'")

    int8.int8_unavailable.cache_clear()
    monkeypatch.setattr(int8, "quantized_from", removed)
    try:
        why = TORCH_LSTM_INT8.why_not(SMALL)
    finally:
        int8.int8_unavailable.cache_clear()
    assert why.startswith(f"not supported: torch {torch.__version__} cannot build")
    assert "quantize_per_tensor" in why
    monkeypatch.undo()
    assert TORCH_LSTM_INT8.why_not(SMALL) is None  # this torch has them


# Runtimes, memory, compile ---------------------------------------------------------------------


def test_onnxruntime_runs_real_lstm_and_gru_operators_on_torch_threads():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = onnx_runtime.export(nn.GRU(3, 4), (torch.zeros(2, 1, 3), torch.zeros(1, 1, 4)),
                                ["input", "h0"], ["output", "hn"])
    assert "GRU" in {node.op_type for node in onnx.load_from_string(model).graph.node}
    module = onnx_runtime.OnnxRuntimeLSTM(3, 4)
    threads = torch.get_num_threads()
    try:
        for wanted in (2, 1):
            torch.set_num_threads(wanted)
            module(torch.randn(5, 2, 3))
            options = module._onnx[2].get_session_options()  # (threads, snapshot, session)
            assert options.intra_op_num_threads == wanted
    finally:
        torch.set_num_threads(threads)


def test_onnxruntime_modules_with_the_same_weights_share_one_export():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    first = onnx_runtime.OnnxRuntimeGRU(3, 4)
    same = onnx_runtime.OnnxRuntimeGRU(3, 4)
    same.load_state_dict(first.state_dict())
    other = onnx_runtime.OnnxRuntimeGRU(3, 4)  # other initial weights
    x = torch.randn(5, 2, 3)
    outputs = [module(x)[0] for module in (first, same, other)]
    assert same._onnx[2] is first._onnx[2] and other._onnx[2] is not first._onnx[2]
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    same.weight_hh_l0.data.mul_(2)  # a write the version counter misses: its own export again
    assert not torch.equal(same(x)[0], outputs[0]) and same._onnx[2] is not first._onnx[2]
    assert torch.equal(first(x)[0], outputs[0])


@pytest.mark.skipif(not reset_peak(), reason="the kernel does not let a process reset its peak")
def test_peak_rss_growth_sees_memory_torch_does_not_allocate():
    import numpy as np

    def allocate():
        block = np.ones(8_000_000)  # 64 MB outside torch's allocator
        return float(block.sum())

    total, grown = peak_growth(allocate)
    assert total == 8_000_000 and grown >= 50 * 2**20


@pytest.mark.slow  # a cold inductor compile in the test process (CI: the compile suite's graphs)
def test_first_call_counts_the_graphs_compile_captured():
    import torch._dynamo

    tiny = Case(seq_len=3, batch=2, input_size=3, hidden_size=4)
    torch._dynamo.reset()
    compiled = first_call(COMPILED_GRU, tiny, threads=1)
    eager = first_call(TORCH_GRU, tiny, threads=1)
    assert compiled.graphs >= 1 and compiled.graph_breaks == 0
    assert eager.graphs == 0 and compiled.seconds > eager.seconds


def test_capabilities_declare_inference_only_and_compiled():
    caps = Capabilities.from_declaration({"autograd": False, "compiled": True})
    assert not caps.autograd and caps.compiled
    fam = TORCH_GRU.family_def
    assert {"no autograd", "compiled (torch.compile)"} <= set(caps.differences(fam))


# The Deployment section ------------------------------------------------------------------------


def test_deployment_table_puts_each_variant_next_to_its_reference(tmp_path):
    from harness.latency.grids import LATENCY_GRIDS
    from harness.records import Record, RecordWriter, RunInfo, write_run_info
    from harness.report import render

    standard, single = LATENCY_GRIDS["standard"].cases
    figures = {"max_abs": 0.03, "rel_rms": 0.02, "p99_abs": 0.01, "values": 10}

    def timing(impl, case, phase, seconds, **extra):
        return Record(impl=impl, family="lstm", suite="latency", check=phase, outcome="passed",
                      case_id=case.id, case=case.to_dict(),
                      metrics={"samples_s": [seconds] * 3, "worker": 0, **extra})

    found = [
        Record(impl="torch-lstm-int8", family="lstm", suite="accuracy",
               check="error_at_standard_shape", outcome="passed", case_id=standard.id,
               metrics={"tensors": {"output": figures}}),
        Record(impl="torch-lstm", family="lstm", suite="accuracy",
               check="error_at_standard_shape", outcome="passed", case_id=standard.id,
               metrics={"tensors": {"output": {**figures, "max_abs": 0.0}}}),
        timing("torch-lstm", standard, "inference", 0.2),
        timing("torch-lstm-int8", standard, "inference", 0.1, peak_bytes=2 * 2**20),
        timing("torch-lstm", single, "inference", 0.04),
        timing("torch-lstm-int8", single, "inference", 0.05),
        Record(impl="torch-lstm-int8", family="lstm", suite="latency", check="forward",
               outcome="not supported", case_id=standard.id, case=standard.to_dict(),
               message="not supported: autograd"),
        Record(impl="torch-lstm-int8", family="lstm", suite="latency", check="first_call",
               outcome="passed", case_id=standard.id, case=standard.to_dict(),
               metrics={"first_call_s": 1.5, "graphs": 0, "graph_breaks": 0,
                        "rss_bytes": 3 * 2**20}),
    ]
    write_run_info(tmp_path, RunInfo.collect(argv=["test"]))
    writer = RecordWriter(tmp_path)
    for record in found:
        writer.write(record)
    writer.close()
    text = render([tmp_path])
    section = text.split("## Deployment")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| torch-lstm")]
    assert rows[0].startswith("| torch-lstm ")  # the reference first
    cells = [c.strip() for c in rows[1].split("|")[1:-1]]
    header = [c.strip() for c in section.splitlines()[section.splitlines().index(
        next(line for line in section.splitlines() if line.startswith("| implementation")))]
        .split("|")[1:-1]]
    row = dict(zip(header, cells))
    assert row["implementation"] == "torch-lstm-int8" and row["rel RMS"] == "2.0e-02"
    assert row["inference B=64"] == "0.50x" and row["inference B=1"] == "1.25x"
    assert row["forward B=64"] == "n/s"
    assert "forward+backward B=64" not in header  # a phase nothing timed has no column
    assert row["first call"] == "1.50 s" and row["peak MB"] == "2.0" and row["RSS MB"] == "3.0"


CORE = ["--suite", "compile", "--suite", "shapes", "--suite", "gradients", "-k",
        "compile_captures_graphs or values_match_reference or gradients_match_reference"]
FORWARD = ["--suite", "compile", "--suite", "shapes", "-k",
           "compile_captures_graphs or values_match_reference"]


@pytest.mark.slow  # CI: compiled-gru's forward checks below, through the same wrapper
@pytest.mark.parametrize("entry", ["compiled-lstm", "compiled-gru"])
def test_compiled_entries_pass_their_core_checks(tmp_path, entry):
    """CI's registry sweep leaves the torch.compile'd entries out (their recompiles per dtype,
    stride and grad mode take minutes there; the main job runs them everywhere): here they
    pass the compile suite and the value and gradient checks against torch (compiled-gru's
    forward checks in the test below, under two workers, in CI)."""
    code = main(["run", "--impl", entry, *CORE, "--workers", "0", "--out", str(tmp_path)])
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["message"] for r in records if r["outcome"] == "failed"] == []
    assert code == 0
    assert {r["suite"] for r in records if r["outcome"] == "passed"} == {
        "compile", "shapes", "gradients"}


def test_one_worker_runs_every_check_of_a_compiled_entry(tmp_path, capsys):
    """Each worker process compiles every graph variant it meets: a compiled entry's checks
    all go to one worker (harness.conformance.scheduling), the others' to either; compiled-gru
    passes its forward checks there (its gradients' compiles, a minute on a 2-core machine, in
    the slow tier with compiled-lstm's)."""
    code = main(["run", "--impl", "compiled-gru", "--impl", "torch-gru", *FORWARD, "-n", "2",
                 "-v", "--out", str(tmp_path)])
    workers: dict[str, set[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("[gw") and "::test_" in line:
            impl = line.partition("::")[2].partition("[")[2].partition(":")[0]
            workers.setdefault(impl, set()).add(line[1:4])
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["message"] for r in records if r["outcome"] == "failed"] == []
    assert code == 0
    assert len(workers["compiled-gru"]) == 1 and workers["torch-gru"], workers
    assert {r["suite"] for r in records if r["outcome"] == "passed"
            and r["impl"] == "compiled-gru"} == {"compile", "shapes"}
    assert all(r["nodeid"].endswith("]") for r in records)  # node ids as pytest selects them


def test_script_lstm_parameters_are_leaves_an_optimiser_steps():
    """Each ScriptLSTM deep-copies one scripted stack per structure; torch 2.13 copies a
    ScriptModule's parameters with an autograd-recorded clone, which left them non-leaf: the
    stability suite saw no .grad and the training tasks' Adam refused them. Two modules of
    one structure: leaves, their own memory, and a step of Adam moves them."""
    from harness.impls.script_lstm import ScriptLSTM

    first, second = ScriptLSTM(2, 4), ScriptLSTM(2, 4)
    params = list(first.parameters())
    assert params and all(p.is_leaf and p.requires_grad for p in params)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(params, second.parameters()))
    optimiser = torch.optim.Adam(params, lr=0.1)
    before = [p.detach().clone() for p in params]
    out, _ = first(torch.randn(3, 2, 2))
    out.sum().backward()
    assert all(p.grad is not None for p in params)
    optimiser.step()
    assert all(not torch.equal(p, b) for p, b in zip(params, before))
