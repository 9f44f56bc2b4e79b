"""seq-harness bisect: the search with a fake judge (midpoints, an undecided step stops it, the
first-parent line), bad input in one line, and end to end on small git repositories built here
whose one commit slows a GRU by 25% (timed: the slow tier) or scales its output by 1.01 (the
check shapes::values_match_reference)."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.cli import main
from harness.gate.bisect import BAD, GOOD, UNDECIDED, Step, result_lines, search, steps_needed
from harness.gate.commits import CommitRange, first_parent_range

MODULE = '''"""A GRU whose history seq-harness bisect searches."""

import time

import torch

EXTRA = {extra}  # extra work after each call, as a fraction of the call's own time
SCALE = {scale}  # the output is multiplied by this


class {name}(torch.nn.GRU):
    harness_family = "gru"

    def forward(self, *args, **kwargs):
        started = time.perf_counter()
        output, h_n = super().forward(*args, **kwargs)
        until = started + (time.perf_counter() - started) * (1 + EXTRA)
        while time.perf_counter() < until:
            pass
        if SCALE != 1.0:
            if isinstance(output, torch.Tensor):
                output = output * SCALE
            else:  # a PackedSequence
                output = output._replace(data=output.data * SCALE)
        return output, h_n
'''


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def history(repo: Path, package: str, *, changed: dict[str, object]) -> list[str]:
    """Seven commits of a package with one GRU class; the fourth sets ``changed`` (EXTRA or
    SCALE); the others touch unrelated files."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")

    def module(**values) -> dict[str, str]:
        settings = {"extra": 0.0, "scale": 1.0, "name": "GRU", **values}
        return {f"{package}/__init__.py": "", f"{package}/rnn.py": MODULE.format(**settings)}

    shas = [commit(repo, module(), "add the GRU")]
    shas.append(commit(repo, {"README.md": "# a GRU\n"}, "README"))
    shas.append(commit(repo, {"NOTES.md": "notes\n"}, "notes"))
    shas.append(commit(repo, module(**changed), f"the change: {changed}"))
    shas.append(commit(repo, {"CHANGES.md": "- the change\n"}, "changelog"))
    shas.append(commit(repo, {"NOTES.md": "more notes\n"}, "more notes"))
    shas.append(commit(repo, {"README.md": "# a GRU, documented\n"}, "README again"))
    return shas


