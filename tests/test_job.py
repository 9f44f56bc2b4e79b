"""The main job and interrupted runs: `seq-harness job` runs checks, timings and the report;
Ctrl-C keeps every record and says how to continue; `--resume` (job and bench) measures only
what is missing, so a resumed run holds exactly the records of an uninterrupted one."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.case import Case
from harness.job import pipeline, scales
from harness.job.scales import Timing
from harness.latency.jobs import record_key
from harness.records import Record, RunInfo, iter_records, read_run_info, write_run_info

QUICK = (Timing("smoke", ("inference",), workers=1, min_run_time=0.01, first_call_shapes=1),)
QUICK_CASE = Case(seq_len=16384, batch=2, input_size=64, hidden_size=64)


def keys(directory: Path) -> Counter:
    lines = (directory / "records.jsonl").read_text().splitlines()
    return Counter(record_key(Record.from_dict(json.loads(line))) for line in lines)


def interrupt(directory: Path, keep: float) -> int:
    """Keep the first ``keep`` share of the records, as a run killed midway leaves them."""
    path = directory / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:int(len(lines) * keep)]
    path.write_text("".join(kept))
    return len(kept)


@pytest.mark.slow
def test_bench_resume_times_only_what_is_missing(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--impl", "torch-gru", "--impl", "scratch-gru", "--grid", "smoke",
                 "--phase", "inference", "--workers", "2", "--min-run-time", "0.01",
                 "--out", str(out)]) == 0
    whole = keys(out)
    assert set(whole.values()) == {1}  # one record per measurement
    kept = interrupt(out, 0.4)
    assert 0 < kept < sum(whole.values())
    capsys.readouterr()
    assert main(["bench", "--resume", str(out)]) == 0
    assert keys(out) == whole  # nothing lost, nothing measured twice
    printed = capsys.readouterr().out
    assert f"{sum(whole.values()) - kept}/{sum(whole.values()) - kept} timings" in printed
    assert "scratch-gru" in (out / "report.md").read_text()
    assert [r["argv"] for r in read_run_info(out).resumes] == [
        ["seq-harness", "bench", "--resume", str(out)]]
    assert "was resumed once" in (out / "report.md").read_text()


def test_bench_resume_takes_no_other_options(tmp_path, capsys):
    assert main(["bench", "--resume", str(tmp_path), "--workers", "3"]) == 2
    assert "--resume DIR takes no other options" in capsys.readouterr().err
    assert main(["bench", "--resume", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.fixture
def quick_scale(monkeypatch):
    monkeypatch.setitem(scales.SCALES, "ci", QUICK)


def test_job_runs_checks_timings_and_one_report(tmp_path, quick_scale, capsys):
    out = tmp_path / "job"
    assert main(["job", "--impl", "torch-gru", "--impl", "fast-gru", "--suite", "varlen",
                 "-n", "1", "--out", str(out), "--progress", "0"]) == 0
    printed = capsys.readouterr().out
    for stage in ("stage 1 of 3", "stage 2 of 3", "stage 3 of 3"):
        assert stage in printed
    checks = [json.loads(x) for x in (out / "checks" / "records.jsonl").read_text().split("\n")
              if x]
    assert checks and {r["suite"] for r in checks} == {"varlen"}
    timed = keys(out / "timings")
    assert {k[0] for k in timed} >= {"torch-gru", "fast-gru"}
    assert {k[2] for k in timed if k[0] == "fast-gru"} == {"inference", "first_call"}
    report = (out / "README.md").read_text()
    assert "fast-gru" in report and "## Latency" in report
    assert not (out / "checks" / "report.md").exists()  # one report, of every stage
    assert json.loads((out / "job.json").read_text())["suites"] == ["varlen"]
    # A second job into the same directory must say how to replace or continue it.
    assert main(["job", "--impl", "torch-gru", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" in err


@pytest.mark.slow
def test_an_interrupted_job_resumes_to_the_same_records(tmp_path, quick_scale, capsys):
    out = tmp_path / "job"
    argv = ["job", "--impl", "torch-gru", "--impl", "fast-gru", "--suite", "varlen", "-n", "1",
            "--out", str(out)]
    assert main(argv) == 0
    whole = [(r["nodeid"], r["outcome"]) for r in
             map(json.loads, (out / "checks" / "records.jsonl").read_text().splitlines())]
    timings = keys(out / "timings")
    interrupt(out / "checks", 0.5)
    interrupt(out / "timings", 0.5)
    (out / "README.md").unlink()
    assert main(["job", "--resume", str(out)]) == 0
    resumed = [(r["nodeid"], r["outcome"]) for r in
               map(json.loads, (out / "checks" / "records.jsonl").read_text().splitlines())]
    assert sorted(resumed) == sorted(whole) and keys(out / "timings") == timings
    assert (out / "README.md").is_file()


def test_ctrl_c_keeps_the_records_and_says_how_to_continue(tmp_path, quick_scale, monkeypatch,
                                                          capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "measure", interrupted)
    out = tmp_path / "job"
    assert main(["job", "--impl", "torch-gru", "--suite", "varlen", "-n", "1",
                 "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"seq-harness job --resume {out}" in err
    assert (out / "checks" / "records.jsonl").stat().st_size > 0  # stage 1 is kept


@pytest.mark.slow  # a job stopped by its budget, then resumed: two end-to-end runs
def test_a_spent_budget_leaves_checks_and_timings_out_and_a_resume_runs_them(tmp_path,
                                                                             quick_scale, capsys):
    out = tmp_path / "job"
    # one second: no check starts (the budget keeps the timings' and the report's shares), and
    # the timings find the budget spent
    assert main(["job", "--impl", "torch-gru", "--suite", "varlen", "-n", "1", "--budget", "1",
                 "--out", str(out), "--progress", "0"]) == 0
    printed = capsys.readouterr().out
    assert "a time budget of 1 s" in printed and "the time budget left out 1 of" in printed
    before = list(iter_records(out / "checks"))
    unchecked = [r for r in before if r.metrics.get("left_out")]  # the rest: not supported
    assert unchecked and {r.outcome for r in before if r not in unchecked} <= {"not supported"}
    assert f"{len(unchecked)} left out" in printed.splitlines()[-1]
    records = [json.loads(x) for x in (out / "timings" / "records.jsonl").read_text().split("\n")
               if x]
    left = [r for r in records if r["metrics"].get("left_out")]
    assert [(r["impl"], r["check"], r["outcome"]) for r in left] == [
        ("torch-gru", "inference", "skipped")]
    assert f"seq-harness job --resume {out} --budget 0" in left[0]["message"]
    report = (out / "README.md").read_text()
    assert "- 1 timings: left out: the job's time budget (1 s)" in report  # ## Skipped
    assert "timings were left out by the job's time budget" in report.split("## Conformance")[0]
    assert "checks were left out by the time budget" in report.split("## Conformance")[0]
    assert f"`seq-harness job --resume {out} --budget 0` runs the rest" in report
    assert main(["job", "--resume", str(out), "--budget", "0"]) == 0
    assert "left out" not in capsys.readouterr().out.split("stage 2 of 3")[1].split("\n")[0]
    timed = [Record.from_dict(json.loads(x)) for x in
             (out / "timings" / "records.jsonl").read_text().split("\n") if x]
    assert not [r for r in timed if r.metrics.get("left_out")]
    measured = [r for r in timed if r.impl == "torch-gru" and r.check == "inference"]
    assert [r.outcome for r in measured] == ["passed"] and measured[0].metrics["wall_s"] > 0
    ran = list(iter_records(out / "checks"))  # each check once, none left out
    assert len(ran) == len(before) and not [r for r in ran if r.metrics.get("left_out")]
    assert {r.outcome for r in ran} <= {"passed", "not supported"}
    assert json.loads((out / "job.json").read_text())["budget_s"] is None


def test_checks_past_the_stop_time_are_left_out_and_a_resume_runs_them(tmp_path):
    """A job's budget reaches its checks as a wall-clock stop time every worker reads: a check
    that would start later is recorded skipped, left out; dropping those records and resuming
    runs exactly them."""
    import time
    from dataclasses import replace

    from harness.conformance.session import SuiteRun, run_suites
    from harness.conformance.suites import suite_files

    out = tmp_path / "checks"
    out.mkdir()
    write_run_info(out, RunInfo.collect(argv=["test"]))
    run = SuiteRun(files=tuple(suite_files(["errors"])), out=out, impls=("torch-gru",),
                   workers=0, confirm_alone=0, report=False, progress_s=0,
                   keyword="wrong_hx_layers or wrong_input_size", stop_at=time.time() - 1)
    left = run_suites(run).records
    assert left and {(r.outcome, r.metrics.get("left_out")) for r in left} == {("skipped", True)}
    assert left[0].message.startswith("left out: the run's time budget was spent")
    pipeline.forget_left_out(out)
    assert not list(iter_records(out))
    ran = run_suites(replace(run, stop_at=time.time() + 600)).records
    assert sorted(r.key for r in ran) == sorted(r.key for r in left)
    assert {r.outcome for r in ran} == {"passed"}


def test_the_quick_scale_has_a_budget_and_a_budget_is_checked(tmp_path, quick_scale, capsys):
    assert pipeline.JobRequest(out=str(tmp_path)).budget_s is None
    assert main(["job", "--budget", "-5", "--out", str(tmp_path / "j")]) == 2
    assert "--budget -5 is invalid" in capsys.readouterr().err
    assert main(["job", "--resume", str(tmp_path), "--budget", "3", "-n", "2"]) == 2
    assert "no other options but --budget" in capsys.readouterr().err
    assert scales.BUDGET_S["ci"] and not scales.BUDGET_S["full"]


@pytest.mark.parametrize(("argv", "names"), [
    (["job", "--scale", "huge"], ["'huge'", "ci", "full"]),
    (["job", "--workers", "0"], ["--workers 0"]),
    (["job", "--suite", "nope"], ["'nope'"]),
    (["job", "--progress", "-1"], ["--progress -1"]),
    (["job", "--resume", "/nonexistent/job"], ["job.json"]),
    (["job", "--skip-impl", "torch-gruu"], ["--skip-impl 'torch-gruu'"]),
])
def test_job_bad_input_is_one_line(argv, names, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(name in err for name in names)


def test_skip_impl_leaves_registry_entries_out_of_the_job(tmp_path, monkeypatch):
    """--skip-impl reaches the checks' run and the timings' plans, and a resumed job keeps it."""
    ran = []

    def stop(run):
        ran.append(run)
        raise RuntimeError("the checks' run, seen")

    monkeypatch.setattr(pipeline, "run_suites", stop)
    out = tmp_path / "job"
    with pytest.raises(RuntimeError, match="seen"):
        main(["job", "--skip-impl", "torch-gru", "--skip-impl", "fast-gru", "--out", str(out)])
    assert ran[0].skipped_impls == ("torch-gru", "fast-gru")
    saved = pipeline.JobRequest.saved(out)
    assert saved.skipped_impls == ("torch-gru", "fast-gru")
    chosen = pipeline.choose(impls=(), impl_classes=(), family=None,
                             skipped=saved.skipped_impls)
    timed = {s.name for _, plan in pipeline.plans(saved, chosen.specs) for s in plan.specs}
    assert timed and not timed & {"torch-gru", "fast-gru"}


def record_keys(directory: Path) -> Counter:
    """(implementation, suite, check, case, worker) of every record but the machine's peak."""
    out = Counter()
    path = directory / "records.jsonl"
    for line in (path.read_text().splitlines() if path.is_file() else []):
        r = json.loads(line)
        if r["suite"] != "latency" or r["impl"] != "peak":
            out[(r["impl"], r["suite"], r["check"], r["case_id"], r["metrics"].get("worker"))] += 1
    return out


