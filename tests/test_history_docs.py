"""Every command and Python block of docs/history.md runs as written, on a synthetic history
(tests/synthetic_history.py) in a scratch directory, and prints what the page shows; the GitHub
Actions workflow's run steps run as a script (its checks and timings narrowed to a registry
entry and a tiny grid, its push against a local bare repository).

``seq-harness`` lines run in-process (an ``VAR=value`` prefix sets the environment for that line;
the anchor's ``gate`` line runs over a stand-in process runner); the page's plain blocks after the
first command block are its output, compared line by line; the HTML page `history page` writes
holds its summary line and commit links."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import main
from tests.synthetic_history import build_history

DOC = (Path(__file__).resolve().parent.parent / "docs" / "history.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", DOC, flags=re.M | re.S)


def commands() -> list[str]:
    return [line for lang, body in BLOCKS if lang == "bash" for line in body.splitlines()
            if line.strip()]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The page's results directories: main-a (20 commits, torch-gru's inference 10% slower from
    the 15th, a check failing from the 18th), main-b (the 10 commits after)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQ_HARNESS_DB", raising=False)
    build_history(Path("results/main-a"), 20, step_at=14, fail_at=17, seed=3)
    build_history(Path("results/main-b"), 10, step_at=0, fail_at=0, seed=4, first=20)
    return tmp_path


def run_line(line: str, monkeypatch) -> int:
    words = shlex.split(line)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        name, _, value = words.pop(0).partition("=")
        monkeypatch.setenv(name, value)
    if words[:2] == ["seq-harness", "gate"]:
        return run_gate(words, monkeypatch)
    assert words[:2] == ["seq-harness", "history"], f"docs/history.md: no test runs {line!r}"
    try:
        return main(words[1:])
    finally:
        monkeypatch.delenv("SEQ_HARNESS_DB", raising=False)


def run_gate(words: list[str], monkeypatch) -> int:
    """The anchor's gate line as written, but for mypkg's class (not installed here) the
    registry's GRU, one phase, and fresh processes and the anchor's worktree stood in for
    (tests/test_sequential_gate.py's runner: head as fast as the anchor)."""
    import contextlib

    from harness.gate import run as gate_run
    from tests.test_sequential_gate import fake_processes

    line = " ".join(words)
    mine = "--head-impl-class mypkg.rnn:MyGRU --family gru"
    assert "--base-ref v1.0" in line and mine in line, line
    monkeypatch.setattr(gate_run, "run_sides", fake_processes(
        {"base": 1e-3, "head": 1e-3}, 0.005, []))

    @contextlib.contextmanager
    def checkout(ref):
        yield Path.cwd(), "a1" * 20

    monkeypatch.setattr(gate_run, "checkout", checkout)
    narrowed = shlex.split(line.replace(mine, "--head-impl torch-gru"))[1:]
    return main([*narrowed, "--phase", "inference"])


def test_every_command_runs_and_prints_what_the_page_shows(scratch, monkeypatch, capsys):
    codes = {}
    printed = []
    for line in commands():
        codes[line] = run_line(line, monkeypatch)
        printed += capsys.readouterr().out.splitlines()
    assert codes["seq-harness history check"] == 1  # the page's history has a new regression
    assert all(code == 0 for line, code in codes.items() if line != "seq-harness history check")
    assert any("; no cumulative regression against the anchor (1 timing)" in line
               for line in printed)  # the anchor's gate: head as fast as the anchor
    [page] = [line.split()[3] for line in codes if line.startswith("seq-harness history page")]
    html = Path(page).read_text()
    assert '<p id="summary" class="summary bad">1 new regression: torch-gru inference ' in html
    assert 'href="https://github.com/OWNER/REPO/commit/0014c0ffee' in html
    shown = [line for lang, body in BLOCKS if lang == "" for line in body.splitlines()]
    assert shown, "docs/history.md shows no output"
    missing = [line for line in shown if line not in printed]
    assert missing == [], "docs/history.md shows lines the commands no longer print"


def test_the_python_block_runs(scratch, monkeypatch, capsys):
    for line in commands()[:1]:
        run_line(line, monkeypatch)
    capsys.readouterr()
    [source] = [body for lang, body in BLOCKS if lang == "python"]
    exec(compile(source, "docs/history.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["torch-gru", "inference", "0014c0ffeec0",
                                               "1.091x"]


def workflow_steps() -> list[str]:
    """The `run:` steps of the page's workflow, folded (`>`) steps joined into one line."""
    (workflow,) = [body for lang, body in BLOCKS if lang == "yaml"]
    steps, current = [], None
    for line in workflow.splitlines():
        found = re.match(r"^\s*- run: ?(.*)$", line)
        if found:
            current = [] if found.group(1).strip() == ">" else None
            steps.append(current if current is not None else [found.group(1).strip()])
        elif current is not None and line.startswith(" " * 10):
            current.append(line.strip())
        else:
            current = None
    return [" ".join(step) for step in steps]


@pytest.mark.slow  # runs, benches and a gate in fresh processes (CI: history's own tests)
def test_the_workflow_runs_as_a_script(tmp_path, monkeypatch, capsys):
    """Each run step as the runner would run it: the install step is docs/ci.md's (resolved by
    tests/test_readme.py); the checks and timings of a registry entry stand for mypkg's (not
    installed here), narrowed; history add, page and check on what they wrote; the results
    committed and pushed to the history branch of a local bare repository."""
    import subprocess

    install, checks, timings, add, page, push, check = workflow_steps()
    assert install.startswith("pip install") and "seq-harness @ git+https://github.com" in install
    sha, repository = "c0ffee" * 6 + "c0ff", "OWNER/REPO"

    def expand(step: str) -> str:
        return step.replace("${{ github.sha }}", sha).replace("${{ github.repository }}",
                                                              repository)

    def git(*args, cwd):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                       check=True, capture_output=True)

    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("init", "-q", str(seed), cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "history", cwd=seed)
    git("push", "-q", str(origin), "HEAD:refs/heads/seq-harness-history", cwd=seed)
    work = tmp_path / "work"
    work.mkdir()
    git("clone", "-q", "-b", "seq-harness-history", str(origin), "history", cwd=work)
    monkeypatch.chdir(work)
    monkeypatch.delenv("SEQ_HARNESS_DB", raising=False)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    mine = "--impl-class mypkg.rnn:MyGRU --family gru"
    assert mine in checks and mine in timings and "--grid standard" in timings
    narrowed_checks = shlex.split(expand(checks).replace(mine, "--impl torch-gru"))[1:]
    assert main([*narrowed_checks, "--suite", "shapes", "-k", "values_match_reference",
                 "-n", "0"]) == 0
    narrowed_timings = shlex.split(expand(timings).replace(mine, "--impl torch-gru")
                                   .replace("--grid standard", "--grid smoke"))[1:]
    assert main([*narrowed_timings, "--phase", "inference", "--workers", "2",
                 "--min-run-time", "0.01", "--no-first-call", "--no-memory"]) == 0
    for step in (add, page):
        assert main(shlex.split(expand(step))[1:]) == 0
    html = (work / "site" / "index.html").read_text()
    assert "torch-gru" in html
    done = subprocess.run(expand(push), shell=True, cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "seq-harness-history"],
                            cwd=origin, capture_output=True, text=True, check=True).stdout
    assert f"results/{sha}/checks/records.jsonl" in listed
    assert f"results/{sha}/bench/records.jsonl" in listed
    capsys.readouterr()
    assert main(shlex.split(expand(check))[1:]) == 0  # one commit: nothing to judge yet
    assert "no new regression" in capsys.readouterr().out
    assert summary.read_text().startswith("### seq-harness history: no new regression")
