"""Results on disk: one JSON line per check as it happens, plus the run's shared metadata.

A run directory holds ``run.json`` (torch version, device, threads, git commit, platform: what
every record of the run shares) and ``records.jsonl`` (one Record per line, appended and flushed
the moment a check ends, so a run that dies later loses nothing it measured). Both carry a schema
version; a reader refuses a newer or unknown version, and a malformed line, naming file and line.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"

PASSED, FAILED, NOT_SUPPORTED, SKIPPED = "passed", "failed", "not supported", "skipped"
OUTCOMES = (PASSED, FAILED, NOT_SUPPORTED, SKIPPED)


class ResultsError(ValueError):
    """A results file that cannot be read: names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class Record:
    """One check outcome (or one measurement).

    impl, family, suite, check: what ran; check is the suite's test name without ``test_``.
    case: the Case as a dict (None for checks that are not about one case); case_id its id.
    outcome: passed, failed, not supported (outside the claimed contract) or skipped (the
        environment lacks something, e.g. CUDA).
    max_error, tolerance, rtol: the largest absolute error the check compared, and its bound.
    compared: how many values the check compared (a check that compared none is not a pass).
    duration_s: wall time of the check. message: why it failed or was not run.
    nodeid: the pytest node that reproduces it; origin: the entry's source (MODULE:CLASS for
        --impl-class); metrics: further named figures.
    """

    impl: str
    family: str
    suite: str
    check: str
    outcome: str
    case_id: str = ""
    case: dict[str, Any] | None = None
    max_error: float | None = None
    tolerance: float | None = None
    rtol: float | None = None
    compared: int | None = None
    duration_s: float = 0.0
    message: str | None = None
    nodeid: str = ""
    origin: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is invalid; valid: {', '.join(OUTCOMES)}")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies a check across runs: (impl, suite, check, case_id)."""
        return (self.impl, self.suite, self.check, self.case_id)

    def to_json(self) -> str:
        data = {"schema_version": SCHEMA_VERSION, **asdict(self)}
        return json.dumps(data, allow_nan=True, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RunInfo:
    """Metadata shared by all records of a run."""

    run_id: str
    created: str
    harness_version: str
    torch: str
    python: str
    platform: str
    processor: str
    threads: int
    cuda: str | None
    git_commit: str | None
    argv: list[str]
    fingerprint: dict[str, Any] = field(default_factory=dict)  # harness.core.machine.fingerprint()

    @classmethod
    def collect(cls, run_id: str | None = None, argv: list[str] | None = None) -> RunInfo:
        from harness import __version__
        from harness.core.machine import fingerprint

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        return cls(
            run_id=run_id or new_run_id(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            harness_version=__version__,
            torch=torch.__version__,
            python=platform.python_version(),
            platform=platform.platform(),
            processor=processor_name(),
            threads=torch.get_num_threads(),
            cuda=cuda,
            git_commit=git_commit(),
            argv=list(sys.argv if argv is None else argv),
            fingerprint=fingerprint(),
        )

    def to_json(self) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, **asdict(self)}, indent=2)

    @property
    def machine(self) -> str:
        """How the report names the machine a run came from: the GPU, or the CPU with the ISA
        level torch dispatches to (harness.core.machine.labels tells apart machines of one name)."""
        from harness.core.machine import base_label

        return base_label(self.fingerprint, self.processor, self.cuda)


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


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
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{where}: schema_version {version!r} is not supported; this seq-harness reads "
            f"version {SCHEMA_VERSION}"
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
    return [asdict(r) for r in records]
