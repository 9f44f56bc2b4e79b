"""Untrusted implementations cannot take a run down: raising, NaN, hanging and crashing ones
become failed checks while every other result stays; a run killed with kill -9 resumes to exactly
the records of a clean run; serial and parallel runs agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from harness.cli import main

BROKEN = "tests.mutants.broken"


def records(out):
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def outcomes(out):
    """(implementation, suite, check, case, outcome) of every record, sorted: what a run found,
    independent of where its suites were installed."""
    return sorted((r["impl"], r["suite"], r["check"], r["case_id"], r["outcome"])
                  for r in records(out))


def test_raising_nan_hanging_and_crashing_implementations(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--impl", "torch-gru", "--family", "gru", "--suite", "numerics",
            "-k", "large_inputs", "--confirm-alone", "0",
            "--workers", "1", "--check-timeout", "2", "--out", str(out)]
    for name in ("RaisingGRU", "NanGRU", "HangingGRU", "CrashingGRU"):
        argv += ["--impl-class", f"{BROKEN}:{name}"]
    assert main(argv) == 1
    by_impl: dict[str, list[dict]] = {}
    for r in records(out):
        by_impl.setdefault(r["impl"], []).append(r)

    clean = tmp_path / "clean"
    assert main(["run", "--impl", "torch-gru", "--suite", "numerics", "-k", "large_inputs",
                 "--workers", "0", "--out", str(clean)]) == 0
    assert sorted((r["check"], r["case_id"]) for r in by_impl["torch-gru"]) == sorted(
        (r["check"], r["case_id"]) for r in records(clean))
    assert {r["outcome"] for r in by_impl["torch-gru"]} <= {"passed", "not supported"}

    def messages(impl):
        return [r["message"] or "" for r in by_impl[impl] if r["outcome"] == "failed"]

    every = len(by_impl["torch-gru"])
    for impl in ("raising-gru", "nan-gru", "hanging-gru", "crashing-gru"):
        assert len(by_impl[impl]) == every, impl  # each check recorded, once
        assert len(messages(impl)) == every, impl  # and failed
    assert all("kernel launch failed" in m for m in messages("raising-gru"))
    assert all("non-finite" in m for m in messages("nan-gru"))
    hanging = messages("hanging-gru")
    assert sum(m.startswith("timeout: the check ran longer than 2 s") for m in hanging) == 3
    assert all(m.startswith(("timeout", "not run: 3 earlier checks")) for m in hanging)
    crashing = messages("crashing-gru")
    assert sum(m.startswith("crashed: the worker process died") for m in crashing) == 3
    assert all(m.startswith(("crashed", "not run: 3 earlier checks")) for m in crashing)
    counts = Counter((r["impl"], r["check"], r["case_id"]) for r in records(out))
    assert max(counts.values()) == 1  # no check recorded twice


def test_global_torch_state_changes_do_not_leak_into_other_implementations(tmp_path):
    out = tmp_path / "run"
    # In one process, the implementation that turns gradients off (and more) runs between
    # torch-gru's checks: its own checks fail, torch-gru's must not.
    main(["run", "--impl", "torch-gru", "--impl-class", f"{BROKEN}:GlobalStateGRU",
          "--family", "gru", "--suite", "gradients", "-k", "gradients_match_reference",
          "--confirm-alone", "0", "--workers", "0", "--out", str(out)])
    mine = [r for r in records(out) if r["impl"] == "global-state-gru"]
    theirs = [r for r in records(out) if r["impl"] == "torch-gru"]
    assert any(r["outcome"] == "failed" for r in mine)
    assert theirs and {r["outcome"] for r in theirs} <= {"passed", "not supported"}
    assert any(r["outcome"] == "passed" for r in theirs)


@pytest.mark.slow
def test_kill_9_then_resume_gives_exactly_the_records_of_a_clean_run(tmp_path):
    args = ["run", "--impl", "torch-gru", "--impl", "scratch-gru", "--suite", "shapes",
            "--suite", "state", "--workers", "1"]
    clean = tmp_path / "clean"
    assert main([*args, "--out", str(clean)]) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "harness", *args, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    path = killed / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().count("\n") >= 60:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = path.read_text().count("\n")
    assert 60 <= partial < len(records(clean))

    assert main(["run", "--resume", str(killed)]) == 0
    assert outcomes(killed) == outcomes(clean)


@pytest.mark.slow
def test_serial_and_parallel_runs_give_the_same_outcomes(tmp_path):
    args = ["run", "--impl", "torch-lstm", "--impl", "fast-lstm", "--suite", "padding",
            "--suite", "errors"]
    assert main([*args, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    assert outcomes(tmp_path / "one") == outcomes(tmp_path / "two")


def test_resume_refuses_other_options_and_non_runs(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--impl", "torch-gru"]) == 2
    assert "takes no other options" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a results directory" in capsys.readouterr().err


def test_a_failure_that_passes_alone_says_so_in_record_and_report(tmp_path, capsys,
                                                                  monkeypatch):
    from tests.mutants.broken import WornOutGRU

    # its process-wide count starts here, whatever ran WornOutGRU before in this process
    monkeypatch.setattr(WornOutGRU, "calls_in_this_process", [0])
    out = tmp_path / "run"
    code = main(["run", "--impl-class", f"{BROKEN}:WornOutGRU", "--family", "gru",
                 "--suite", "shapes", "--workers", "0", "--confirm-alone", "2",
                 "--no-diagnosis",  # its calls would wear the class out sooner, and elsewhere
                 "--out", str(out)])
    assert code == 1
    failed = [r for r in records(out) if r["outcome"] == "failed"]
    confirmed = [r for r in failed if "alone" in r["metrics"]]
    # --confirm-alone 2: the reproducers (first failing case) of the first two failing checks
    assert len({(r["check"], r["case_id"]) for r in confirmed}) == 2
    assert {r["metrics"]["alone"] for r in confirmed} == {"passed"}
    assert "passed alone: worn-out-gru · shapes" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "**Passed when run alone**" in report and "--workers 0" in report


@pytest.mark.slow  # CI: the re-run alone through the test above, whose failure passes alone
def test_a_failure_that_fails_alone_too_is_confirmed(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--impl-class", f"{BROKEN}:NanGRU", "--family", "gru", "--suite",
                 "numerics", "-k", "large_inputs", "--workers", "0", "--out", str(out)]) == 1
    verdicts = {r["metrics"].get("alone") for r in records(out) if r["outcome"] == "failed"}
    assert "failed" in verdicts
    assert "Fails alone too" in (out / "report.md").read_text()


@pytest.mark.slow  # three worker crashes end to end; the scheduler's race is in CI below
def test_a_compiled_implementation_that_crashes_every_time_cannot_hang_the_run(tmp_path):
    """A torch.compile'd implementation's checks all go to one worker
    (harness.conformance.scheduling). One that takes its worker down at every call is recorded
    crash by crash and then not run, its checks once each, and the run ends: the crashed
    check is not handed out again, and no dead worker's finished work is (either made
    pytest-xdist's load-group scheduling restart workers without end, or wait forever)."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--impl", "torch-gru", "--impl-class",
         f"{BROKEN}:CrashingCompiledGRU", "--family", "gru", "--suite", "numerics", "-k",
         "large_inputs", "--confirm-alone", "0", "-n", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    crashing = [r for r in records(out) if r["impl"] == "crashing-compiled-gru"]
    messages = [r["message"] for r in crashing]
    assert sum(m.startswith("crashed: the worker process died") for m in messages) == 3
    assert all(m.startswith(("crashed", "not run: 3 earlier checks")) for m in messages)
    assert len(crashing) == len({(r["check"], r["case_id"]) for r in crashing}) == 4
    assert {r["outcome"] for r in records(out) if r["impl"] == "torch-gru"} == {"passed"}


