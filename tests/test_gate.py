"""The regression gate: statistics on synthetic timings, compare on hand-made result sets, and
gate end to end (a class doing ten times the work fails)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from harness.cli import main
from harness.gate.compare import check_regressions, pair
from harness.gate.stats import (
    IMPROVEMENT,
    REGRESSION,
    UNCHANGED,
    UNJUDGED,
    Comparison,
    attainable_p,
    holm,
    judge,
    processes_needed,
    smallest_p,
)
from harness.records import Record, RecordWriter, RunInfo, write_run_info

INFO = RunInfo("run", "2026-01-01T00:00:00+00:00", "0.1.0", "2.13.0+cpu", "3.11.7", "linux",
               "AMD EPYC", 1, None, "abc", ["seq-harness", "bench"])


def test_holm_steps_down_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = holm([0.001, 0.2, 0.04, 0.03])
    order = np.argsort([0.001, 0.2, 0.04, 0.03])
    assert list(np.array(adjusted)[order]) == sorted(adjusted)


@pytest.mark.parametrize(("n", "p"), [(3, 1 / 20), (4, 1 / 70), (5, 1 / 252), (6, 1 / 924)])
def test_smallest_p_is_one_over_the_number_of_orderings(n, p):
    assert smallest_p(n, n) == pytest.approx(p)


def test_holm_multiplies_the_attainable_p_and_the_minimum_follows():
    assert attainable_p(5, 5, 2) == pytest.approx(2 / 252)
    assert attainable_p(5, 5, 3) == pytest.approx(3 / 252)
    assert processes_needed(1, 0.01) == 5  # 1/252 < 0.01 <= 1/70
    assert processes_needed(3, 0.01) == 6  # 3/252 >= 0.01 > 3/924
    assert processes_needed(1, 0.05) == 4  # 1/70 < 0.05 <= 1/20


def test_too_few_processes_are_not_judged_even_when_far_apart():
    """4 against 4 can never reach p < 0.01: a 1.75x slowdown is 'not judged', never OK."""
    comparison = Comparison(("x", "s", "inference"), (1.0, 1.01, 1.02, 1.03),
                            (1.75, 1.76, 1.77, 1.78))
    (verdict,) = judge([comparison], alpha=0.01, min_effect=0.03)
    assert verdict.verdict == UNJUDGED


def processes(center, n=10, spread=0.004, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(center * (1 + spread * rng.standard_normal(n)))


def test_verdicts_need_significance_and_size():
    base = processes(1.0)
    slower = Comparison(("x", "s", "inference"), base, processes(1.10, seed=1))
    faster = Comparison(("y", "s", "inference"), base, processes(0.90, seed=2))
    same = Comparison(("z", "s", "inference"), base, processes(1.0, seed=3))
    tiny = Comparison(("w", "s", "inference"), base, processes(1.015, spread=0.0005, seed=4))
    verdicts = judge([slower, faster, same, tiny], alpha=0.01, min_effect=0.03)
    assert [v.verdict for v in verdicts] == [REGRESSION, IMPROVEMENT, UNCHANGED, UNCHANGED]
    low, high = verdicts[0].interval
    assert low < slower.ratio < high and low > 1.05


def test_a_verdicts_interval_never_contradicts_it():
    """The interval is the verdict's own rank test inverted: a regression's lies above 1 and an
    improvement's below, however the processes scatter: heavy-tailed noise, a few processes a
    side, some head processes as fast as base. The last case (5 head processes against 14, one
    of them as fast as base) is a regression whose resampled ratio of medians held 1 (95%
    bootstrap interval 0.997 to 1.82)."""
    rng = np.random.default_rng(1)
    comparisons = []
    for _ in range(300):
        n_base, n_head = rng.integers(5, 16, size=2)
        slow = rng.random(n_head) < rng.uniform(0.4, 0.9)
        base = np.exp(0.03 * rng.standard_t(2, n_base))
        head = np.exp(0.03 * rng.standard_t(2, n_head)) * np.where(slow, 1.58, 1.0)
        comparisons.append(Comparison(("x", "s", "inference"), tuple(base), tuple(head)))
    comparisons.append(Comparison(
        ("x", "s", "inference"),
        (0.661, 0.888, 0.939, 0.978, 0.981, 0.982, 0.986, 0.988, 0.989, 1.016, 1.041, 1.056,
         1.074, 1.112), (0.985, 1.361, 1.485, 1.591, 1.797)))
    verdicts = [v for c in comparisons for v in judge([c], alpha=0.01, min_effect=0.03)]
    assert verdicts[-1].verdict == REGRESSION
    assert sum(v.verdict == REGRESSION for v in verdicts) > 100
    assert any(v.verdict == UNCHANGED for v in verdicts)
    for v in verdicts:
        low, high = v.interval
        assert low <= high
        if v.verdict == REGRESSION:
            assert low > 1.0, (v.comparison, v.interval)
        if v.verdict == IMPROVEMENT:
            assert high < 1.0, (v.comparison, v.interval)


def test_pairing_matches_keys_and_one_renamed_implementation():
    base = {("torch-gru", "T5", "inference"): [1.0] * 3, ("torch-gru", "T9", "inference"): [1.0]}
    head = {("my-gru", "T5", "inference"): [1.0] * 3}
    comparisons, unmatched = pair(base, head)
    assert [c.key for c in comparisons] == [("my-gru", "T5", "inference")]
    assert comparisons[0].base_name == "torch-gru"
    assert unmatched == ["my-gru inference T9: timed only in BASE, not compared"]


def test_a_check_that_passed_and_now_fails_is_a_regression():
    ok = Record(impl="a", family="gru", suite="shapes", check="c", outcome="passed", case_id="T5")
    bad = replace(ok, outcome="failed")
    assert check_regressions([ok], [bad]) == [bad]
    assert check_regressions([bad], [bad]) == []
    assert check_regressions([ok], [ok]) == []


def results(directory, centers, *, info=INFO, checks=(), n=8):
    write_run_info(directory, info)
    writer = RecordWriter(directory)
    for impl, center in centers.items():
        for worker, value in enumerate(processes(center, n=n, seed=len(impl))):
            samples = [value * (1 + 0.01 * k) for k in range(5)]
            writer.write(Record(impl=impl, family="gru", suite="latency", check="inference",
                                outcome="passed", case_id="T50-B8-I128-H128",
                                metrics={"samples_s": samples, "worker": worker}))
    for record in checks:
        writer.write(record)
    writer.close()
    return directory


def test_compare_exit_codes(tmp_path, capsys):
    base = results(tmp_path / "base", {"torch-gru": 1.0})
    same = results(tmp_path / "same", {"torch-gru": 1.0})
    slow = results(tmp_path / "slow", {"torch-gru": 1.1})
    assert main(["compare", str(base), str(same)]) == 0
    assert "**OK**" in capsys.readouterr().out
    assert main(["compare", str(base), str(slow), "--output", str(tmp_path / "s.md")]) == 1
    out = capsys.readouterr().out
    assert "| + | torch-gru |" in out and "regression" in out
    assert "geometric mean" in (tmp_path / "s.md").read_text()


def test_compare_of_too_small_result_sets_says_so_and_exits_2(tmp_path, capsys):
    base = results(tmp_path / "base", {"torch-gru": 1.0}, n=4)
    slow = results(tmp_path / "slow", {"torch-gru": 1.75}, n=4)
    assert main(["compare", str(base), str(slow)]) == 2
    captured = capsys.readouterr()
    assert "**INCONCLUSIVE**" in captured.out and "**OK**" not in captured.out
    assert captured.err.count("\n") == 1
    assert "4 processes per side cannot detect" in captured.err and "5 or more" in captured.err


def test_compare_refuses_other_machines_unless_allowed(tmp_path, capsys):
    base = results(tmp_path / "base", {"torch-gru": 1.0})
    other = results(tmp_path / "other", {"torch-gru": 1.0},
                    info=replace(INFO, processor="Intel Xeon", torch="2.14.0"))
    assert main(["compare", str(base), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'AMD EPYC' vs 'Intel Xeon'" in err and "2.14.0" in err
    assert main(["compare", str(base), str(other), "--allow-mismatch"]) == 0
    assert "Compared across different environments" in capsys.readouterr().out


def test_compare_fails_on_a_new_check_failure_whatever_the_timings(tmp_path, capsys):
    check = Record(impl="torch-gru", family="gru", suite="padding", check="each_sequence_alone",
                   outcome="passed", case_id="T5-B3", message=None)
    base = results(tmp_path / "base", {"torch-gru": 1.0}, checks=[check])
    head = results(tmp_path / "head", {"torch-gru": 0.9},
                   checks=[replace(check, outcome="failed", message="h_n differs")])
    assert main(["compare", str(base), str(head)]) == 1
    assert "1 checks passed in BASE and fail in HEAD" in capsys.readouterr().out


def test_compare_writes_the_github_step_summary(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    base = results(tmp_path / "base", {"torch-gru": 1.0})
    assert main(["compare", str(base), str(base)]) == 0
    assert "seq-harness compare" in summary.read_text()


@pytest.mark.parametrize(("argv", "names"), [
    (["compare", "/no/such/dir", "/no/such/dir"], ["/no/such/dir"]),
    (["gate", "--head-impl", "torch-gru"], ["--base-impl", "--head-impl"]),
    (["gate", "--base-impl", "torch-gru", "--head-impl", "nope"], ["'nope'"]),
    (["gate", "--base-ref", "no-such-ref-xyz", "--head-impl", "torch-gru"],
     ["'no-such-ref-xyz'"]),
    (["gate", "--base-impl", "torch-gru", "--head-impl", "torch-gru", "--workers", "2"],
     ["--workers 2", "--workers 7 or more can"]),
    (["gate", "--base-impl", "torch-gru", "--head-impl", "torch-gru", "--workers", "3"],
     ["--workers 3", "on each of 2 timings", "--workers 7 or more can"]),
    (["gate", "--base-impl", "torch-gru", "--head-impl", "torch-gru", "--workers", "4",
      "--phase", "inference"], ["--workers 4", "0.014", "--workers 6 or more"]),
    (["gate", "--base-impl", "torch-gru", "--head-impl", "torch-gru", "--confirm", "0"],
     ["--confirm 0"]),
    (["calibrate", "--per-side", "4", "--processes", "8"], ["--per-side 4", "5 or more"]),
    (["compare", "a", "b", "--alpha", "2"], ["--alpha 2"]),
])
def test_gate_and_compare_bad_input(argv, names, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a gate's default output directory is results/ of the cwd
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert all(n in err for n in names)


GATE = ["gate", "--family", "gru", "--workers", "6", "--step", "3", "--max-workers", "9",
        "--phase", "inference", "--min-run-time", "0.1"]


@pytest.mark.slow
def test_gate_measures_both_sides_interleaved_and_flags_ten_times_the_work(tmp_path):
    """End to end: fresh processes per side, records, summary, exit 1. (Whether identical
    sides pass is a rate, measured by calibrate; on synthetic data, test_compare_exit_codes.)"""
    slower = main([*GATE, "--base-impl", "torch-gru",
                   "--head-impl-class", "tests.mutants.slow:TenTimesSlowerGRU",
                   "--out", str(tmp_path / "slow")])
    assert slower == 1
    summary = (tmp_path / "slow" / "summary.md").read_text()
    assert "torch-gru → ten-times-slower-gru" in summary and "regression" in summary
    for side in ("base", "head"):
        timed = [json.loads(x) for x in (tmp_path / "slow" / side / "records.jsonl").open()]
        assert len({r["metrics"]["worker"] for r in timed}) in (6, 9)
        assert {r["impl"] for r in timed} == {"torch-gru" if side == "base"
                                              else "ten-times-slower-gru"}


def test_compare_refuses_an_avx2_and_an_avx512_machine_of_one_name(tmp_path, capsys):
    fingerprint = {"cpu": "AMD EPYC", "cpu_id": "AuthenticAMD 23 49 0", "isa": "AVX2"}
    avx2 = replace(INFO, fingerprint=fingerprint)
    avx512 = replace(INFO, fingerprint={**fingerprint, "cpu_id": "AuthenticAMD 26 2 0",
                                        "isa": "AVX512"})
    base = results(tmp_path / "base", {"torch-gru": 1.0}, info=avx2)
    head = results(tmp_path / "head", {"torch-gru": 1.0}, info=avx512)
    assert main(["compare", str(base), str(head)]) == 2
    err = capsys.readouterr().err
    assert "ISA level: 'AVX2' vs 'AVX512'" in err and "family/model/stepping" in err


def test_base_ref_workers_import_the_base_commit_not_the_checkout(tmp_path, monkeypatch):
    """`python -m` puts the working directory before PYTHONPATH: a base-side worker started in
    the checkout would import the head's code. It starts in the worktree's counterpart of the
    current directory instead."""
    import subprocess
    import sys

    from harness.gate.worktree import checkout, worktree_cwd, worktree_env

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True, capture_output=True)

    git("init", "-q")
    (repo / "src" / "mymod.py").write_text("VALUE = 'base'\n")
    git("add", ".")
    git("commit", "-qm", "base")
    (repo / "src" / "mymod.py").write_text("VALUE = 'head'\n")
    git("commit", "-qam", "head")
    monkeypatch.chdir(repo / "src")
    probe = [sys.executable, "-c", "import mymod; print(mymod.VALUE)"]
    with checkout("HEAD~1") as (worktree, _):
        env = worktree_env(worktree)
        here = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
        assert here.stdout.strip() == "head"  # what the base side timed before
        cwd = worktree_cwd(worktree)
        assert cwd == worktree / "src"
        there = subprocess.run(probe, env=env, cwd=cwd, capture_output=True, text=True,
                               check=True)
        assert there.stdout.strip() == "base"