@pytest.mark.slow
def test_two_shards_hold_the_records_of_one_run(tmp_path, quick_scale, capsys):
    """--shard K/N: each check and timing in exactly one shard, together those of one job."""
    common = ["job", "--impl", "torch-gru", "--impl", "scratch-gru", "--suite", "state",
              "-n", "1", "--progress", "0", "--budget", "0"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    parts = []
    for k in (1, 2):
        assert main([*common, "--shard", f"{k}/2", "--out", str(tmp_path / f"shard{k}")]) == 0
        parts.append(record_keys(tmp_path / f"shard{k}" / "checks")
                     + record_keys(tmp_path / f"shard{k}" / "timings"))
    whole = record_keys(tmp_path / "whole" / "checks") + record_keys(tmp_path / "whole" / "timings")
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert parts[0] + parts[1] == whole
    assert any(k[1] == "latency" for k in parts[0] | parts[1])
    # every process of a timing on one shard: (implementation, shape, phase) decides
    for part in parts:
        timed = {(k[0], k[2], k[3]) for k in part if k[1] == "latency"}
        assert all(k in part for k in whole if k[1] == "latency" and (k[0], k[2], k[3]) in timed)
    capsys.readouterr()
    dirs = [str(tmp_path / f"shard{k}" / stage) for k in (1, 2) for stage in ("checks",
                                                                             "timings")]
    assert main(["report", *dirs, "--out", str(tmp_path / "merged.md")]) == 0
    assert "scratch-gru" in (tmp_path / "merged.md").read_text()


def test_a_shard_is_checked(capsys):
    assert main(["run", "--impl", "torch-gru", "--shard", "0/2"]) == 2
    assert "--shard 0/2 is invalid; expected K/N" in capsys.readouterr().err


def test_shards_split_checks_and_timings_without_overlap(tmp_path, capsys):
    """The CI-sized half of the test above: the checks of a run (in this process) and the
    timings of a plan, over two shards, each in exactly one."""
    from harness.core.shard import Shard
    from harness.latency.grids import load_grid
    from harness.latency.plan import Plan
    from harness.registry import choose

    common = ["run", "--impl", "torch-gru", "--impl", "scratch-gru", "--suite", "state",
              "-n", "0", "--confirm-alone", "0"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    parts = []
    for k in (1, 2):
        assert main([*common, "--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}")]) == 0
        parts.append(record_keys(tmp_path / f"s{k}"))
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert parts[0] + parts[1] == record_keys(tmp_path / "whole")
    specs = choose(impls=["torch-gru", "scratch-gru", "torch-lstm"]).specs
    plan = Plan(specs=specs, grid=load_grid("standard"), phases=("inference", "forward"),
                workers=2, min_run_time=0.1, threads=1, first_call=True)
    halves = [Plan(**{**plan.__dict__, "shard": Shard(k, 2)}) for k in (1, 2)]
    tasks = [{(s.name, t.case.id, t.phase) for s, t in half.tasks()} for half in halves]
    assert tasks[0] and tasks[1] and not tasks[0] & tasks[1]
    assert tasks[0] | tasks[1] == {(s.name, t.case.id, t.phase) for s, t in plan.tasks()}
    firsts = [{(s.name, c.id) for s, c in half.first_calls()} for half in halves]
    assert not firsts[0] & firsts[1]
    assert firsts[0] | firsts[1] == {(s.name, c.id) for s, c in plan.first_calls()}


def test_a_timing_past_its_grids_own_limit_is_not_measured_not_failed(tmp_path):
    from harness.latency.jobs import to_record
    from harness.registry import Registry
    from harness.report import write_report

    long = next(t for t in scales.SCALES["full"] if t.grid == "long")
    assert long.timeout_s == long.limit_s == 60.0 and "bench --grid long" in long.over_limit
    assert Timing("standard").over_limit is None and Timing("standard").timeout_s == 600.0
    [spec] = Registry.load().select(["torch-gru"])
    payload = {"impl": "torch-gru", "origin": spec.origin, "family": "gru",
               "case": QUICK_CASE.to_dict(), "phase": "forward_backward"}
    timeout = {"status": "timeout", "error": "timeout: no result within 60 s"}
    kept = dict(specs={"torch-gru": spec}, worker=0, run_id="r", threads=1)
    # The same timeout fails where the limit guards against a hang ...
    assert to_record("time", payload, timeout, **kept).outcome == "failed"
    # ... and is not measured, saying why, where the limit is the grid's own.
    record = to_record("time", payload, timeout, over_limit=long.over_limit, **kept)
    assert record.outcome == "skipped" and record.metrics["over_limit"] is True
    assert record.message.startswith("not measured: timeout: no result within 60 s, the long")
    out = tmp_path / "timings"
    out.mkdir()
    write_run_info(out, RunInfo.collect(argv=["test"]))
    (out / "records.jsonl").write_text(record.to_json() + "\n")
    report = write_report([out], tmp_path / "README.md").read_text()
    verdict = report.split("## Conformance")[0]
    assert "0 failed" in verdict and "1 skipped" in verdict
    assert ("⚠ 1 timings were not measured, past their grid's limit per timing: torch-gru "
            "forward+backward at " + QUICK_CASE.id) in verdict


def test_under_a_stop_time_the_quick_verdict_runs_before_the_measuring_suites(tmp_path):
    """Longest first would start the stability suite's long checks; under a budget the quick
    verdict's checks come first, so a budget spent leaves out measurements, not conformance."""
    import time

    from harness.conformance.session import SuiteRun, run_suites
    from harness.conformance.suites import suite_files

    out = tmp_path / "checks"
    out.mkdir()
    write_run_info(out, RunInfo.collect(argv=["test"]))
    run = SuiteRun(files=tuple(suite_files(["errors", "stability"])), out=out,
                   impls=("torch-gru",), workers=0, confirm_alone=0, report=False,
                   progress_s=0, all_suites=True, stop_at=time.time() + 600,
                   keyword="wrong_hx_layers or gradient_norms_over_time")
    order = [r.suite for r in run_suites(run).records]
    assert set(order) == {"errors", "stability"}
    assert order == sorted(order, key=lambda suite: suite == "stability"), order
