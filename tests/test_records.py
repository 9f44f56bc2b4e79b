"""Unit tests of harness/records.py: writing and reading run.json and records.jsonl."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from harness.core.case import Case
from harness.records import (
    OUTCOMES,
    RECORDS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    Record,
    RecordWriter,
    ResultsError,
    RunInfo,
    iter_records,
    load_run,
    read_run_info,
    write_run_info,
)
from harness.records.run_info import git_commit, git_modified

CASE = Case(seq_len=5, batch=3, input_size=3, hidden_size=7, lengths=(2, 5, 3))
INFO = RunInfo(
    run_id="20240101-000000-abcdef", created="2024-01-01T00:00:00+00:00", harness_version="0.1",
    torch="2.3.0", python="3.11.0", platform="Linux", processor="Some CPU", threads=4, cuda=None,
    git_commit=None, argv=["seq-harness", "run", "--impl", "torch-gru"],
)


def record(outcome="passed", **changes) -> Record:
    base = dict(impl="torch-gru", family="gru", suite="padding", check="matches_reference",
                outcome=outcome, case_id=CASE.id, case=CASE.to_dict(), max_error=1.5e-7,
                tolerance=1e-5, rtol=0.0, duration_s=0.25, message=None,
                nodeid="suites/test_padding.py::test_matches_reference[x]", origin="builtin",
                metrics={"notes": ["naive error 0.3"]}, run_id=INFO.run_id)
    return Record(**{**base, **changes})


def write(directory, records) -> None:
    writer = RecordWriter(directory)
    try:
        for r in records:
            writer.write(r)
    finally:
        writer.close()


def test_round_trip(tmp_path):
    records = [record(outcome) for outcome in OUTCOMES]
    records.append(record("failed", max_error=math.inf, message="h_n differs | a\nb `c`"))
    write_run_info(tmp_path, INFO)
    write(tmp_path, records[:2])
    write(tmp_path, records[2:])  # a second writer appends
    info, loaded = load_run(tmp_path)
    assert info == INFO
    assert loaded == records
    assert Case.from_dict(loaded[0].case) == CASE
    assert loaded[0].key == ("torch-gru", "padding", "matches_reference", CASE.id)


def test_each_record_is_one_line_with_a_schema_version(tmp_path):
    write(tmp_path, [record(message="one\ntwo"), record("skipped")])
    lines = (tmp_path / RECORDS_FILE).read_text().splitlines()
    assert len(lines) == 2
    assert all(json.loads(line)["schema_version"] == SCHEMA_VERSION for line in lines)


def test_invalid_outcome():
    with pytest.raises(ValueError, match=r"'passsed'.*not supported"):
        record("passsed")


def _lines(tmp_path, lines, *, end="\n"):
    (tmp_path / RECORDS_FILE).write_text("\n".join(lines) + end)


def test_newer_schema_names_file_and_line(tmp_path):
    newer = json.loads(record().to_json()) | {"schema_version": 99}
    _lines(tmp_path, [record().to_json(), json.dumps(newer)])
    with pytest.raises(ResultsError, match="schema_version 99") as raised:
        list(iter_records(tmp_path))
    assert f"{tmp_path / RECORDS_FILE}:2" in str(raised.value)


def test_malformed_middle_line_names_file_and_line(tmp_path):
    _lines(tmp_path, [record().to_json(), '{"impl": "x", ', record().to_json()])
    with pytest.raises(ResultsError, match="malformed JSON") as raised:
        list(iter_records(tmp_path))
    assert f"{tmp_path / RECORDS_FILE}:2:" in str(raised.value)


@pytest.mark.parametrize(
    ("line", "pattern"),
    [("[1, 2]", "expected a JSON object"),
     (json.dumps(json.loads(record().to_json()) | {"outcome": "won"}), "'won' is invalid"),
     ('{"schema_version": 1, "impl": "x"}', "missing"),
     ('{"impl": "x"}', "schema_version None")],
)
def test_bad_records_name_file_and_line(tmp_path, line, pattern):
    _lines(tmp_path, [record().to_json(), record().to_json(), line])
    with pytest.raises(ResultsError, match=pattern) as raised:
        list(iter_records(tmp_path))
    assert f"{RECORDS_FILE}:3" in str(raised.value)


def test_truncated_last_line_is_skipped(tmp_path):
    kept = [record("passed"), record("failed", message="boom")]
    partial = record("skipped").to_json()[:40]
    _lines(tmp_path, [r.to_json() for r in kept] + [partial], end="")
    assert list(iter_records(tmp_path)) == kept


def test_no_records_file_means_no_records(tmp_path):
    assert list(iter_records(tmp_path)) == []


def test_run_info_collect_round_trips(tmp_path):
    info = RunInfo.collect(run_id="r1", argv=["pytest", "-k", "x"])
    assert info.run_id == "r1" and info.argv == ["pytest", "-k", "x"] and info.threads >= 1
    write_run_info(tmp_path / "new", info)
    assert read_run_info(tmp_path / "new") == info
    assert info.machine == (info.cuda or f"{info.processor} ({info.fingerprint['isa']})")
    assert {"cpu", "cpu_id", "isa", "cores", "memory_gib", "blas", "onednn"} <= set(
        info.fingerprint)


def test_a_resume_is_kept_in_run_json_and_the_report_says_it(tmp_path, monkeypatch):
    """Each --resume adds when, by what and on which code; a resume on other code makes the
    run mixed, and the report's Runs section says so."""
    from harness.records import run_info
    from harness.report.document import header

    info = RunInfo.collect(run_id="r1", argv=["seq-harness", "run"])
    monkeypatch.setattr(run_info, "git_commit", lambda: info.git_commit)
    monkeypatch.setattr(run_info, "git_modified", lambda: False)
    same = info.resumed(["seq-harness", "run", "--resume", "out"])
    write_run_info(tmp_path / "run", same)
    assert read_run_info(tmp_path / "run") == same and len(same.resumes) == 1
    assert same.resumes[0]["argv"] == ["seq-harness", "run", "--resume", "out"]
    assert not same.mixed
    assert "was resumed once, last at " in "\n".join(header([same]))
    monkeypatch.setattr(run_info, "git_commit", lambda: "f" * 40)
    other = same.resumed(["seq-harness", "run", "--resume", "out"])
    assert other.mixed and len(other.resumes) == 2
    lines = "\n".join(header([other]))
    assert "was resumed 2 times" in lines and "**on other code than its start**" in lines
    assert not header([info])[-1].startswith("Run ")  # nothing said of a run never resumed


def test_read_run_info_missing_dir(tmp_path):
    with pytest.raises(ResultsError, match="no such directory") as raised:
        read_run_info(tmp_path / "absent")
    assert "absent" in str(raised.value)


def test_read_run_info_without_run_json(tmp_path):
    write(tmp_path, [record()])
    with pytest.raises(ResultsError, match=f"no {RUN_FILE}"):
        read_run_info(tmp_path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("{not json", "malformed JSON"),
     ("[1]", "expected a JSON object"),
     (json.dumps({**json.loads(INFO.to_json()), "schema_version": 3}), "schema_version 3"),
     (json.dumps({"schema_version": 1, "run_id": "x"}), "missing")],
)
def test_read_run_info_bad_run_json(tmp_path, text, pattern):
    (tmp_path / RUN_FILE).write_text(text)
    with pytest.raises(ResultsError, match=pattern) as raised:
        read_run_info(tmp_path)
    assert str(tmp_path / RUN_FILE) in str(raised.value)


def test_git_modified_tells_a_changed_tree_from_its_commit(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_modified(tmp_path) is None  # not a repository
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    (tmp_path / "untracked.txt").write_text("not part of what ran\n")
    assert git_modified(tmp_path) is False and git_commit(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_modified(tmp_path) is True
