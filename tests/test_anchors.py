"""Anchor drift: the gate's gate.json (written by the gate command over a stand-in process
runner, as tests/test_sequential_gate.py runs it), gate directories added to the history once,
the schema's upgrade from version 1, ``history check`` on the latest comparison against the
anchor, and the page's drift section (its content; tests/test_history_page.py draws it in
Chromium). Gate directories are synthetic (tests/synthetic_history.build_gate: verdicts by the
gate's own code)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from harness.cli import main
from harness.gate import run as gate_run
from harness.gate.stats import REGRESSION, UNCHANGED, UNDECIDED
from harness.gate.verdicts_file import read_verdicts
from harness.history import SCHEMA_VERSION, add_directories, open_database
from harness.history.anchors import anchor_findings, load_anchor_points
from harness.history.page import render
from harness.history.page_data import gather
from harness.history.schema import AnchorComparison, Base, SchemaVersion
from harness.history.timelines import load as load_timelines
from tests.synthetic_history import build_gate, build_history, fake_commit
from tests.test_sequential_gate import GATE, fake_processes

ANCHOR_SHA = "ab" * 20


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite'}"


def comparisons(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(AnchorComparison)
                                  ).scalar_one()


@pytest.fixture
def anchored_gate(tmp_path, monkeypatch):
    """``gate --base-ref v1.0`` over fake processes (head 1.2x base) and a fake worktree of
    the anchor, run in a scratch directory outside any checkout; its output directory."""
    calls: list = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gate_run, "run_sides", fake_processes(
        {"base": 1e-3, "head": 1.2e-3}, 0.005, calls))

    @contextlib.contextmanager
    def checkout(ref):
        assert ref == "v1.0"
        yield tmp_path, ANCHOR_SHA

    monkeypatch.setattr(gate_run, "checkout", checkout)
    out = tmp_path / "anchor"
    assert main(["gate", "--base-ref", "v1.0", "--head-impl", "torch-gru", "--phase",
                 "inference", "--out", str(out)]) == 1
    return out


def anchor_gate(tmp_path, monkeypatch, heads: dict[str, float], *extra: str) -> int:
    """``gate --base-ref v1.0`` as ``anchored_gate`` runs it, head ``heads[d]`` x the anchor in
    the gate whose directory is named d (the first: "anchor")."""
    monkeypatch.chdir(tmp_path)
    runners = {d: fake_processes({"base": 1e-3, "head": h * 1e-3}, 0.005, [])
               for d, h in heads.items()}
    monkeypatch.setattr(gate_run, "run_sides",
                        lambda sides, **kw: runners[sides[0].out.parent.name](sides, **kw))

    @contextlib.contextmanager
    def checkout(ref):
        yield tmp_path, ANCHOR_SHA

    monkeypatch.setattr(gate_run, "checkout", checkout)
    return main(["gate", "--base-ref", "v1.0", "--head-impl", "torch-gru", "--phase",
                 "inference", "--out", str(tmp_path / "anchor"), *extra])


def test_a_second_gate_confirms_a_regression_and_the_check_fails_at_once(tmp_path, monkeypatch,
                                                                         capsys):
    """--confirm 2: the gate runs again into OUT/confirm-2 with runs of its own; both say
    regression, so the gate exits 1 and one `history add` gives the check its two in a row."""
    assert anchor_gate(tmp_path, monkeypatch, {"anchor": 1.2, "confirm-2": 1.2},
                       "--confirm", "2") == 1
    out = capsys.readouterr().out
    timing = "torch-gru inference T50-B8-I128-H128"
    assert (f"seq-harness gate: regression in {timing}: gate 2 of 2 runs now, with fresh "
            f"processes, to confirm it (into {tmp_path / 'anchor' / 'confirm-2'})") in out
    assert f"seq-harness gate: regression confirmed by 2 gates in a row: {timing}\n" in out
    first, second = (read_verdicts(tmp_path / "anchor" / d / "gate.json")
                     for d in (".", "confirm-2"))
    assert first.status == second.status == "REGRESSION"
    assert len({first.head_run, second.head_run, first.base_run, second.base_run}) == 4
    assert "**Confirmation**: regression confirmed" in (
        tmp_path / "anchor" / "confirm-2" / "summary.md").read_text()
    url = db_url(tmp_path)
    assert main(["history", "add", str(tmp_path / "anchor"), "--db", url]) == 0
    assert comparisons(open_database(url)) == 2
    assert main(["history", "check", "--db", url]) == 1
    assert capsys.readouterr().out.splitlines()[-2].endswith(": cumulative regression")


@pytest.mark.parametrize(("heads", "code", "said"), [
    ({"anchor": 1.2, "confirm-2": 1.0}, 0, "regression of gate 1 not confirmed: gate 2 does "
     "not say it (torch-gru inference T50-B8-I128-H128)"),
    ({"anchor": 1.0}, 0, None),  # nothing to confirm: one gate
])
def test_a_regression_the_next_gate_does_not_say_is_none(heads, code, said, tmp_path,
                                                         monkeypatch, capsys):
    assert anchor_gate(tmp_path, monkeypatch, heads, "--confirm", "2") == code
    out = capsys.readouterr().out
    assert (tmp_path / "anchor" / "confirm-2").exists() == (said is not None)
    if said:
        assert f"seq-harness gate: {said}\n" in out
        assert read_verdicts(tmp_path / "anchor" / "confirm-2" / "gate.json").status == "OK"
    else:
        assert "confirm" not in out


def test_the_gate_writes_its_verdicts_as_gate_json(anchored_gate):
    raw = json.loads((anchored_gate / "gate.json").read_text())
    assert raw["format"] == 1 and raw["status"] == "REGRESSION"
    assert (raw["alpha"], raw["min_effect"], raw["base_ref"]) == (0.01, 0.03, "v1.0")
    base_run = json.loads((anchored_gate / "base" / "run.json").read_text())
    assert (raw["base_run"], raw["base_commit"]) == (base_run["run_id"], ANCHOR_SHA)
    assert base_run["git_modified"] is False  # a clean worktree of the anchor, whatever head's
    [timing] = raw["timings"]
    assert (timing["impl"], timing["case_id"], timing["phase"]) == (
        "torch-gru", "T50-B8-I128-H128", "inference")
    assert timing["verdict"] == REGRESSION and timing["ratio"] == pytest.approx(1.2)
    assert timing["low"] < 1.2 < timing["high"] and timing["p"] < 0.01
    assert timing["base_processes"] == timing["head_processes"] == 10
    assert read_verdicts(anchored_gate / "gate.json").timings[0].verdict == REGRESSION


@pytest.mark.parametrize(("head", "spread", "status", "verdict"), [
    (1.00, 0.005, "OK", UNCHANGED),
    (1.03, 0.10, "INCONCLUSIVE", UNDECIDED),
])
def test_gate_json_says_ok_and_inconclusive_too(head, spread, status, verdict, tmp_path,
                                                monkeypatch):
    monkeypatch.setattr(gate_run, "run_sides", fake_processes(
        {"base": 1e-3, "head": head * 1e-3}, spread, []))
    main([*GATE, "--out", str(tmp_path / "g")])
    written = read_verdicts(tmp_path / "g" / "gate.json")
    assert (written.status, written.base_ref) == (status, None)
    assert [t.verdict for t in written.timings] == [verdict]


def test_a_bad_gate_json_is_refused_naming_it_before_anything_is_added(tmp_path, capsys):
    gate = build_gate(tmp_path / "gate", 1, ratio=1.0)
    (gate / "gate.json").write_text('{"format": 99}')
    assert main(["history", "add", str(gate), "--db", db_url(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gate.json': not a gate.json this seq-harness reads" in err
    assert open_database(db_url(tmp_path)).connect().execute(
        text("SELECT count(*) FROM runs")).scalar_one() == 0


def test_adding_a_gate_directory_adds_its_comparisons_once(anchored_gate, tmp_path, capsys):
    url = db_url(tmp_path)
    assert main(["history", "add", str(anchored_gate), "--db", url]) == 0
    assert main(["history", "add", str(anchored_gate), "--db", url]) == 0
    first, second = capsys.readouterr().out.splitlines()[-2:]
    assert "added 2 runs, 0 check outcomes, 1 latency series, 20 points, 1 anchor " \
           "comparisons; skipped 0 already there" in first
    assert "added 0 runs, 0 check outcomes, 0 latency series, 0 points, 0 anchor " \
           "comparisons; skipped 21 already there" in second
    engine = open_database(url)
    assert comparisons(engine) == 1
    [point] = load_anchor_points(engine)
    assert (point.anchor_ref, point.anchor_commit, point.verdict) == ("v1.0", ANCHOR_SHA,
                                                                      REGRESSION)
    assert (point.impl, point.phase, point.base_processes) == ("torch-gru", "inference", 10)


def test_a_gate_without_a_base_ref_adds_its_runs_and_no_comparison(tmp_path, monkeypatch):
    monkeypatch.setattr(gate_run, "run_sides", fake_processes(
        {"base": 1e-3, "head": 1e-3}, 0.005, []))
    main([*GATE, "--out", str(tmp_path / "g")])
    engine = open_database(db_url(tmp_path))
    added = add_directories(engine, [tmp_path / "g"])
    assert (added.runs, added.gates, comparisons(engine)) == (2, 0, 0)


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    """A database as version 1 made it (its tables, less anchor_comparisons) opens, upgrades to
    version 2 keeping its rows, and takes a gate's comparisons."""
    url = db_url(tmp_path)
    old = create_engine(url)
    with old.begin() as connection:
        Base.metadata.create_all(connection, tables=[
            t for t in Base.metadata.sorted_tables if t.name != AnchorComparison.__tablename__])
        connection.execute(SchemaVersion.__table__.insert().values(version=1))
    old.dispose()
    add_directories(open_database(url), build_history(tmp_path / "before", 2))
    engine = open_database(url)
    with engine.connect() as connection:
        assert connection.execute(select(SchemaVersion.version)).scalar_one() == SCHEMA_VERSION
        assert "anchor_comparisons" in inspect(connection).get_table_names()
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar_one() == 2
    added = add_directories(engine, [build_gate(tmp_path / "gate", 2, ratio=1.1)])
    assert (added.runs, added.comparisons) == (2, 1)


