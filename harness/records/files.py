"""Results on disk: one JSON line per check as it happens, plus the run's shared metadata.

A run directory holds ``run.json`` (what every record of the run shares) and ``records.jsonl``
(one Record per line, appended and flushed the moment a check ends, so a run that dies later
loses nothing it measured). Both carry a schema version; a reader refuses a newer or unknown
version, and a malformed line, naming file and line.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.records.record import READABLE_VERSIONS, Record, ResultsError
from harness.records.run_info import RunInfo

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
JOB_FILE = "job.json"  # a job's directory: what it covers, beside its checks/ and timings/


class RecordWriter:
    """Appends records to DIR/records.jsonl, one whole line per write, flushed at once.

    Several processes (pytest-xdist workers) may append to the same file: each record is a single
    O_APPEND write of one line.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / RECORDS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_partial_line(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: Record) -> None:
        os.write(self._fd, (record.to_json() + "\n").encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def drop_partial_line(path: Path) -> None:
    """A writer killed mid-line leaves a last line without its newline: cut it off, so that
    appending resumes on a line of its own (the check it belonged to runs again)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = handle.seek(0) or handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def write_run_info(directory: str | os.PathLike, info: RunInfo) -> Path:
    path = Path(directory) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(info.to_json() + "\n")
    return path


def _check_version(data: dict[str, Any], where: str) -> None:
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ResultsError(
            f"{where}: schema_version {version!r} is not supported; this seq-harness reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}"
        )


def read_run_info(directory: str | os.PathLike) -> RunInfo:
    path = Path(directory) / RUN_FILE
    if not Path(directory).is_dir():
        raise ResultsError(f"{directory}: not a results directory (no such directory)")
    if not path.is_file():
        raise ResultsError(f"{directory}: not a results directory (no {RUN_FILE})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    _check_version(data, str(path))
    known = {f.name for f in fields(RunInfo)}
    try:
        return RunInfo(**{k: v for k, v in data.items() if k in known})
    except TypeError as error:
        raise ResultsError(f"{path}: {error}") from None


def iter_records(
    directory: str | os.PathLike, *, on_partial: Callable[[str], None] | None = None
) -> Iterator[Record]:
    """Records of a run, in the order written. A partial last line (a run killed mid-write) is
    skipped, and ``on_partial`` told where; any other malformed line is a ResultsError naming
    file and line."""
    path = Path(directory) / RECORDS_FILE
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # no newline yet: the writer was killed mid-line
                if on_partial is not None:
                    on_partial(f"{where}: incomplete last line ignored (the run was "
                               f"interrupted; `seq-harness run --resume {directory}` completes "
                               "it)")
                continue
            raise ResultsError(f"{where}: malformed JSON ({error.msg})") from None
        if not isinstance(data, dict):
            raise ResultsError(f"{where}: expected a JSON object")
        _check_version(data, where)
        try:
            yield Record.from_dict(data)
        except (TypeError, ValueError) as error:
            raise ResultsError(f"{where}: {error}") from None


def load_run(
    directory: str | os.PathLike, *, on_partial: Callable[[str], None] | None = None
) -> tuple[RunInfo, list[Record]]:
    return read_run_info(directory), list(iter_records(directory, on_partial=on_partial))


def record_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [r.as_row() for r in records]


def prepare_results_dir(out: Path, *, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: created if missing; an earlier run in it replaced only
    with ``overwrite``. ValueError naming the directory otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; expected a directory")
    if (out / RECORDS_FILE).exists() or (out / RUN_FILE).exists():
        if not overwrite:
            raise ValueError(f"--out {str(out)!r} already holds a run; choose another "
                             "directory or pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