@pytest.fixture(scope="module")
def scaled(tmp_path_factory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("scaled") / "repo"
    return repo, history(repo, "scaledgru", changed={"scale": 1.01})


# --- the search, with a fake judge -------------------------------------------------------------


@dataclass
class FakeJudge:
    """Commits at or after ``first_bad`` are bad; ``undecided`` commits cannot be judged."""

    line: list[str]
    first_bad: int
    undecided: set[str] = field(default_factory=set)
    checks_endpoints: bool = False
    asked: list[tuple[str, str, str]] = field(default_factory=list)

    def endpoints(self, good, bad, *, label):
        self.asked.append((good, "", bad))
        return Step(label, bad, BAD, "bad")

    def step(self, good, mid, bad, *, label):
        self.asked.append((good, mid, bad))
        if mid in self.undecided:
            return Step(label, mid, UNDECIDED, "cannot tell")
        return Step(label, mid, BAD if self.line.index(mid) >= self.first_bad else GOOD, "fake")


def fake_range(count: int) -> CommitRange:
    line = tuple(f"{i:040x}" for i in range(1, count + 1))
    return CommitRange(Path("."), "0" * 40, line[-1], line, {sha: f"c{i + 1}"
                                                            for i, sha in enumerate(line)})


@pytest.mark.parametrize("count", [1, 2, 3, 6, 7, 8, 33])
def test_the_search_finds_every_first_bad_commit_in_log2_steps(count):
    commits = fake_range(count)
    for first_bad in range(count):
        judge = FakeJudge(list(commits.commits), first_bad)
        found = search(commits, judge)
        assert found.found and found.first_bad == commits.commits[first_bad]
        assert found.last_good == (commits.commits[first_bad - 1] if first_bad else commits.good)
        asked = [a for a in judge.asked if a[1]]
        assert len(asked) <= steps_needed(count) == (math.ceil(math.log2(count)) if count > 1
                                                     else 0)
        for good, mid, bad in asked:  # each midpoint lies strictly between the known ends
            order = [commits.good, *commits.commits]
            assert order.index(good) < order.index(mid) < order.index(bad)


def test_each_step_is_judged_against_the_last_good_and_first_bad_known():
    commits = fake_range(7)
    line = commits.commits
    judge = FakeJudge(list(line), first_bad=3)
    search(commits, judge)
    assert judge.asked == [(commits.good, line[2], line[6]), (line[2], line[4], line[6]),
                           (line[2], line[3], line[4])]


def test_an_undecided_step_stops_the_search_with_the_narrowed_range():
    commits = fake_range(8)
    line = commits.commits
    judge = FakeJudge(list(line), first_bad=5, undecided={line[5]})
    found = search(commits, judge)
    assert not found.found and found.first_bad is None and found.stopped
    assert [s.verdict for s in found.steps] == [GOOD, UNDECIDED]
    assert found.last_good == line[3] and found.suspects == line[4:]
    lines = result_lines(found)
    assert lines[0].startswith("no first bad commit: step 2 could not decide; it is one of the "
                               f"4 commits after {line[3][:10]} up to {line[7][:10]}")
    assert lines[1:] == [f"    {sha[:10]} c{i + 5}" for i, sha in enumerate(line[4:])]


def test_endpoints_are_asked_first_when_the_judge_checks_them_or_nothing_else_would():
    commits = fake_range(4)
    judge = FakeJudge(list(commits.commits), first_bad=1, checks_endpoints=True)
    assert search(commits, judge).first_bad == commits.commits[1]
    assert judge.asked[0] == (commits.good, "", commits.bad)
    single = fake_range(1)
    judge = FakeJudge(list(single.commits), first_bad=0)
    found = search(single, judge)
    assert found.found and [s.label for s in found.steps] == ["endpoints"]


def test_endpoints_that_are_not_good_and_bad_stop_before_any_step():
    class NotBad(FakeJudge):
        def endpoints(self, good, bad, *, label):
            return Step(label, bad, UNDECIDED, "the check does not fail at bad")

    commits = fake_range(5)
    found = search(commits, NotBad(list(commits.commits), 2, checks_endpoints=True))
    assert not found.found and len(found.suspects) == 5
    assert "endpoints could not decide" in result_lines(found)[0]


def test_the_first_parent_line_skips_the_commits_inside_a_merged_branch(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    c0 = commit(repo, {"a": "0"}, "c0")
    c1 = commit(repo, {"a": "1"}, "c1")
    git(repo, "checkout", "-q", "-b", "feature")
    b1 = commit(repo, {"b": "1"}, "b1")
    commit(repo, {"b": "2"}, "b2")
    git(repo, "checkout", "-q", "main")
    c2 = commit(repo, {"a": "2"}, "c2")
    git(repo, "-c", "user.name=T", "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = git(repo, "rev-parse", "HEAD")
    c3 = commit(repo, {"a": "3"}, "c3")
    found = first_parent_range(repo, c0, "main")
    assert found.commits == (c1, c2, merge, c3) and found.good == c0 and found.bad == c3
    assert found.subjects[merge] == "merge feature"
    with pytest.raises(ValueError, match="not on its first-parent line"):
        first_parent_range(repo, b1, c3)
    with pytest.raises(ValueError, match="is not an ancestor of --bad"):
        first_parent_range(repo, c3, c0)
    with pytest.raises(ValueError, match="same commit"):
        first_parent_range(repo, c3, "main")
    with pytest.raises(ValueError, match="'nope' names no commit"):
        first_parent_range(repo, "nope", c3)


# --- the command: bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "names"), [
    (["--good", "no-such-ref", "--bad", "{bad}"], ["--good 'no-such-ref' names no commit"]),
    (["--good", "{bad}", "--bad", "{good}"], ["is not an ancestor of --bad"]),
    (["--good", "{good}", "--bad", "{good}"], ["same commit"]),
    (["--good", "{good}", "--bad", "{bad}", "--repo", "{tmp}"], ["--repo", "not in a git"]),
    (["--good", "{good}", "--bad", "{bad}", "--check", "shapes"], ["--check 'shapes'",
                                                                    "SUITE::CHECK"]),
    (["--good", "{good}", "--bad", "{bad}", "--check", "nope::x"], ["no suite 'nope'"]),
    (["--good", "{good}", "--bad", "{bad}", "--check", "shapes::nope"],
     ["has no check 'nope'", "values_match_reference"]),
    (["--good", "{good}", "--bad", "{bad}", "--workers", "3"], ["--workers 3", "5 or more"]),
    (["--good", "{good}", "--bad", "{bad}", "--impl-class", "nopkg.rnn:GRU"],
     ["bisect needs exactly one of --impl"]),
    (["--good", "{good}", "--bad", "{bad}", "--impl-class", "scaledgru.rnn:Nope"],
     ["has no attribute 'Nope'"]),
], ids=["unknown-ref", "good-after-bad", "good-is-bad", "not-a-repo", "malformed-check",
        "unknown-suite", "unknown-check", "too-few-workers", "two-implementations",
        "no-such-class"])
def test_bad_input_is_one_line_and_exit_2(args, names, scaled, tmp_path, monkeypatch, capsys):
    repo, shas = scaled
    monkeypatch.chdir(tmp_path)
    argv = ["bisect", "--repo", str(repo),
            *[a.format(good=shas[0], bad=shas[-1], tmp=tmp_path) for a in args]]
    if "--impl-class" not in args:
        argv += ["--impl-class", "scaledgru.rnn:GRU", "--family", "gru"]
    else:
        argv += ["--impl", "torch-gru"] if "nopkg.rnn:GRU" in args else ["--family", "gru"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert all(n in err for n in names), err
    assert not (tmp_path / "results").exists()


# --- end to end ---------------------------------------------------------------------------------


def test_bisect_check_finds_the_commit_that_scaled_the_output(scaled, tmp_path, monkeypatch,
                                                              capsys):
    repo, shas = scaled
    monkeypatch.chdir(tmp_path)
    out, db = tmp_path / "bisect", tmp_path / "history.sqlite"
    assert main(["bisect", "--repo", str(repo), "--good", shas[0], "--bad", "main",
                 "--impl-class", "scaledgru.rnn:GRU", "--family", "gru",
                 "--check", "shapes::values_match_reference", "--out", str(out),
                 "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert f"first bad commit: {shas[3]} the change: {{'scale': 1.01}}" in printed
    assert f"last good commit: {shas[2]}" in printed
    assert "endpoints: " in printed and "failed in" in printed and "passed in" in printed
    saved = json.loads((out / "bisect.json").read_text())
    assert saved["first_bad"] == shas[3]
    assert saved["steps"][0]["label"] == "endpoints" and saved["steps"][0]["verdict"] == BAD
    assert len(saved["steps"]) <= 1 + steps_needed(6)
    assert "added" in printed and "check outcomes" in printed
