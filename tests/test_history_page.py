"""``seq-harness history page`` (harness.history.page_data, page_figures, page): the page's
content without a browser (the summary line, the regressions and breakages tables, commit links,
escaping, nothing fetched from a network), then the page loaded in a real headless Chromium:
no console output and no drawing error, every latency series and check grid drawn in the DOM after
the scripts ran, per machine through the machine selector's URL hash, and a screenshot that is
not blank, and the drift against an anchor drawn where gates against one are in the history. The
browser tests skip, saying why, where no Chromium is installed (Debian:
``apt-get install chromium``); tox -e history runs them.

SEQ_HARNESS_PAGE_SCREENSHOT=PATH keeps the screenshot (docs/history-page.png is made so).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.history import add_directories, open_database
from harness.history.page import plotly_js, render
from harness.history.page_data import PageData, gather
from tests.synthetic_history import (
    FINGERPRINT,
    build_gate,
    build_history,
    check,
    run_info,
    write_run,
)

COMMIT_URL = "https://github.com/o/r/commit/{commit}"
SUMMARY = ("1 new regression: torch-gru inference T100-B64-I256-H256 1.091x from 0014c0ffeec0 "
           "on ci-runner-1; 1 check started failing: torch-gru values::matches_reference "
           "T5-B3-I3-H7 from 0017c0ffeec0 on ci-runner-1.")
OTHER_CPU = dict(FINGERPRINT, cpu="Other CPU 42", cpu_id="GenuineOther 6 143 8")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> str:
    """docs/history.md's history on ci-runner-1 (torch-gru's inference 10% slower from commit
    14, a check failing from 17) and eight flat runs on another CPU."""
    root = tmp_path_factory.mktemp("page")
    url = f"sqlite:///{root / 'history.sqlite'}"
    engine = open_database(url)
    add_directories(engine, [*build_history(root / "main-a", 20, step_at=14, fail_at=17, seed=3),
                             *build_history(root / "main-b", 10, step_at=0, fail_at=0, seed=4,
                                            first=20)], machine="ci-runner-1")
    add_directories(engine, build_history(root / "other", 8, seed=5, first=100,
                                          fingerprint=OTHER_CPU, processor="Other CPU 42"))
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def data(history) -> PageData:
    engine = open_database(history, create=False)
    try:
        return gather(engine)
    finally:
        engine.dispose()


def without_plotly(html: str) -> str:
    """The page less the embedded plotly.js (whose code holds tags and URLs of its own)."""
    js, _ = plotly_js()
    assert js in html
    return html.replace(js, "")


def section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, flags=re.S)
    assert match, f"no section {name}"
    return match.group(1)


def cells(table_html: str) -> list[list[str]]:
    """The body rows' cells as text, tags removed."""
    body = table_html.split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


# --- the page's content, without a browser ---------------------------------------------------

def test_summary_line_names_what_got_slower_and_what_broke(data):
    assert data.summary() == SUMMARY  # two machines: each finding says where
    html = render(data)
    assert re.search(r'<p id="summary" class="summary bad">1 new regression: ', html)


def test_a_quiet_history_says_nothing_got_slower(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'h.sqlite'}")
    add_directories(engine, build_history(tmp_path / "flat", 8, seed=1))
    quiet = gather(engine)
    engine.dispose()
    assert quiet.summary() == ("Nothing got slower and no check broke: 4 latency series and 6 "
                               "checks over 8 runs on 1 machine; latest 0007c0ffeec0.")
    html = render(quiet)
    assert 'class="summary good"' in html
    assert "No latency series got slower" in section(html, "regressions")
    assert "None: no check that passed before fails" in section(html, "breakages")


def test_regressions_and_breakages_tables_name_the_commit_ranges_with_links(data):
    html = render(data, commit_url=COMMIT_URL)
    regressions = section(html, "regressions")
    assert cells(regressions) == [["ci-runner-1", "torch-gru", "gru", "T100-B64-I256-H256",
                                   "inference", "1", "0013c0ffeec0", "0014c0ffeec0", "1.091x",
                                   "[1.074, 1.109]", "new regression"]]
    full = "0014" + "c0ffee" * 6
    assert (f'<a href="https://github.com/o/r/commit/{full}" title="{full}">'
            '<span class="commit">0014c0ffeec0</span></a>') in regressions
    [change] = data.regressions
    assert f'href="#m1:latency-{change.series_id}"' in regressions  # to its chart
    assert f'id="fig-latency-{change.series_id}" class="new-regression"' in html
    breakages = section(html, "breakages")
    assert cells(breakages) == [["ci-runner-1", "torch-gru", "values::matches_reference",
                                 "T5-B3-I3-H7", "0016c0ffeec0", "0017c0ffeec0", "13",
                                 "h_n differs by 0.3"]]
    assert f'href="https://github.com/o/r/commit/0017{"c0ffee" * 6}"' in breakages
    assert "Not recorded yet" in section(html, "drift")  # no gate against an anchor here
    assert "github.com/o/r" not in render(data)  # no template, no links


