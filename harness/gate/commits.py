"""The commits a bisection searches: a repository's first-parent line from a good commit to a
bad one.

``seq-harness bisect`` walks the first-parent line (the merges of a main branch, not the commits
inside each merged branch), so that every commit it tests is one the main branch really had and
its predecessor on the list is the commit it was built on. The good commit must therefore lie on
the bad commit's first-parent line; anything else is bad input, named in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.gate.worktree import git


@dataclass(frozen=True)
class CommitRange:
    """repo: the repository's top directory; good, bad: full commit ids; commits: the
    first-parent line after good up to and including bad, oldest first (bad is the last);
    subjects: commit id -> the first line of its message, for the printed evidence."""

    repo: Path
    good: str
    bad: str
    commits: tuple[str, ...]
    subjects: dict[str, str]

    def __post_init__(self) -> None:
        if not self.commits or self.commits[-1] != self.bad:
            raise ValueError(f"the commits after good {self.good[:10]} must end with bad "
                             f"{self.bad[:10]}")


def repository(path: str | Path) -> Path:
    """The top directory of the git repository at ``path``; ValueError naming it when there is
    none."""
    top = git("rev-parse", "--show-toplevel", cwd=Path(path)) if Path(path).is_dir() else None
    if top is None or top.returncode != 0:
        raise ValueError(f"--repo {str(path)!r} is not in a git repository; expected the "
                         "checkout whose commits hold the implementation")
    return Path(top.stdout.strip())


def resolve(repo: Path, ref: str, *, option: str) -> str:
    """The full commit id ``ref`` names in ``repo``; ValueError naming the option and ref."""
    done = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
    if done.returncode != 0:
        raise ValueError(f"{option} {ref!r} names no commit of {repo} (see git log there)")
    return done.stdout.strip()


def first_parent_range(repo: Path, good_ref: str, bad_ref: str) -> CommitRange:
    """The first-parent line from ``good_ref`` (excluded) to ``bad_ref`` (included).
    ValueError when a ref names no commit, good is bad, good is not an ancestor of bad, or
    good is off bad's first-parent line."""
    good = resolve(repo, good_ref, option="--good")
    bad = resolve(repo, bad_ref, option="--bad")
    if good == bad:
        raise ValueError(f"--good {good_ref!r} and --bad {bad_ref!r} are the same commit "
                         f"{good[:10]}; expected an older good commit")
    if git("merge-base", "--is-ancestor", good, bad, cwd=repo).returncode != 0:
        raise ValueError(f"--good {good_ref!r} ({good[:10]}) is not an ancestor of --bad "
                         f"{bad_ref!r} ({bad[:10]}); expected good to come before bad")
    listed = git("log", "--first-parent", "--format=%H %s", f"{good}..{bad}", cwd=repo)
    if listed.returncode != 0:
        raise ValueError(f"git log failed in {repo}: {' '.join(listed.stderr.split())}")
    lines = [line.partition(" ") for line in listed.stdout.splitlines() if line]
    commits = [sha for sha, _, _ in reversed(lines)]
    parents = git("rev-parse", f"{commits[0]}^", cwd=repo).stdout.strip() if commits else ""
    if parents != good:
        raise ValueError(f"--good {good_ref!r} ({good[:10]}) is an ancestor of --bad "
                         f"{bad_ref!r} but not on its first-parent line; expected a commit of "
                         "the branch bad is on (e.g. the merge that brought good in)")
    return CommitRange(repo, good, bad, tuple(commits),
                       {sha: subject for sha, _, subject in lines})
