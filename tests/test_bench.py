"""The latency machinery: FLOP counts, grids, plans, worker isolation, statistics, the
pytest-benchmark export and the bench command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.core.case import Case
from harness.core.families import load_families
from harness.latency.grids import load_grid
from harness.latency.peak import PEAK, Gemm, sweep
from harness.latency.plan import Plan, rotated
from harness.latency.samples import LatencyStats, partial_failures
from harness.latency.worker import WorkerJob, run_jobs
from harness.records import Record
from harness.registry import Registry

SMALL = Case(seq_len=5, batch=2, input_size=3, hidden_size=4)


def test_flops_count_both_matmuls_of_every_step():
    lstm = load_families().by_name["lstm"]
    # T * 2 * B * 4H * (I + H), by hand: 5 * 2 * 2 * 16 * (3 + 4)
    assert lstm.flops(SMALL, "forward") == 5 * 2 * 2 * 16 * 7
    # backward: weight gradients (3 + 4) and the gradient through h (4) again; the first
    # layer's input gradient is not computed.
    assert lstm.flops(SMALL, "forward_backward") == 5 * 2 * 2 * 16 * (7 + 7 + 4)
    two = SMALL.with_(num_layers=2, bidirectional=True)
    layer0 = 2 * (2 * 2 * 16 * (3 + 4))
    layer1 = 2 * (2 * 2 * 16 * (8 + 4))
    assert lstm.flops(two, "inference") == 5 * (layer0 + layer1)
    backward0 = 2 * (2 * 2 * 16 * (3 + 4 + 4))
    backward1 = 2 * (2 * 2 * 16 * (8 + 4 + 4 + 8))
    assert lstm.flops(two, "forward_backward") == 5 * (layer0 + layer1 + backward0
                                                                 + backward1)
    varlen = SMALL.with_(lengths=(5, 1))  # 6 valid steps instead of 10
    assert lstm.flops(varlen, "forward") * 10 == lstm.flops(SMALL, "forward") * 6
    assert lstm.flops(SMALL.with_(batch=0), "forward_backward") == 0


def test_the_peak_sweep_covers_every_backend_and_times_them():
    points = sweep("cpu")
    backends = {g.backend for g in points}
    assert any(b.startswith(("MKL", "BLAS")) for b in backends)
    assert len(points) == len(backends) * 3
    gemm = Gemm(points[-1].backend, 64)
    assert gemm.flops == 2 * 64**3
    gemm.callable()()  # every backend runs here


def test_noisy_and_partial_timings_are_named():
    steady = LatencyStats(((1.0, 1.01, 1.02), (1.0, 1.01)))
    assert steady.noise is None
    scattered = LatencyStats(((1.0, 1.5, 2.0, 2.5),))
    assert "IQR" in scattered.noise
    disagreeing = LatencyStats(((1.0, 1.0), (1.3, 1.3)))
    assert "1.30x apart" in disagreeing.noise
    ok = Record(impl="a", family="gru", suite="latency", check="inference",
                      outcome="passed", case_id="T5")
    bad = Record(impl="a", family="gru", suite="latency", check="inference",
                       outcome="failed", case_id="T5", message="RuntimeError: boom")
    (partial,) = partial_failures([ok, bad, ok])
    assert str(partial) == "a inference T5: failed in 1 of 3 processes (RuntimeError: boom)"
    assert partial_failures([bad, bad]) == []


def test_grids_by_name_and_from_files(tmp_path):
    assert load_grid("standard").cases[0].hidden_size == 512
    with pytest.raises(ValueError, match=r"'nope'.*smoke"):
        load_grid("nope")
    bad = tmp_path / "bad.json"
    bad.write_text('{"cases": [')
    with pytest.raises(ValueError, match="does not parse"):
        load_grid(str(bad))
    bad.write_text('{"cases": [{"seq_len": 5, "batch": 2, "input_size": 3, "hidden": 4}]}')
    with pytest.raises(ValueError, match="hidden"):
        load_grid(str(bad))
    bad.write_text('{"cases": [{"seq_len": 5, "batch": 2, "input_size": 3, "hidden_size": 4}],'
                   ' "phases": ["backward"]}')
    with pytest.raises(ValueError, match="'backward'"):
        load_grid(str(bad))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "mine", "cases": [SMALL.to_dict()],
                                "families": ["gru"], "workers": 1}))
    grid = load_grid(str(good))
    assert grid.name == "mine" and grid.cases == (SMALL,) and grid.workers == 1


def test_plan_keeps_the_grid_families_and_the_capabilities():
    registry = Registry.load()
    plan = Plan(specs=tuple(registry.specs.values()), grid=load_grid("deepbench"),
                      phases=("inference",), workers=1, min_run_time=0.01, threads=1)
    families = {spec.family for spec, _ in plan.tasks()}
    assert families == {"lstm", "gru"}
    assert not any(spec.name.endswith("cudagraph") for spec, _ in plan.tasks())


def test_skip_impl_leaves_registry_entries_out_of_the_timings(capsys):
    from harness.cli import build_parser
    from harness.cli.bench import plans

    args = build_parser().parse_args(["bench", "--grid", "standard", "--skip-impl", "torch-gru",
                                      "--skip-impl", "fast-gru"])
    [plan] = plans(args)
    timed = {spec.name for spec, _ in plan.tasks()}
    assert "torch-lstm" in timed and not timed & {"torch-gru", "fast-gru"}
    assert main(["bench", "--skip-impl", "torch-gruu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--skip-impl 'torch-gruu' is not a registry entry" in err


def test_rotations_differ_per_worker():
    items = list(range(5))
    orders = [rotated(items, k) for k in range(4)]
    assert all(sorted(o) == items for o in orders)
    assert len({tuple(o) for o in orders}) == 4


def time_job(job_id, target, family="gru"):
    return WorkerJob(job_id, "time", {
        "impl": "x", "origin": target, "family": family, "case": SMALL.to_dict(),
        "phase": "inference", "cudnn_benchmark": None, "min_run_time": 0.01, "threads": 1,
        "memory": False,
    })


@pytest.mark.slow  # an end-to-end bench with a crash and a hang in fresh processes
def test_a_crash_or_a_hang_costs_only_its_own_job():
    jobs = [time_job("a", "harness.impls.scratch:ScratchGRU"),
            time_job("b", "tests.mutants.broken:CrashingGRU"),
            time_job("c", "tests.mutants.broken:HangingGRU"),
            time_job("d", "harness.impls.scratch:ScratchGRU")]
    results = dict((job.id, result) for job, result in
                   run_jobs(jobs, threads=1, job_timeout_s=8))
    assert list(results) == ["a", "b", "c", "d"]
    assert results["a"]["block_s"] and results["d"]["block_s"]
    assert results["b"]["status"] == "crashed" and "exit code 3" in results["b"]["error"]
    assert results["c"]["status"] == "timeout"


def test_timing_statistics_come_from_the_samples():
    timing = LatencyStats(((1.0, 2.0, 3.0), (2.0, 4.0)), flops=10**9, tokens=100)
    assert timing.median_s == 2.0
    assert timing.min_s == 1.0
    assert timing.process_medians == [2.0, 3.0]
    assert timing.process_spread == pytest.approx(1.5)
    assert timing.tokens_per_s == 50.0
    assert timing.gflops == pytest.approx(0.5)


@pytest.mark.slow
def test_bench_end_to_end_with_pytest_benchmark_compare(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["bench", "--impl", "torch-gru", "--impl", "scratch-gru", "--grid", "smoke",
                 "--workers", "2", "--min-run-time", "0.01", "--phase", "inference",
                 "--out", str(out)])
    assert code == 0
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    first = [r for r in records if r["check"] == "first_call"]
    # One first call per implementation and shape, in a fresh process; nothing compiles here.
    assert sorted(r["impl"] for r in first) == ["scratch-gru", "torch-gru"]
    assert all(r["metrics"]["first_call_s"] > 0 and r["metrics"]["graphs"] == 0 for r in first)
    records = [r for r in records if r["check"] != "first_call"]
    timed = [r for r in records if r["impl"] != PEAK]
    assert {(r["impl"], r["metrics"]["worker"]) for r in timed} == {
        ("torch-gru", 0), ("torch-gru", 1), ("scratch-gru", 0), ("scratch-gru", 1)}
    assert all(r["metrics"]["samples_s"] and r["metrics"]["threads"] == 1 for r in records)
    # The page, and every shape and figure in the details file beside it.
    report = (out / "report.md").read_text() + (out / "report-latency.md").read_text()
    assert "## Latency" in report and "scratch-gru" in report and "1.00x" in report
    exported = json.loads((out / "benchmark.json").read_text())
    assert {b["params"]["impl"] for b in exported["benchmarks"]} == {"torch-gru", "scratch-gru"}
    assert "Machine peak:" in report
    script = Path(sys.executable).parent / "pytest-benchmark"  # pytest-benchmark's own CLI
    compared = subprocess.run([str(script), "compare", str(out / "benchmark.json")],
                              capture_output=True, text=True)
    assert compared.returncode == 0, compared.stderr
    assert "scratch-gru" in compared.stdout


@pytest.mark.parametrize(("argv", "names"), [
    (["bench", "--grid", "nope"], ["'nope'", "smoke"]),
    (["bench", "--phase", "backward"], ["'backward'", "forward_backward"]),
    (["bench", "--workers", "0"], ["--workers 0"]),
    (["bench", "--min-run-time", "-1"], ["--min-run-time -1"]),
    (["bench", "--impl", "nope"], ["'nope'"]),
])
def test_bench_bad_input_is_one_line(argv, names, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert all(name in err for name in names)


def test_ratio_intervals_cover_the_truth_and_shrink_with_agreement():
    from harness.latency.ratios import geometric_mean_ratio, ratio

    rng = np.random.default_rng(0)

    def processes(center, spread, n=3, blocks=8):
        return [list(center * (1 + spread * rng.standard_normal(blocks))) for _ in range(n)]

    wide = ratio(processes(2.0, 0.05), processes(1.0, 0.05))
    assert wide.low < 2.0 < wide.high and 1.8 < wide.value < 2.2
    tight = ratio(processes(2.0, 0.001), processes(1.0, 0.001))
    assert tight.high - tight.low < (wide.high - wide.low) / 5
    both = geometric_mean_ratio([(processes(2.0, 0.01), processes(1.0, 0.01)),
                                 (processes(0.5, 0.01), processes(1.0, 0.01))])
    assert 0.95 < both.value < 1.05 and both.low < 1.0 < both.high
    assert str(tight).startswith("2.00x (")