def test_the_page_is_self_contained(data):
    html = render(data, commit_url=COMMIT_URL)
    ours = without_plotly(html)
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", ours)
    assert not re.search(r"<link\b", ours)
    assert "@import" not in ours and "url(" not in ours
    assert html.count("<script") == 3  # the figures' JSON, plotly.js, the page's script
    assert re.search(r"plotly\.js \d+\.\d+\.\d+</a> \(MIT licence", html)


def test_every_string_from_the_database_is_escaped(tmp_path):
    """A machine name and a check message with markup show as text, in the tables and in the
    figures' JSON alike."""
    nasty = "<img src=x onerror=alert(1)> & 'q'"
    runs = []
    for index, outcome in enumerate(["passed"] * 3 + ["failed"] * 2):
        info = run_info(index)
        runs.append(write_run(tmp_path / f"run-{index}", info, [
            check("torch-gru", "matches_reference", outcome, info.run_id,
                  nasty if outcome == "failed" else None)]))
    engine = open_database(f"sqlite:///{tmp_path / 'h.sqlite'}")
    add_directories(engine, runs, machine='<b>box "1"</b>')
    html = without_plotly(render(gather(engine), commit_url=COMMIT_URL))
    engine.dispose()
    assert "<img" not in html and "<b>box" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#x27;q&#x27;" in section(html, "breakages")
    assert "&lt;b&gt;box &quot;1&quot;&lt;/b&gt;" in html
    figures = re.search(r'<script type="application/json" id="figures">(.*?)</script>', html,
                        flags=re.S).group(1)
    assert "<" not in figures and "\\u0026lt;img" in figures


