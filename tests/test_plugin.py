"""The pytest plugin on its own: a plain ``pytest`` run over the installed suites takes the same
options as ``seq-harness run`` and writes the same records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.records import SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(pytester, monkeypatch):
    """pytest in a subprocess, in a scratch directory: the installed harness and suites, as a
    user has them (and not an xdist worker, even when these tests run in one)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)

    def runner(*args):
        # hypothesis' plugin takes 2 s to import in each fresh process; the suites use none
        return pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                             "-p", "no:hypothesispytest", *args)

    return runner


def test_pyargs_run_writes_records_and_report(pytester, run):
    out = pytester.path / "results"
    result = run("--pyargs", "harness.suites", "--impl", "torch-gru",
                 "--suite", "state", "--results-dir", str(out), "-q")
    assert result.ret == 0
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert records and {r["impl"] for r in records} == {"torch-gru"}
    assert {r["suite"] for r in records} == {"state"}
    assert all(r["nodeid"] and r["case_id"] and r["schema_version"] == SCHEMA_VERSION
               for r in records)
    passed = [r for r in records if r["outcome"] == "passed"]
    assert len(passed) == result.parseoutcomes()["passed"]
    info = json.loads((out / "run.json").read_text())
    assert info["torch"] and info["threads"] >= 1 and info["run_id"]
    assert "torch-gru" in (out / "report.md").read_text()


def test_pytest_counts_not_supported_as_the_records_do(pytester, run):
    out = pytester.path / "results"
    result = run("--pyargs", "harness.suites", "--impl", "torch-gru", "--suite", "shapes",
                 "-k", "values_match_reference", "--results-dir", str(out))
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    unsupported = [r for r in records if r["outcome"] == "not supported"]
    assert unsupported  # the empty batch compares nothing
    assert "compared nothing" in unsupported[0]["message"]
    result.stdout.re_match_lines([rf".* {len(unsupported)} not supported.*"])
    assert "skipped" not in result.stdout.lines[-1]


def test_impl_class_under_plain_pytest_fails_the_mutant(pytester, run):
    # A user's module in the directory pytest starts from, as with `python -m pytest`.
    pytester.makepyfile(user_rnn=(REPO / "tests" / "mutants" / "bugs.py").read_text())
    result = run("--pyargs", "harness.suites", "--impl-class", "user_rnn:SwappedGatesLSTM",
                 "--family", "lstm", "--suite", "shapes", "-q", "-k", "values_match_reference")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) > 0
    result.stdout.fnmatch_lines(["*swapped-gates-lstm*"])


def test_unknown_implementation_is_a_usage_error(pytester, run):
    result = run("--pyargs", "harness.suites", "--impl", "nope")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*unknown implementation 'nope'; valid: *torch-lstm*"])


def test_plugin_leaves_unrelated_test_runs_alone(pytester, run):
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = run("-q")
    result.assert_outcomes(passed=1)


def test_cuda_device_skips_cleanly_without_cuda(pytester, run):
    import torch

    out = pytester.path / "gpu"
    result = run("--pyargs", "harness.suites", "--impl", "torch-lstm", "--suite",
                 "shapes", "--device", "cuda", "--results-dir", str(out), "-q")
    if torch.cuda.is_available():
        assert result.ret == 0
        return
    assert result.ret == 0
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert records and {r["outcome"] for r in records} <= {"skipped", "not supported"}
    assert any(r["message"] == "CUDA is not available" for r in records)


def test_latency_suite_is_opt_in(pytester, run):
    quiet = run("--pyargs", "harness.suites", "--impl", "torch-gru", "-q", "--co")
    assert "test_latency.py" not in quiet.stdout.str()


@pytest.mark.slow  # times torch-gru in a fresh pytest (the opt-in collection is in CI above)
def test_latency_suite_speaks_pytest_benchmark(pytester, run):
    result = run("--pyargs", "harness.suites", "--suite", "latency", "--impl", "torch-gru",
                 "--benchmark-json", "bench.json", "-q")
    assert result.ret == 0
    saved = json.loads((pytester.path / "bench.json").read_text())
    names = sorted(b["name"] for b in saved["benchmarks"])
    assert names == [f"test_{p}[torch-gru:T10-B4-I32-H32]"
                     for p in ("forward", "forward_backward", "inference")]
    assert all(b["stats"]["rounds"] >= 5 for b in saved["benchmarks"])


def test_the_training_tasks_go_by_their_work_at_the_full_scale(pytester, run):
    """Within one time_limit factor the cases' work orders the checks: the full scale's recall
    of 8 pairs (3000 steps) before the adding problem at T=100, not after every adding case."""
    result = run("--pyargs", "harness.suites", "--impl", "torch-gru", "--suite", "adding",
                 "--suite", "recall", "--scale", "full", "--collect-only", "-q")
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.outlines if "::test_" in line]
    assert ids == ["torch-gru:T200-B64-I2-H32", "torch-gru:T24-B64-I64-H64",
                   "torch-gru:T100-B64-I2-H32", "torch-gru:T12-B64-I64-H64",
                   "torch-gru:T50-B64-I2-H32", "torch-gru:T6-B64-I64-H64"]


def test_the_longest_checks_are_collected_first(pytester, run):
    """Under several workers the training tasks (time_limit 10) start at once and the short
    checks fill in after them; otherwise the collection's order is kept."""
    result = run("--pyargs", "harness.suites", "--impl", "torch-gru", "--suite", "state",
                 "--suite", "adding", "--suite", "numerics", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::test_" in line]
    suites = [line.split("::")[0].rsplit("/", 1)[-1] for line in ids]
    factors = [10 if s == "test_adding.py" else 3 if "precision_over_long" in line else 1
               for s, line in zip(suites, ids)]
    assert suites[0] == "test_adding.py" and factors == sorted(factors, reverse=True)
    state = [line for s, line in zip(suites, ids) if s == "test_state.py"]
    alone = run("--pyargs", "harness.suites", "--impl", "torch-gru", "--suite", "state",
                "--collect-only", "-q")
    assert len(state) > 3 and state == [line for line in alone.outlines if "::test_" in line]
