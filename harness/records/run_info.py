"""What every record of a run shares: torch, Python, platform, threads, git commit, the command
line, and the machine's fingerprint (harness.core.machine), written once per run as run.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.machine import base_label
from harness.core.machine import fingerprint as machine_fingerprint
from harness.core.precision import tf32_mode
from harness.records.record import SCHEMA_VERSION


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
    tf32: str | None = None  # harness.core.precision on a CUDA machine: "off" or "on"; else None
    git_modified: bool | None = None  # tracked files differ from git_commit (None: not known)
    # Each --resume that continued the run: when, its command, and the code it ran
    # ({"at", "argv", "git_commit", "git_modified"}).
    resumes: list[dict[str, Any]] = field(default_factory=list)
    # Why the run ended before every selected check ran (``run --maxfail``), until a resume
    # runs the rest; None for a run that ran them all.
    stopped: str | None = None

    @classmethod
    def collect(cls, run_id: str | None = None, argv: list[str] | None = None,
                threads: int | None = None) -> RunInfo:
        """This process's torch, Python and machine; ``threads``: the torch threads the checks
        run with (default: this process's setting)."""
        import torch  # here: reading run.json (reports, history, a run's controller) needs none

        from harness import __version__

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        return cls(
            run_id=run_id or new_run_id(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            harness_version=__version__,
            torch=torch.__version__,
            python=platform.python_version(),
            platform=platform.platform(),
            processor=processor_name(),
            threads=threads or torch.get_num_threads(),
            cuda=cuda,
            git_commit=git_commit(),
            argv=list(sys.argv if argv is None else argv),
            fingerprint=machine_fingerprint(),
            tf32=tf32_mode() if cuda else None,
            git_modified=git_modified(),
        )

    def to_json(self) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, **asdict(self)}, indent=2)

    def resumed(self, argv: list[str]) -> RunInfo:
        """This run with one more resume, by ``argv``, on the code checked out now."""
        resume = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "argv": list(argv), "git_commit": git_commit(),
                  "git_modified": git_modified()}
        return replace(self, resumes=[*self.resumes, resume], stopped=None)

    @property
    def mixed(self) -> bool:
        """Whether a resume ran other code than the run's start (another commit, or changes):
        then no one commit says what produced the records."""
        return any(r.get("git_commit") != self.git_commit or r.get("git_modified")
                   for r in self.resumes)

    @property
    def machine(self) -> str:
        """How the report names the machine a run came from: the GPU, or the CPU with the ISA
        level torch dispatches to (harness.core.machine.labels tells apart machines of one name)."""
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
    done = git(["rev-parse", "HEAD"], cwd)
    return done.stdout.strip() or None if done is not None and done.returncode == 0 else None


def git_modified(cwd: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files differ from HEAD: the commit alone does not say what ran."""
    done = git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return bool(done.stdout.strip()) if done is not None and done.returncode == 0 else None


def git(args: list[str], cwd: str | os.PathLike | None) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
