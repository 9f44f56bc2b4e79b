"""Unit tests of harness/report.py: the markdown report rendered from hand-made results."""

from __future__ import annotations

import shlex
from dataclasses import replace

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import build_parser
from harness.conformance.suites import suite_names
from harness.core.case import Case
from harness.core.text import md
from harness.records import Record, RecordWriter, RunInfo, write_run_info
from harness.report import render, write_report
from harness.report.sections.failures import reproduce

INFO = RunInfo(
    run_id="run-1", created="2024-01-01T00:00:00+00:00", harness_version="0.1", torch="2.3.0",
    python="3.11.0", platform="Linux", processor="CPU | model\nX `y`", threads=4, cuda=None,
    git_commit="0123456789abcdef", argv=["seq-harness", "run"],
)
SMALL = Case(seq_len=5, batch=3, input_size=3, hidden_size=7, lengths=(2, 5, 3))
BIG = SMALL.with_(seq_len=9, lengths=(2, 9, 3), num_layers=2)
NASTY = "h_n | differs\nat `x` \\| <b>"
CLASS_PATH = "tests.fixtures_impls:MyLSTM"


def rec(impl, suite, check, outcome, case=SMALL, **extra) -> Record:
    family = "gru" if impl == "torch-gru" else "lstm"
    origin = "builtin" if impl == "torch-gru" else CLASS_PATH
    nodeid = f"suites/test_{suite}.py::test_{check}[{impl}:{case.id}]"
    return Record(impl=impl, family=family, suite=suite, check=check, outcome=outcome,
                  case_id=case.id, case=case.to_dict(), nodeid=nodeid, origin=origin, **extra)


RECORDS = [
    # torch-gru x shapes: 2 passed, 1 not supported
    rec("torch-gru", "shapes", "output_shapes", "passed", max_error=0.0),
    rec("torch-gru", "shapes", "values", "passed", max_error=2e-7),
    rec("torch-gru", "shapes", "values", "not supported", SMALL.with_(proj_size=2),
        message="not supported: proj_size (family gru has none)"),
    # torch-gru x padding: 1 passed, 2 failed (the bigger case first), 1 skipped
    rec("torch-gru", "padding", "matches_reference", "failed", BIG, max_error=0.5,
        message="output differs: big"),
    rec("torch-gru", "padding", "matches_reference", "passed", SMALL.with_(seed=1)),
    rec("torch-gru", "padding", "matches_reference", "failed", SMALL, max_error=0.25,
        message="output differs: small"),
    rec("torch-gru", "padding", "zeros", "skipped", message="CUDA is not available"),
    # my-lstm x shapes: 1 failed with a nasty message, 1 passed
    rec("my-lstm", "shapes", "values", "failed", max_error=3.0, message=NASTY),
    rec("my-lstm", "shapes", "output_shapes", "passed"),
    # my-lstm x padding: 2 not supported, 1 skipped with a nasty reason
    rec("my-lstm", "padding", "zeros", "not supported", message="not supported: x"),
    rec("my-lstm", "padding", "matches_reference", "not supported", message="not supported: x"),
    rec("my-lstm", "padding", "each_alone", "skipped", message=NASTY),
]


def make_run(directory, records=RECORDS, info=INFO):
    write_run_info(directory, info)
    writer = RecordWriter(directory)
    for r in records:
        writer.write(r)
    writer.close()
    return directory


def unescaped_pipes(line: str) -> int:
    count = backslashes = 0
    for ch in line:
        if ch == "|" and backslashes % 2 == 0:
            count += 1
        backslashes = backslashes + 1 if ch == "\\" else 0
    return count


def tables(text: str) -> list[list[str]]:
    """Every markdown table of the text, as its lines."""
    found, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def cells(line: str) -> list[str]:
    parts, cell, backslashes = [], "", 0
    for ch in line.strip()[1:-1]:
        if ch == "|" and backslashes % 2 == 0:
            parts.append(cell.strip())
            cell = ""
        else:
            cell += ch
        backslashes = backslashes + 1 if ch == "\\" else 0
    return [*parts, cell.strip()]


def matrix_rows(text: str) -> dict[str, dict[str, str]]:
    conformance = text.split("## Conformance", 1)[1]
    header, _rule, *rows = tables(conformance)[0]
    names = cells(header)
    return {cells(row)[0]: dict(zip(names, cells(row))) for row in rows}