def anchored_history(root: Path, ratios: list[float], *, spread: float = 0.005) -> str:
    """A database of gates of commits 1, 2, ... against the anchor commit 0 (v1.0), head
    ``ratios[i]`` x the anchor at commit i + 1."""
    url = f"sqlite:///{root / 'history.sqlite'}"
    engine = open_database(url)
    add_directories(engine, [build_gate(root / f"gate-{i + 1}", i + 1, ratio=r, seed=i,
                                        spread=spread) for i, r in enumerate(ratios)])
    engine.dispose()
    return url


def test_check_fails_on_cumulative_regressions_in_two_gates_in_a_row(tmp_path, capsys):
    url = anchored_history(tmp_path, [1.0, 1.08, 1.08])
    assert main(["history", "check", "--db", url]) == 1
    out = capsys.readouterr().out.splitlines()
    line = (r"torch-gru inference T100-B64-I256-H256: 1\.0[78]\dx the anchor v1\.0 \(0000c0f\) "
            r"\[1\.0\d\d–1\.0\d\d\], 10 processes per side "
            rf"\(head {fake_commit(3)[:12]}\): cumulative regression")
    assert re.fullmatch(line, out[-2]), out
    assert out[-1].startswith("seq-harness history: no new regression, no check started "
                              "failing; 1 cumulative regression against the anchor (1 timing)")


