"""seq-harness bisect: the search with a fake judge (midpoints, an undecided step stops it, the
first-parent line), bad input in one line, and end to end on small git repositories built here
whose one commit slows a GRU by 25% (timed: the slow tier) or scales its output by 1.01 (the
check shapes::values_match_reference)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.gate import bisect_steps
from harness.gate.bisect import (
    BAD,
    GOOD,
    UNDECIDED,
    Step,
    result_lines,
    search,
    step_lines,
    steps_needed,
)
from harness.gate.bisect_steps import TimingJudge
from harness.gate.commits import CommitRange, first_parent_range
from harness.gate.run import GateRequest
from harness.gate.sequential import Schedule
from harness.latency.grids import load_grid
from harness.registry import choose_one

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
    """git in ``repo``, as a fixed author at a fixed time: the same commits, the same ids."""
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    done = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True, env=env)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def gru(**values) -> dict[str, str]:
    settings = {"extra": 0.0, "scale": 1.0, "name": "GRU", **values}
    return {"mygru/__init__.py": "", "mygru/rnn.py": MODULE.format(**settings)}


def build_repository(repo: Path) -> list[str]:
    """docs/bisect.md's repository: seven commits of a package mygru with one GRU class,
    tagged v1.0 at the first; the third makes every call 50% slower, the fifth scales the
    output by 1.01; the others touch unrelated files."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = [commit(repo, gru(), "add the GRU")]
    git(repo, "tag", "v1.0")
    shas.append(commit(repo, {"README.md": "# a GRU\n"}, "README"))
    shas.append(commit(repo, gru(extra=0.5), "a second pass over the output"))
    shas.append(commit(repo, {"NOTES.md": "notes\n"}, "notes"))
    shas.append(commit(repo, gru(extra=0.5, scale=1.01), "scale the output"))
    shas.append(commit(repo, {"CHANGES.md": "- scaled\n"}, "changelog"))
    shas.append(commit(repo, {"README.md": "# a GRU, documented\n"}, "README again"))
    return shas