def section(text: str, heading_part: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#")
                 and heading_part in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def reproduce_args(lines: list[str]) -> list[str]:
    line = next(line for line in lines if line.startswith("Reproduce: `"))
    return shlex.split(line.removeprefix("Reproduce: `").removesuffix("`"))


@pytest.fixture
def report(tmp_path):
    return render([make_run(tmp_path)])


def test_matrix_counts_each_cell(report):
    rows = matrix_rows(report)
    assert set(rows) == {"torch-gru", "my-lstm"}
    gru, lstm = rows["torch-gru"], rows["my-lstm"]
    assert gru["family"] == "gru" and lstm["family"] == "lstm"
    assert "✅ 2" in gru["shapes"] and "1 n/s" in gru["shapes"] and "❌" not in gru["shapes"]
    assert "2 of 3 failed" in gru["padding"] and "1 skipped" in gru["padding"]
    assert "1 of 2 failed" in lstm["shapes"] and "n/s" not in lstm["shapes"]
    assert "2 n/s" in lstm["padding"] and "1 skipped" in lstm["padding"]
    assert "✅" not in lstm["padding"] and "failed" not in lstm["padding"]
    assert float(gru["worst error"]) == 0.5 and float(lstm["worst error"]) == 3.0


def test_summary_counts_outcomes(report):
    assert "12 records over 2 implementations and 2 suites" in report
    assert "4 passed, 3 failed, 3 not supported, 2 skipped" in report


def test_failure_section_names_check_smallest_case_and_command(report):
    lines = section(report, "torch-gru · padding · matches_reference")
    text = "\n".join(lines)
    assert "Failed on 2 of 3 cases" in text
    assert f"Smallest: `{SMALL.id}`" in text
    assert "output differs: small" in text
    assert f"`{BIG.id}`" in text.split("Other failing cases")[1]
    args = reproduce_args(lines)
    assert args[:7] == ["seq-harness", "run", "--impl", "torch-gru", "--suite", "padding", "-k"]
    assert args[7] == f"test_matches_reference[torch-gru:{SMALL.id}]"
    parsed = build_parser().parse_args(args[1:])
    assert parsed.impl == ["torch-gru"] and parsed.suite == ["padding"]


def test_impl_class_failure_reproduces_with_impl_class_and_family(report):
    lines = section(report, "my-lstm · shapes · values")
    args = reproduce_args(lines)
    assert args[2:8] == ["--impl-class", CLASS_PATH, "--family", "lstm", "--suite", "shapes"]
    assert "--impl" not in args
    assert f"> {md(NASTY)}" in lines


def test_reproduce_of_one_row():
    row = pd.Series({"nodeid": "", "origin": "", "impl": "scratch-gru", "family": "gru",
                     "suite": "state"})
    assert reproduce(row) == "seq-harness run --impl scratch-gru --suite state"
    row["origin"] = "pkg.mod:Cls"
    assert shlex.split(reproduce(row))[2:6] == ["--impl-class", "pkg.mod:Cls", "--family", "gru"]
    # a user's op is named as it was given: --impl-fn (a family not installed here: --impl-class)
    op = row.copy()
    op["origin"], op["family"] = "pkg.kernels:my_gla", "scalar_decay"
    assert shlex.split(reproduce(op))[2:6] == ["--impl-fn", "pkg.kernels:my_gla", "--family",
                                               "scalar_decay"]
    op["family"] = "not-installed"
    assert shlex.split(reproduce(op))[2] == "--impl-class"


def test_nasty_text_does_not_break_tables_or_lines(report):
    found = tables(report)
    assert len(found) >= 3  # runs, conformance matrix, worst errors
    for table in found:
        width = unescaped_pipes(table[0])
        assert all(unescaped_pipes(line) == width for line in table), table
    assert "model X" in runs_table(report)[2]  # the machine name stayed in its cell
    skipped = section(report, "Skipped")
    assert any(md(NASTY) in line for line in skipped)
    assert "CUDA is not available" in "\n".join(skipped)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a|b", "a\\|b"), ("one\ntwo\r\n\tthree", "one two three"), ("a\\b", "a\\\\b"),
     ("<b>", "&lt;b>")],
)
def test_md_examples(text, expected):
    assert md(text) == expected


@given(st.text())
def test_md_gives_one_line_without_unescaped_pipes_or_backticks(text):
    safe = md(text)
    assert len(safe.splitlines()) <= 1
    assert unescaped_pipes(safe) == 0
    assert "`" not in safe


def test_render_with_zero_records(tmp_path):
    make_run(tmp_path, records=[])
    text = render([tmp_path])
    assert "0 records over 0 implementations" in text
    assert "No checks were recorded." in text
    path = write_report([tmp_path], tmp_path / "out" / "report.md")
    assert path.read_text() == text


def test_render_merges_runs(tmp_path):
    first = make_run(tmp_path / "a", RECORDS[:3])
    second = make_run(tmp_path / "b", RECORDS[3:6], replace(INFO, run_id="run-2"))
    text = render([first, second])
    assert "6 records over 1 implementations" in text
    runs = [cells(line)[0] for line in runs_table(text)[2:]]
    assert runs == ["run-1", "run-2"]


def test_broken_entry_point_failure_has_a_runnable_command(tmp_path):
    broken = Record(impl="bad-plugin", family="unknown", suite="registry", check="load",
                    outcome="failed", message="entry point 'x:Y' failed to load: ImportError")
    lines = section(render([make_run(tmp_path, [broken])]), "bad-plugin")
    args = reproduce_args(lines)
    suites = [args[i + 1] for i, a in enumerate(args) if a == "--suite"]
    assert all(s in suite_names() for s in suites)