def test_a_replacement_worker_gets_no_work_before_its_collection_is_in():
    """A dead worker's replacement is a scheduler node before it has collected; another worker
    finishing its collection reschedules every node. The replacement is skipped until its own
    collection is in (xdist's load-group scheduling looked it up and ended the run with
    KeyError: <WorkerController gw2>: the test above, once in CI)."""
    from collections import OrderedDict

    from harness.conformance.scheduling import CompiledTogether

    class Node:
        def __init__(self):
            self.shutting_down, self.sent = False, []

        def send_runtest_some(self, indices):
            self.sent.append(indices)

        def shutdown(self):
            self.shutting_down = True

    scheduler = CompiledTogether.__new__(CompiledTogether)  # no xdist config needed here
    scheduler.log = lambda *args: None
    scheduler.collection = ["suites/test_a.py::t[x]"]
    scheduler.workqueue = OrderedDict({"suites/test_a.py::t[x]":
                                       {"suites/test_a.py::t[x]": False}})
    newcomer = Node()
    scheduler.assigned_work = {newcomer: {}}
    scheduler.registered_collections = {}
    scheduler._reschedule(newcomer)  # raised KeyError before
    assert newcomer.sent == [] and scheduler.workqueue
    scheduler.registered_collections[newcomer] = list(scheduler.collection)
    scheduler._reschedule(newcomer)
    assert newcomer.sent == [[0]] and not scheduler.workqueue