@pytest.fixture(scope="module")
def mygru(tmp_path_factory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("user") / "mygru"
    return repo, build_repository(repo)


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


class FakeTiming(TimingJudge):
    """A timing judge whose 'measurements' are per-process minima given by commit."""

    def measure(self, label, commits):
        key = ("gru", "T50-B8-I128-H128", "inference")
        return {name: {key: self.info[sha]} for name, sha in commits.items()}


def processes(center: float) -> list[float]:
    return [center * (1 + 0.01 * k) for k in (0, 3, 1, 4, 2, 5)]


def fake_timing(times: dict[str, float], min_effect: float = 0.1) -> FakeTiming:
    spec = choose_one(impl="torch-gru")
    request = GateRequest(base=spec, head=spec, ref=None, grid=load_grid("gate"),
                          phases=("inference",), workers=6, min_run_time=0.3, threads=1,
                          alpha=0.01)
    return FakeTiming(Path("."), request, min_effect, Path("."),
                      {sha: processes(t) for sha, t in times.items()})


def test_a_timing_step_decides_only_when_the_gate_says_exactly_one_thing():
    commits = fake_range(6)
    line = commits.commits
    slow_from = {commits.good: 1.0, **{sha: 1.0 if i < 2 else 1.5 for i, sha in enumerate(line)}}
    found = search(commits, fake_timing(slow_from))
    assert found.first_bad == line[2] and [s.verdict for s in found.steps] == [BAD, GOOD, GOOD]
    assert found.steps[0].evidence[0].verdict == "slower"
    assert found.steps[0].evidence[0].ratio == pytest.approx(1.5)
    assert found.steps[1].evidence[1].verdict == "faster"
    two_changes = {commits.good: 1.0, **{sha: 1.0 + 0.3 * (i >= 1) + 0.3 * (i >= 4)
                                         for i, sha in enumerate(line)}}
    found = search(commits, fake_timing(two_changes))
    assert found.stopped and "more than one change in the range" in found.steps[0].why
    flat = {commits.good: 1.0, **{sha: 1.04 for sha in line}}
    found = search(commits, fake_timing(flat))
    printed = [x for step in found.steps for x in step_lines(step)] + result_lines(found)
    assert found.stopped and len(found.suspects) == 6
    assert unshown(SHOWN[2], printed) == []  # docs/bisect.md's undecided step


class LookingTiming(TimingJudge):
    """A timing judge whose processes are drawn look by look: ``info`` maps a commit to its
    center; each worker index's minimum is the center times a seeded lognormal draw of spread
    0.25 (a shared, noisy machine); ``drawn`` keeps every process drawn, per step and side."""

    @contextlib.contextmanager
    def opened(self, label, commits):
        yield [(label, name, sha) for name, sha in commits.items()]

    def timed(self, label, commits):
        key = ("gru", "T50-B8-I128-H128", "inference")
        return {name: {key: self.drawn[(label, name)]} for name in commits}


def draw_processes(judge: LookingTiming):
    def run_sides(sides, *, workers, **_):
        for label, name, sha in sides:
            for worker in workers:
                noise = np.random.default_rng([worker, int(sha[-4:], 16)]).normal(0.0, 0.25)
                judge.drawn.setdefault((label, name), []).append(
                    judge.info[sha] * math.exp(noise))
    return run_sides


def looking_timing(times: dict[str, float], most: int, monkeypatch) -> LookingTiming:
    spec = choose_one(impl="torch-gru")
    request = GateRequest(base=spec, head=spec, ref=None, grid=load_grid("gate"),
                          phases=("inference",), workers=10, min_run_time=0.3, threads=1,
                          alpha=0.01, schedule=Schedule(10, 5, most), budget_s=None)
    judge = LookingTiming(Path("."), request, 0.1, Path("."), times)
    object.__setattr__(judge, "drawn", {})
    monkeypatch.setattr(bisect_steps, "run_sides", draw_processes(judge))
    return judge


def test_a_step_on_a_noisy_machine_adds_processes_until_it_decides(monkeypatch):
    """Processes 25% apart (log sd) on a 30% step: one look of 10 per commit decides nothing;
    the sequential step keeps adding 5 per look and finds the first bad commit."""
    commits = fake_range(6)
    line = commits.commits
    times = {commits.good: 1.0, **{sha: 1.0 if i < 3 else 1.3 for i, sha in enumerate(line)}}
    fixed = search(commits, looking_timing(times, 10, monkeypatch))
    assert fixed.stopped and fixed.steps[0].verdict == UNDECIDED
    assert "more processes (--workers, --max-workers, --budget)" in fixed.steps[0].why
    judge = looking_timing(times, 40, monkeypatch)
    found = search(commits, judge)
    assert found.found and found.first_bad == line[3], found.steps
    assert [s.verdict for s in found.steps] == [GOOD, BAD]
    assert all(len(drawn) > 10 for drawn in judge.drawn.values())
    assert found.steps[0].evidence[1].verdict == "faster"  # the midpoint, against bad
    assert found.steps[0].evidence[1].ratio < 1 / 1.1  # the midpoint over bad
    assert found.steps[1].evidence[0].verdict == "slower"
    words = {e.verdict for step in found.steps for e in step.evidence}
    assert words <= {"slower", "faster", "not slower by 10% or more",
                     "not faster by 10% or more", "undecided"}, words


def test_a_single_commit_range_times_its_ends():
    commits = fake_range(1)
    found = search(commits, fake_timing({commits.good: 1.0, commits.bad: 1.3}))
    assert found.found and found.steps[0].label == "endpoints"
    assert "slower than good" in found.steps[0].why
    found = search(commits, fake_timing({commits.good: 1.0, commits.bad: 1.0}))
    assert not found.found and "nothing to bisect" in found.steps[0].why
    assert result_lines(found)[0].startswith("no first bad commit: endpoints could not decide")


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
    (["--good", "{good}", "--bad", "{bad}", "--workers", "3"],
     ["--workers 3", "the first look", "--workers 7 or more can"]),
    (["--good", "{good}", "--bad", "{bad}", "--impl-class", "nopkg.rnn:GRU"],
     ["bisect needs exactly one of --impl"]),
    (["--good", "{good}", "--bad", "{bad}", "--impl-class", "mygru.rnn:Nope"],
     ["has no attribute 'Nope'"]),
], ids=["unknown-ref", "good-after-bad", "good-is-bad", "not-a-repo", "malformed-check",
        "unknown-suite", "unknown-check", "too-few-workers", "two-implementations",
        "no-such-class"])
