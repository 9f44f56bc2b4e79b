"""The command line end to end: exit codes, one-line usage errors, broken implementations as
failed checks, records and report on disk."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.cli import main
from harness.records import read_run_info


def records(out):
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["run", "--impl", "nope"], ["'nope'", "torch-lstm"]),
        (["run", "--suite", "nope"], ["'nope'", "padding"]),
        (["run", "--impl-class", "no_colon"], ["'no_colon'", "MODULE:CLASS"]),
        (["run", "--impl-class", "no_such_module_xyz:Cls", "--family", "gru"],
         ["no_such_module_xyz", "does not import"]),
        (["run", "--impl-class", "tests.mutants.broken:Missing", "--family", "gru"],
         ["Missing"]),
        (["run", "--impl-class", "tests.mutants.broken:RaisingGRU"], ["--family", "lstm"]),
        (["run", "--impl-class", "tests.mutants.broken:RaisingGRU", "--family", "gruu"],
         ["'gruu'", "rnn_tanh"]),
        (["run", "--impl-class", "tests.mutants.broken:UnbuildableGRU", "--family", "gru"],
         ["does not build", "hidden_size"]),
        (["run", "--impl-class", "harness.impls.scratch:ScratchGRU", "--family", "lstm"],
         ["family lstm's weights", "(12, 3)", "(16, 3)"]),
        (["bench", "--impl-class", "harness.impls.scratch:ScratchGRU", "--family", "lstm"],
         ["family lstm's weights"]),
        (["run", "--device", "gpu"], ["'gpu'", "cuda"]),
        (["run", "--maxfail", "-1"], ["--maxfail -1", "0 (run every check)"]),
        (["report", "/nonexistent/dir"], ["/nonexistent/dir", "not a results directory"]),
        (["frobnicate"], ["'frobnicate'", "run"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, names, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for name in names:
        assert name in err


def test_run_of_a_correct_class_passes(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--impl-class", "harness.impls.scratch:ScratchGRU", "--family", "gru",
                 "--suite", "shapes", "--workers", "0", "--out", str(out),
                 "--report", str(tmp_path / "r.md")])
    assert code == 0
    got = records(out)
    assert {r["impl"] for r in got} == {"scratch-gru"}
    outcomes = [r["outcome"] for r in got]
    assert "failed" not in outcomes and outcomes.count("passed") > 50
    assert (out / "run.json").is_file() and (out / "report.md").is_file()
    assert "scratch-gru" in (tmp_path / "r.md").read_text()


def test_maxfail_stops_at_the_first_failure_and_resume_runs_the_rest(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--impl-class", "tests.mutants.bugs:SwappedGatesLSTM", "--family", "lstm",
            "--suite", "shapes", "-k", "values_match_reference", "--workers", "0",
            "--confirm-alone", "0", "--no-diagnosis", "--maxfail", "1", "--out", str(out)]
    assert main(argv) == 1
    first = records(out)
    assert [r["outcome"] for r in first] == ["failed"]
    assert (f"seq-harness: --maxfail 1 reached: the checks not run by then are left for "
            f"`seq-harness run --resume {out}`") in capsys.readouterr().out
    # run.json and the report say the run stopped: it does not read as a smaller run
    assert read_run_info(out).stopped.startswith("--maxfail 1 reached")
    report = (out / "report.md").read_text()
    assert "stopped early**: --maxfail 1 reached" in report.split("## Verdict")[0]  # at the top
    assert read_run_info(out).resumed(["seq-harness", "run"]).stopped is None
    assert main(["run", "--resume", str(out)]) == 1
    again = records(out)
    assert [r["case_id"] for r in again[:1]] == [first[0]["case_id"]]  # kept, not run again
    assert len(again) == 2 and len({r["case_id"] for r in again}) == 2  # one more, its stop
    assert read_run_info(out).stopped and len(read_run_info(out).resumes) == 1  # stopped again


def test_broken_implementations_are_failed_checks_and_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--impl", "torch-gru", "--family", "gru", "--suite", "shapes",
            "-k", "values_match_reference or h_n_rows_are_layer_major",  # the checks read here
            "--confirm-alone", "0", "--out", str(out),
            "--no-diagnosis"]  # diagnosing broken implementations: test_resilience
    for name in ("RaisingGRU", "WrongTypeGRU", "NanGRU"):
        argv += ["--impl-class", f"tests.mutants.broken:{name}"]
    assert main(argv) == 1
    by_impl = {}
    for r in records(out):
        by_impl.setdefault(r["impl"], []).append(r)
    assert "failed" not in {r["outcome"] for r in by_impl["torch-gru"]}
    for impl, hint in (("raising-gru", "kernel launch failed"), ("wrong-type-gru", "expected"),
                       ("nan-gru", "differs")):
        for check in ("values_match_reference", "h_n_rows_are_layer_major"):
            outcomes = {r["outcome"] for r in by_impl[impl]
                        if r["check"] == check and r["case"]["batch"] != 0}  # empty: no values
            assert outcomes <= {"failed", "not supported"} and "failed" in outcomes, impl
        assert any(hint in (r["message"] or "") for r in by_impl[impl]), impl
    report = (out / "report.md").read_text()
    assert "kernel launch failed \\| code 7 second line" in report
    assert "--impl-class tests.mutants.broken:RaisingGRU --family gru" in report


def test_out_holding_a_run_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--impl", "torch-gru", "--suite", "errors", "--workers", "0", "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_keyword_that_matches_nothing_is_a_usage_error(tmp_path, capsys):
    argv = ["run", "--impl", "torch-gru", "--suite", "errors", "--workers", "0",
            "--out", str(tmp_path / "r"), "-k", "no_such_check_anywhere"]
    assert main(argv) == 2
    assert "no checks matched" in capsys.readouterr().err


def test_a_plain_run_is_the_quick_verdict_and_all_suites_adds_the_measuring_ones(
        tmp_path, capsys):
    keyword = ["-k", "gradient_norms_over_time or wrong_input_size"]
    plain = ["run", "--impl", "torch-gru", "--workers", "0", "--confirm-alone", "0", *keyword]
    assert main([*plain, "--out", str(tmp_path / "quick")]) == 0
    said = capsys.readouterr().out
    assert "measuring suites (accuracy, stability, adding, recall) were not run" in said
    assert {r["suite"] for r in records(tmp_path / "quick")} == {"errors"}
    assert "Not in this run: the measuring suites" in (tmp_path / "quick/report.md").read_text()
    assert main([*plain, "--all-suites", "--out", str(tmp_path / "all")]) == 0
    assert "were not run" not in capsys.readouterr().out
    assert {r["suite"] for r in records(tmp_path / "all")} == {"errors", "stability"}
    # a pytest run of the suites chooses the same way
    from harness.conformance.suites import chosen_suites

    assert "stability" not in chosen_suites([]) and "stability" in chosen_suites([], every=True)


def test_exit_skips_the_teardown_only_when_nothing_needs_it():
    from harness.core.exit import finish

    sys.settrace(lambda *_: None)  # a debugger or coverage watching: a normal exit
    try:
        assert finish(3) == 3
    finally:
        sys.settrace(None)
    ended = subprocess.run([sys.executable, "-c", "import atexit, sys; "
                            "from harness.core.exit import finish; "
                            "atexit.register(lambda: print('atexit ran')); "
                            "print('done', end=''); finish(4)"], capture_output=True, text=True)
    assert (ended.returncode, ended.stdout) == (4, "doneatexit ran\n")


def test_report_command_rerenders(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--impl", "torch-lstm", "--suite", "state", "--workers", "0",
                 "--out", str(out)]) == 0
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert "torch-lstm" in (out / "report.md").read_text()


def test_list_shows_the_registry(capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    packed = next(line for line in listing.splitlines() if line.startswith("torch-gru-packed"))
    assert "no PackedSequence input; padded input + lengths=; no unbatched input" in packed
    graphed = next(line for line in listing.splitlines() if line.startswith("fast-gru-cudagraph"))
    assert "devices cuda only" in graphed
    for name in ("scratch-rnn", "torch-lstm-packed", "torch-rnn-relu"):
        assert name in listing


def test_python_dash_m_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--impl", "nope"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown implementation 'nope'" in done.stderr


def test_no_report_writes_the_records_only(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--impl", "torch-gru", "--suite", "errors", "-k", "wrong_hx_layers",
                 "--workers", "0", "--no-report", "--out", str(out)]) == 0
    assert (out / "records.jsonl").stat().st_size > 0 and not (out / "report.md").exists()
    assert "report: none (--no-report)" in capsys.readouterr().out