def test_one_gate_saying_regression_warns_until_the_next_confirms_it(tmp_path, capsys):
    """A gate's rare false alarm is not a failure on its own: the latest of [ok, regression]
    warns; with --anchor-confirm 1 it fails; after [regression, ok, regression] the streak
    counts from the last ok."""
    url = anchored_history(tmp_path, [1.0, 1.01, 1.08])
    assert main(["history", "check", "--db", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].endswith(": regression in 1 of the 2 gates in a row a cumulative one takes: "
                            "the next gate against the anchor confirms or clears it (a "
                            "warning, not a failure)"), out
    assert out[-1].endswith("; no cumulative regression against the anchor (1 timing, 1 not "
                            "confirmed yet) (1 latency series (1 with too few runs to judge), "
                            "0 check series; 3 runs of the anchor in its comparisons only)")
    page = render(gather(open_database(url)), commit_url=None)
    row = page.split('<section id="drift">', 1)[1].split("<tbody>", 1)[1]
    assert row.startswith('<tr class="undecided">') and "regression, 1 of 2 in a row" in row
    assert main(["history", "check", "--db", url, "--anchor-confirm", "1"]) == 1
    assert capsys.readouterr().out.splitlines()[-2].endswith(": cumulative regression")
    (tmp_path / "again").mkdir()
    again = anchored_history(tmp_path / "again", [1.08, 1.0, 1.08])
    assert anchor_findings(open_database(again)).streaks == (1,)
    assert main(["history", "check", "--db", again]) == 0


def test_the_anchor_runs_of_every_gate_stay_out_of_the_commit_series(tmp_path, capsys):
    """Three gates against the anchor measure it three times: those runs are the comparisons'
    base, not three points of the anchor commit's own latency series."""
    url = anchored_history(tmp_path, [1.0, 1.01, 1.02])
    timelines = load_timelines(open_database(url))
    [line] = timelines.latency
    assert [ref.commit for ref in line.runs] == [fake_commit(i) for i in (1, 2, 3)]
    assert (timelines.runs, timelines.anchor_base_runs) == (6, 3)
    assert len(anchor_findings(open_database(url)).latest) == 1  # still compared
    assert main(["history", "check", "--db", url]) == 0
    assert "; 3 runs of the anchor in its comparisons only" in capsys.readouterr().out


def test_check_passes_when_the_latest_is_ok_though_an_older_one_regressed(tmp_path, capsys):
    url = anchored_history(tmp_path, [1.0, 1.08, 1.0])
    assert main(["history", "check", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "cumulative regression\n" not in out
    assert "; no cumulative regression against the anchor (1 timing)" in out


def test_an_undecided_latest_is_a_warning_not_a_failure(tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    url = anchored_history(tmp_path, [1.08, 1.03], spread=0.10)
    assert anchor_findings(open_database(url)).latest[0].verdict == UNDECIDED
    assert main(["history", "check", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "undecided against the anchor (a warning, not a failure)" in out
    assert "(1 timing, 1 undecided)" in out
    assert "- torch-gru inference T100-B64-I256-H256: " in summary.read_text()


def test_the_page_shows_the_drift_chart_and_the_latest_comparisons(tmp_path):
    url = anchored_history(tmp_path, [1.0, 1.08, 1.08])
    data = gather(open_database(url))
    html = render(data, commit_url="https://github.com/o/r/commit/{commit}")
    assert data.failed and re.search(
        r'<p id="summary" class="summary bad">1 cumulative regression: torch-gru inference '
        r"T100-B64-I256-H256 1\.0[78]\dx the anchor v1\.0 \(0000c0f\) at 0003c0ffeec0\.</p>",
        html)
    drift = re.search(r'<section id="drift">(.*?)</section>', html, flags=re.S).group(1)
    assert "Not recorded yet" not in drift
    [machine] = data.machines
    [chart] = data.drift_of(machine.key)
    assert f'<div class="plot" id="{chart.key}">' in drift
    assert "torch-gru inference T100-B64-I256-H256 against v1.0 (0000c0f)" in drift
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", drift.split("<tbody>", 1)[1])
    assert len(rows) == 1 and "cumulative regression" in rows[0] and "1.08" in rows[0]
    assert f'href="https://github.com/o/r/commit/{fake_commit(3)}"' in rows[0]
    figures = json.loads(re.search(r'<script type="application/json" id="figures">(.*?)'
                                   r"</script>", html, flags=re.S).group(1))
    [figure] = [f for f in figures["machines"][machine.key] if f["id"] == chart.key]
    [points] = [d for d in figure["data"] if d.get("name") == "ratio"]
    assert len(points["x"]) == 3 and points["y"][-1] == pytest.approx(1.08, abs=0.01)
    assert sorted(s["y0"] for s in figure["layout"]["shapes"]) == [1.0, 1.03]


def test_without_anchor_gates_the_page_says_not_recorded_yet(tmp_path):
    engine = open_database(db_url(tmp_path))
    add_directories(engine, build_history(tmp_path / "flat", 3))
    html = render(gather(engine))
    assert "Not recorded yet" in re.search(r'<section id="drift">(.*?)</section>', html,
                                           flags=re.S).group(1)