def test_bad_input_is_one_line_and_exit_2(args, names, mygru, tmp_path, monkeypatch, capsys):
    repo, shas = mygru
    monkeypatch.chdir(tmp_path)
    argv = ["bisect", "--repo", str(repo),
            *[a.format(good=shas[0], bad=shas[-1], tmp=tmp_path) for a in args]]
    if "--impl-class" not in args:
        argv += ["--impl-class", "mygru.rnn:GRU", "--family", "gru"]
    else:
        argv += ["--impl", "torch-gru"] if "nopkg.rnn:GRU" in args else ["--family", "gru"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert all(n in err for n in names), err
    assert not (tmp_path / "results").exists()


# --- end to end ---------------------------------------------------------------------------------


DOC = (Path(__file__).resolve().parent.parent / "docs" / "bisect.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", DOC, flags=re.M | re.S)
SHOWN = [body.splitlines() for lang, body in BLOCKS if lang == ""]  # check, timing, undecided


def doc_line(start: str) -> list[str]:
    """The argv of the bisect.md command line that starts with ``start``."""
    (line,) = [x for lang, body in BLOCKS if lang == "bash" for x in body.splitlines()
               if x.startswith(start)]
    return shlex.split(line)[1:]


def unshown(shown: list[str], printed: list[str]) -> list[str]:
    """The page's lines (… standing for anything) that no printed line matches."""
    patterns = [re.compile(".*".join(re.escape(part) for part in line.split("…")))
                for line in shown]
    return [line for line, pattern in zip(shown, patterns)
            if not any(pattern.fullmatch(p) for p in printed)]


PAGE_BISECT = "seq-harness bisect --good v1.0 --bad main --impl-class mygru.rnn:GRU --family gru"
CHECK_LINE, TIMING_LINE = f"{PAGE_BISECT} --check ", f"{PAGE_BISECT} --min-effect "


def test_every_command_and_block_of_the_page_is_run_here():
    """The page's two commands run below (in the slow tier: a fresh process per step); its
    output blocks: the check's, the timing's, and an undecided step's (from a fake timing judge
    above)."""
    lines = [x for lang, body in BLOCKS if lang == "bash" for x in body.splitlines() if x.strip()]
    assert len(lines) == 2 and all(x.startswith((CHECK_LINE, TIMING_LINE)) for x in lines)
    assert [lang for lang, _ in BLOCKS] == ["bash", "", "", ""]


@pytest.mark.slow  # a run in a worktree per step, each a fresh process (CI: the steps' logic)
def test_bisect_check_finds_the_commit_that_scaled_the_output(mygru, tmp_path, monkeypatch,
                                                              capsys):
    """docs/bisect.md's --check line, run in the repository it describes."""
    repo, shas = mygru
    monkeypatch.chdir(repo)
    out, db = tmp_path / "bisect", tmp_path / "history.sqlite"
    argv = doc_line(CHECK_LINE)
    assert main([*argv, "--out", str(out), "--db", str(db)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"first bad commit: {shas[4]} scale the output" in printed
    assert f"last good commit: {shas[3]}" in printed
    assert unshown(SHOWN[0], printed) == []
    saved = json.loads((out / "bisect.json").read_text())
    assert saved["first_bad"] == shas[4]
    assert saved["steps"][0]["label"] == "endpoints" and saved["steps"][0]["verdict"] == BAD
    assert len(saved["steps"]) <= 1 + steps_needed(6)
    assert any(line.startswith("seq-harness bisect: history: added ") for line in printed)
    with sqlite3.connect(db) as connection:  # each run at its commit, its parent from --repo
        runs = set(connection.execute('SELECT "commit", parent_commit FROM runs'))
    assert runs == {(shas[i], shas[i - 1] if i else "") for i in (0, 3, 4, 6)}
    assert git(repo, "worktree", "list").count("\n") == 0  # every worktree removed


@pytest.mark.slow
def test_bisect_finds_the_commit_that_made_the_gru_slower(mygru, tmp_path, monkeypatch, capsys):
    """docs/bisect.md's timing line, on a small shape: 3 steps, each starting with 8 fresh
    processes per commit and adding 5 per look until both of its questions are decided (12
    minutes on a 2-core machine, with 8, 38 and 28 processes per commit in the three steps)."""
    repo, shas = mygru
    monkeypatch.chdir(repo)
    grid = tmp_path / "tiny.json"
    grid.write_text(json.dumps({"name": "tiny", "cases": [
        {"seq_len": 20, "batch": 4, "input_size": 32, "hidden_size": 32}]}))
    argv = doc_line(TIMING_LINE)
    code = main([*argv, "--grid", str(grid), "--phase", "inference", "--workers", "8",
                 "--alpha", "0.05", "--min-run-time", "0.3", "--out", str(tmp_path / "bisect")])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0, "\n".join(printed)
    assert f"first bad commit: {shas[2]} a second pass over the output" in printed
    assert unshown(SHOWN[1], printed) == []
    step = tmp_path / "bisect" / "step-1"
    assert {json.loads((step / side / "run.json").read_text())["git_commit"]
            for side in ("good", "mid", "bad")} == {shas[0], shas[3], shas[6]}