def test_failure_without_message_says_no_message(tmp_path):
    records = [rec("torch-gru", "state", "hx", "failed", message=None),
               rec("torch-gru", "state", "other", "failed", message="boom")]
    lines = section(render([make_run(tmp_path, records)]), "torch-gru · state · hx")
    assert "> no message" in lines


def test_worst_error_keeps_its_scientific_format(report):
    assert matrix_rows(report)["torch-gru"]["worst error"] == "5.0e-01"


def runs_table(text: str) -> list[str]:
    """The table of the runs a report was made from (at its end)."""
    return next(t for t in tables(text) if cells(t[0])[0] == "run")


def machine_table(text: str) -> list[str]:
    """The conformance table of a report of several machines: one row per machine."""
    return next(t for t in tables(text) if cells(t[0])[0] == "machine")


def test_runs_of_several_machines_are_grouped_not_merged(tmp_path):
    from harness.cli import main

    first = make_run(tmp_path / "a", RECORDS[:3])
    second = make_run(tmp_path / "b", RECORDS[:3],
                      replace(INFO, run_id="run-2", processor="Intel Xeon"))
    text = render([first, second])
    _, _, *rows = machine_table(text)
    machines = [cells(row)[0] for row in rows]
    assert set(machines) == {md(INFO.processor), "Intel Xeon"}
    assert main(["report", str(first), str(first), "--output", str(tmp_path / "r.md")]) == 2


def test_latency_of_several_machines_gets_a_section_each(tmp_path):
    timing = Record(impl="torch-gru", family="gru", suite="latency", check="inference",
                    outcome="passed", case_id="T5-B2-I3-H4",
                    case={"seq_len": 5, "batch": 2, "input_size": 3, "hidden_size": 4},
                    metrics={"samples_s": [0.001, 0.002], "worker": 0})
    first = make_run(tmp_path / "a", [timing])
    second = make_run(tmp_path / "b", [timing], replace(INFO, run_id="run-2",
                                                          processor="Intel Xeon"))
    text = render([first, second], tmp_path / "report.md")
    assert f"## Latency on {md(INFO.processor)}" in text and "## Latency on Intel Xeon" in text


def test_machines_of_one_name_are_labelled_by_what_differs(tmp_path):
    fingerprint = {"cpu": "AMD EPYC", "cpu_id": "AuthenticAMD 23 49 0", "isa": "AVX2",
                   "cores": 2}
    avx2 = replace(INFO, processor="AMD EPYC", fingerprint=fingerprint)
    avx512 = replace(avx2, run_id="run-2", fingerprint={**fingerprint, "isa": "AVX512",
                                                        "cpu_id": "AuthenticAMD 26 2 0"})
    zen3 = replace(avx2, run_id="run-3", fingerprint={**fingerprint,
                                                       "cpu_id": "AuthenticAMD 25 1 1"})
    runs = [make_run(tmp_path / name, RECORDS[:3], info)
            for name, info in (("a", avx2), ("b", avx512), ("c", zen3))]
    _, _, *rows = machine_table(render(runs))
    machines = {cells(row)[0] for row in rows}
    assert machines == {"AMD EPYC (AVX2) [CPU family/model/stepping AuthenticAMD 23 49 0]",
                        "AMD EPYC (AVX512)",
                        "AMD EPYC (AVX2) [CPU family/model/stepping AuthenticAMD 25 1 1]"}


def timed(impl: str, seconds: float) -> list[Record]:
    """Two worker processes' samples of one inference timing of a gru entry at B=64."""
    case = {"seq_len": 5, "batch": 64, "input_size": 3, "hidden_size": 4}
    return [Record(impl=impl, family="gru", suite="latency", check="inference",
                   outcome="passed", case_id="T5-B64-I3-H4", case=case,
                   metrics={"samples_s": [seconds * f for f in (1.0, 1.01, 0.99)],
                            "worker": worker}) for worker in (0, 1)]


def test_timings_at_other_thread_counts_are_never_pooled(tmp_path):
    # one machine, two runs: at 1 thread fast-gru takes twice torch-gru's time, at 2 threads
    # half of it; pooled, the two would look alike
    one = make_run(tmp_path / "a", timed("torch-gru", 0.001) + timed("fast-gru", 0.002),
                   replace(INFO, threads=1))
    two = make_run(tmp_path / "b", timed("torch-gru", 0.002) + timed("fast-gru", 0.001),
                   replace(INFO, run_id="run-2", threads=2))
    text = render([one, two], tmp_path / "report.md")
    machine = md(INFO.processor)
    assert f"## Latency on {machine}, 1 thread" in text
    assert f"## Latency on {machine}, 2 threads" in text
    verdict = text.split("## Verdict")[1].split("\n## ")[0]
    assert "fast-gru, is 2.00x" in verdict  # the first run's ratio, not a pool of both
    assert f"Speed in this verdict: on {machine}, 1 thread (4 of 8 timings; also timed on " \
           f"{machine}, 2 threads)" in verdict
    # the conformance side is one machine: no row per thread count
    assert f"{machine}, 1 thread" not in text.split("## Conformance")[1].split("\n## ")[0]
