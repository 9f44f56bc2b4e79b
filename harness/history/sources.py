"""Where the runs of a results directory are, and what git says about their commits.

``history add`` takes any directory seq-harness wrote: a run or bench directory holds run.json
itself; a job directory holds checks/ and timings/, a gate directory base/ and head/, a
calibration A/ and B/, each with a run.json of its own. So every directory at or below DIR that
holds a run.json is a run. A run.json records its commit only; its parent, commit time and
branch come from the git checkout the directory lies in, when that checkout knows the commit.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.records import RUN_FILE


def run_directories(directory: str | os.PathLike) -> list[Path]:
    """Every directory at or below ``directory`` holding a run.json, sorted; ValueError naming
    ``directory`` when it is missing or holds none."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{str(directory)!r}: no such directory; expected a results directory "
                         "(a run, bench, gate or job output)")
    found = sorted({p.parent for p in root.rglob(RUN_FILE) if p.is_file()})
    if not found:
        raise ValueError(f"{str(directory)!r}: no {RUN_FILE} in it or below; expected a results "
                         "directory (a run, bench, gate or job output)")
    return found


@dataclass(frozen=True)
class CommitInfo:
    """parent: the first parent ('' for a root commit); time: committer time in UTC;
    branch: the checkout's current branch when the commit is on it, else None."""

    parent: str | None
    time: datetime | None
    branch: str | None


UNKNOWN = CommitInfo(parent=None, time=None, branch=None)


class Commits:
    """What the checkouts around results directories know of commits, asked once per
    (checkout, commit) for one ``history add``; ``checkout``: ask this one instead (a bisection
    of another repository than the one its results lie in)."""

    def __init__(self, checkout: Path | None = None) -> None:
        self._known: dict[tuple[str, str], CommitInfo] = {}
        self._checkout = str(checkout) if checkout is not None else None

    def info(self, directory: Path, commit: str | None) -> CommitInfo:
        """What the checkout around ``directory`` knows of ``commit`` (UNKNOWN when nothing)."""
        if not commit:
            return UNKNOWN
        top = self._checkout or _git(str(directory), "rev-parse", "--show-toplevel")
        if not top:
            return UNKNOWN
        if (top, commit) not in self._known:
            self._known[top, commit] = _ask(top, commit)
        return self._known[top, commit]


def _ask(top: str, commit: str) -> CommitInfo:
    shown = _git(top, "show", "-s", "--format=%P%n%cI", f"{commit}^{{commit}}")
    if shown is None:
        return UNKNOWN
    # A root commit has no parents line left once the output is stripped: only its time.
    parents, _, when = shown.partition("\n") if "\n" in shown else ("", "", shown)
    time = datetime.fromisoformat(when.strip()).astimezone(timezone.utc).replace(tzinfo=None)
    branch = _git(top, "symbolic-ref", "--quiet", "--short", "HEAD")
    if branch and _git(top, "merge-base", "--is-ancestor", commit, "HEAD") is None:
        branch = None
    return CommitInfo(parent=(parents.split() or [""])[0], time=time, branch=branch or None)


def _git(cwd: str, *args: str) -> str | None:
    """git's stdout, stripped; None when git is missing or the command fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def utc(text: str) -> datetime:
    """run.json's ``created`` as a naive UTC datetime (how the tables store times)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed
