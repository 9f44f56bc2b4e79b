"""Another commit of the current repository, checked out beside it for the length of a gate.

``seq-harness gate --base-ref REF`` times the implementation under test as it was at REF: REF is
checked out in a temporary git worktree (the working copy is not touched), and the base side's
worker processes import from it first.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[tuple[Path, str]]:
    """(worktree path, commit) of ``ref``; the worktree is removed afterwards. ValueError when
    this is not a git repository or ref names no commit."""
    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ValueError(f"--base-ref {ref!r}: the current directory is not in a git repository")
    root = Path(top.stdout.strip())
    commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=root)
    if commit.returncode != 0:
        raise ValueError(f"--base-ref {ref!r} names no commit of {root} (see git log)")
    sha = commit.stdout.strip()
    with worktree_at(root, sha, option=f"--base-ref {ref!r}") as path:
        yield path, sha


@contextlib.contextmanager
def worktree_at(root: Path, sha: str, *, option: str) -> Iterator[Path]:
    """A temporary worktree of commit ``sha`` of the repository at ``root``, removed afterwards;
    ValueError starting with ``option`` (what named the commit) when git cannot add it."""
    parent = Path(tempfile.mkdtemp(prefix="seq-harness-base-"))
    path = parent / "worktree"
    added = git("worktree", "add", "--detach", str(path), sha, cwd=root)
    if added.returncode != 0:
        with contextlib.suppress(OSError):
            parent.rmdir()
        raise ValueError(f"{option}: git worktree add failed: {' '.join(added.stderr.split())}")
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path), cwd=root)
        with contextlib.suppress(OSError):
            parent.rmdir()


def worktree_env(worktree: Path) -> dict[str, str]:
    """Worker environment where the repository at the worktree's commit is imported first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(worktree), env.get("PYTHONPATH")) if p)
    return env


def worktree_cwd(worktree: Path) -> Path:
    """The worktree's counterpart of the current directory (the worktree's root when the
    current directory is not in the repository or has no counterpart there): worker processes
    start there, so that what they import from their working directory is the worktree's
    commit, not the checkout's."""
    top = git("rev-parse", "--show-toplevel")
    if top.returncode == 0:
        try:
            inside = worktree / Path.cwd().resolve().relative_to(Path(top.stdout.strip()).resolve())
        except ValueError:
            return worktree
        if inside.is_dir():
            return inside
    return worktree