def test_the_command_writes_the_page_and_refuses_bad_input_in_one_line(history, tmp_path,
                                                                        capsys):
    out = tmp_path / "page.html"
    assert main(["history", "page", str(out), "--db", history, "--commit-url", COMMIT_URL]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"seq-harness history: wrote {out} (4.")
    assert "MB, 8 latency charts on 2 machines); 1 new regression: " in printed
    assert out.read_text().startswith("<!DOCTYPE html>")
    for argv, message in [
        (["--commit-url", "https://x/{sha}"], "--commit-url 'https://x/{sha}' is invalid"),
        (["--commit-url", "javascript:{commit}"], "--commit-url 'javascript:{commit}' is "),
        (["--confidence", "1.5"], "--confidence 1.5 is invalid"),
        (["--anchor-confirm", "0"], "--anchor-confirm 0 is invalid"),
    ]:
        assert main(["history", "page", str(tmp_path / "bad.html"), "--db", history,
                     *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert main(["history", "page", str(tmp_path / "site" / "index.html"), "--db", history]) == 0
    assert (tmp_path / "site" / "index.html").is_file()  # its directory made
    capsys.readouterr()
    assert main(["history", "page", str(tmp_path / "site"), "--db", history]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a directory; expected a file path" in err and "\n" not in err
    assert main(["history", "page", str(tmp_path / "p.html"), "--db",
                 str(tmp_path / "typo.sqlite")]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert not (tmp_path / "bad.html").exists()


# --- the page in a real browser ---------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium); "
                    "the history page's browser tests need it")
    return found


@pytest.fixture(scope="module")
def page(history, data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "history.html"
    path.write_text(render(data, commit_url=COMMIT_URL), encoding="utf-8")
    return path


def browse(chromium: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Chromium headless on ``url`` with a fresh profile; console output on stderr."""
    profile.mkdir()
    return subprocess.run([chromium, *HEADLESS, f"--user-data-dir={profile}",
                           "--enable-logging=stderr", "--v=0", *extra, url],
                          capture_output=True, text=True, timeout=180, check=False)


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to the console (Chromium logs every level as INFO:CONSOLE), uncaught
    errors included; the browser's own complaints about D-Bus and GPUs are not the page's."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


class Drawn(HTMLParser):
    """Per wanted element id, the start tags (name, attributes) inside it."""

    def __init__(self, ids: set[str]) -> None:
        super().__init__()
        self.inside: dict[str, list[tuple[str, dict]]] = {i: [] for i in ids}
        self.open: list[list] = []  # [id, divs open inside it, itself included]

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        for entry in self.open:
            self.inside[entry[0]].append((tag, attributes))
        if tag == "div":
            for entry in self.open:
                entry[1] += 1
            if attributes.get("id") in self.inside:
                self.open.append([attributes["id"], 1])

    def handle_startendtag(self, tag, attrs) -> None:
        for entry in self.open:
            self.inside[entry[0]].append((tag, dict(attrs)))

    def handle_endtag(self, tag) -> None:
        if tag == "div":
            for entry in self.open:
                entry[1] -= 1
            self.open = [entry for entry in self.open if entry[1] > 0]


def classes(tags: list[tuple[str, dict]], name: str) -> list[dict]:
    """The attributes of the tags that have the class ``name``."""
    return [a for _, a in tags if name in (a.get("class") or "").split()]


def test_every_series_is_drawn_in_chromium_without_console_errors(chromium, page, data,
                                                                  tmp_path):
    assert len(data.machines) == 2
    for machine in data.machines:
        shown = browse(chromium, f"{page.as_uri()}#{machine.key}", tmp_path / machine.key,
                       "--dump-dom")
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert console_lines(shown.stderr) == []
        dom = shown.stdout.split('<script type="application/json" id="figures">')[0]
        errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, flags=re.S)
        assert errors and errors.group(1) == "" and "hidden" in errors.group(0)
        sections = dict(re.findall(r'<section class="machine" data-machine="(\w+)" '
                                   r'id="machine-\w+"( hidden="")?>', dom))
        assert sections == {m.key: "" if m is machine else ' hidden=""' for m in data.machines}
        wanted = {c.key for m in data.machines for c in m.charts} | {
            f"checks-{m.key}" for m in data.machines}
        parser = Drawn(wanted)
        parser.feed(dom)
        for chart in machine.charts:
            tags = parser.inside[chart.key]
            runs = len(chart.timeline.runs)
            assert len(classes(tags, "scatter")) == 3, chart.key  # band x2, medians
            lines = [a for a in classes(tags, "js-line") if a.get("d", "").startswith("M")]
            assert len(lines) == 3, chart.key
            assert len(classes(tags, "js-fill")) == 1, chart.key  # the noise band
            assert len(classes(tags, "point")) == runs, chart.key  # a marker per run
            assert len(classes(tags, "errorbar")) == runs, chart.key  # its process spread
            dashed = [a for t, a in tags if t == "path" and "stroke-dasharray" in
                      a.get("style", "") and a.get("d", "").startswith("M")]
            assert len(dashed) == len(chart.changes), chart.key  # the change points
        grid = parser.inside[f"checks-{machine.key}"]
        if machine.check_rows:
            assert classes(grid, "hm") and any(
                t == "image" and (a.get("href") or a.get("xlink:href") or "").startswith(
                    "data:image/png") for t, a in grid)
        else:
            assert grid == []
        others = [c.key for m in data.machines if m is not machine for c in m.charts]
        assert all(parser.inside[key] == [] for key in others)  # drawn when selected


def test_screenshot_is_not_blank(chromium, page, tmp_path):
    from PIL import Image

    png = tmp_path / "page.png"
    shown = browse(chromium, page.as_uri(), tmp_path / "profile", "--window-size=1400,1600",
                   f"--screenshot={png}")
    assert shown.returncode == 0 and png.is_file(), shown.stderr[-2000:]
    assert console_lines(shown.stderr) == []
    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 1600)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, tables, plots: not one colour
    pixels = {colour for _, colour in colours}
    assert (253, 232, 228) in pixels  # the summary's red background: something got slower
    assert any(abs(r - 31) + abs(g - 61) + abs(b - 122) < 30 for r, g, b in pixels)  # medians
    keep = os.environ.get("SEQ_HARNESS_PAGE_SCREENSHOT")
    if keep:
        shutil.copyfile(png, keep)


@pytest.fixture(scope="module")
def anchored(tmp_path_factory) -> tuple[PageData, Path]:
    """A history of eight runs and four gates of later commits against the anchor commit 0
    (v1.0), the last two 8% slower than the anchor; its data and its page."""
    root = tmp_path_factory.mktemp("anchored")
    engine = open_database(f"sqlite:///{root / 'history.sqlite'}")
    add_directories(engine, build_history(root / "runs", 8, seed=6))
    add_directories(engine, [build_gate(root / f"gate-{i}", i, ratio=r, seed=i)
                             for i, r in ((8, 1.0), (9, 1.01), (10, 1.08), (11, 1.08))])
    data = gather(engine)
    engine.dispose()
    path = root / "history.html"
    path.write_text(render(data, commit_url=COMMIT_URL), encoding="utf-8")
    return data, path


def test_the_drift_against_the_anchor_is_drawn_in_chromium(chromium, anchored, tmp_path):
    data, page = anchored
    [machine] = data.machines
    [chart] = data.drift_of(machine.key)
    shown = browse(chromium, f"{page.as_uri()}#{machine.key}", tmp_path / "profile",
                   "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert console_lines(shown.stderr) == []
    dom = shown.stdout.split('<script type="application/json" id="figures">')[0]
    errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, flags=re.S)
    assert errors and errors.group(1) == ""
    parser = Drawn({chart.key})
    parser.feed(dom)
    tags = parser.inside[chart.key]
    assert len(classes(tags, "scatter")) == 1  # the ratios
    assert len(classes(tags, "point")) == len(chart.points) == 4  # a marker per head commit
    assert len(classes(tags, "errorbar")) == 4  # its interval
    assert re.search(r'<div class="drift-machine" data-machine="m1">', dom)
    assert "cumulative regression" in section(dom, "drift")
