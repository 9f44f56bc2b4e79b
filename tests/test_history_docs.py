"""Every command and Python block of docs/history.md runs as written, on a synthetic history
(tests/synthetic_history.py) in a scratch directory, and prints what the page shows.

``seq-harness`` lines run in-process (an ``VAR=value`` prefix sets the environment for that line);
the page's plain blocks after the first command block are its output, compared line by line; the
HTML page `history page` writes holds its summary line and commit links."""

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
    assert words[:2] == ["seq-harness", "history"], f"docs/history.md: no test runs {line!r}"
    try:
        return main(words[1:])
    finally:
        monkeypatch.delenv("SEQ_HARNESS_DB", raising=False)


def test_every_command_runs_and_prints_what_the_page_shows(scratch, monkeypatch, capsys):
    codes = {}
    printed = []
    for line in commands():
        codes[line] = run_line(line, monkeypatch)
        printed += capsys.readouterr().out.splitlines()
    assert codes["seq-harness history check"] == 1  # the page's history has a new regression
    assert all(code == 0 for line, code in codes.items() if line != "seq-harness history check")
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
                                               "1.094x"]
