"""calibrate --drift: the histories it builds, the rules it applies online (history check's own
and the anchors', each on a hand-made series where its documented rule must or must not alarm),
the rates it computes, and the command on a tiny measured directory. Seeded, no timing."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from itertools import pairwise
from math import comb

import numpy as np
import pytest

from harness.cli import main
from harness.history.drift_asv import asv_alarms
from harness.history.drift_calibration import (
    ALPHAS,
    FALSE_ALARM_GOAL,
    GAPS,
    STEP,
    STEPS,
    WARMUP,
    WINDOW,
    SimulationRequest,
    evaluate,
    false_alarms,
    make_histories,
    onsets,
    shrunk,
    tune_alpha,
)
from harness.history.drift_noise import RUNS_DIR, SETTINGS_FILE, MeasuredNoise, run_values
from harness.history.drift_rules import (
    Alarm,
    AsvRegressions,
    HistoryCheck,
    LookbackZ,
    PreviousResult,
)
from harness.history.judge import ALPHA, NEW_REGRESSION, judge_timelines
from harness.history.timelines import RunRef, Timeline, Timelines
from tests.synthetic_history import run_info, timing, write_run

QUIET = np.exp(np.random.default_rng(5).normal(0.0, 0.003, 40))  # 0.3% run-to-run noise


def test_stepped_histories_carry_five_one_percent_steps_and_flat_ones_none():
    request = SimulationRequest(histories=30, seed=3)
    stepped = make_histories(QUIET, request, stepped=True)
    flat = make_histories(QUIET, request, stepped=False)
    for history in stepped:
        steps = history.steps
        assert len(steps) == STEPS and steps[0] >= 2 * WARMUP
        assert all(GAPS[0] <= b - a <= GAPS[1] for a, b in pairwise(steps))
        assert steps[-1] + WINDOW < len(history.values)
        # every value is a measured ratio times the steps before it
        level = np.array([(1 + STEP) ** sum(n >= s for s in steps)
                          for n in range(len(history.values))])
        assert np.all(np.isin(np.round(history.values / level, 12), np.round(QUIET, 12)))
    assert all(h.steps == () and np.all(np.isin(h.values, QUIET)) for h in flat)
    assert make_histories(QUIET, request, stepped=True)[0].values.tolist() == \
        stepped[0].values.tolist()  # seeded


def judged(values: np.ndarray):
    refs = tuple(RunRef(f"r{i}", None, (datetime(2024, 1, 1, tzinfo=timezone.utc),) * 2)
                 for i in range(len(values)))
    line = Timeline(series_id=1, machine_id=1, machine="m", kind="latency", impl="x",
                    origin="builtin", family="gru", suite="latency", check="inference",
                    case_id="c", threads=1, device="cpu", dtype="float32", runs=refs,
                    workers_s=tuple((float(v),) for v in values))
    return judge_timelines(Timelines((line,), (), ((1, "m"),), len(values), 0, 1, 0))


def test_history_check_rule_is_the_commands_judgement():
    """The latest change's verdict, as judge_timelines gives it for the same runs."""
    values = np.concatenate([QUIET[:30], QUIET[:12] * 1.08])
    found, alarm = judged(values), HistoryCheck().at(values)
    assert found.changes[-1].verdict == NEW_REGRESSION and found.changes[-1].spans == 1
    assert alarm is not None and alarm.first_bad == found.changes[-1].change.index == 30
    assert alarm.ratio == pytest.approx(found.changes[-1].change.ratio)


def test_a_drift_of_small_steps_is_one_new_regression():
    """Three +2% steps, each below the 3% minimum effect, add up to a new regression reported
    from the first of them; history check without the drift rule stays quiet."""
    level = np.ones(40)
    for step in (20, 26, 33):
        level[step:] *= 1.02
    values = QUIET * level
    found = judged(values)
    assert [c.verdict for c in found.changes[:-1]] == ["below the minimum effect"] * 3
    drift = found.changes[-1]
    assert (drift.verdict, drift.spans, drift.change.index) == (NEW_REGRESSION, 3, 20)
    assert drift.change.low < 1.02**3 < drift.change.high
    alarm = HistoryCheck().at(values)
    assert alarm is not None and (alarm.first_bad, alarm.ratio) == (20, drift.change.ratio)
    assert HistoryCheck(drifts=False).at(values) is None


def test_history_check_online_alarms_after_a_clear_step_and_stays_quiet_when_flat():
    values = np.concatenate([QUIET[:30], QUIET[:15] * 1.10])
    alarms = HistoryCheck().alarms(values, range(WARMUP, len(values)))
    # seen once five runs after the step are in: with 30 runs before it, four runs above all of
    # them are a rank test's p of 1 / C(34, 4) = 2.2e-5, above the default alpha of 1e-5
    assert min(alarms) == 34 and comb(34, 4) * ALPHA < 1 < comb(35, 5) * ALPHA
    assert all(a.first_bad == 30 and a.covers(1.10) for a in alarms.values())
    assert HistoryCheck().alarms(QUIET, range(WARMUP, len(QUIET))) == {}


def test_github_action_benchmark_and_codspeed_compare_with_the_previous_result():
    values = np.array([1.0, 1.0, 1.04, 2.1, 2.1, 2.15])
    assert set(PreviousResult("gab 200%", 2.0).alarms(values, range(6))) == {3}
    assert set(PreviousResult("codspeed 10%", 1.10).alarms(values, range(6))) == {3}
    assert set(PreviousResult("gab 103%", 1.03).alarms(values, range(6))) == {2, 3}
    with pytest.raises(ValueError, match=r"threshold 0\.5"):
        PreviousResult("bad", 0.5)


def test_conbench_alarms_at_z_five_over_the_previous_hundred():
    base = np.tile([0.99, 1.01], 60)  # mean 1, sd ~0.01
    sd = float(np.std(base[-100:], ddof=1))
    rule = LookbackZ()
    assert rule.alarms(np.append(base, 1 + 5.2 * sd), range(120, 121)).keys() == {120}
    assert rule.alarms(np.append(base, 1 + 4.8 * sd), range(120, 121)) == {}
    assert rule.alarms(np.append(base, 1 - 9 * sd), range(120, 121)) == {}  # faster
    assert rule.alarms(np.array([1.0, 5.0]), range(2)) == {}  # one result is no baseline


def test_asv_reports_a_step_beyond_five_percent_and_blames_it():
    rng = np.random.default_rng(1)
    values = np.exp(rng.normal(0, 0.003, 60))
    stepped = values * np.where(np.arange(60) >= 40, 1.08, 1.0)
    found = asv_alarms(stepped, range(WARMUP, 60))
    assert found and min(found) <= 43 and all(first_bad == 40 for first_bad, _ in found.values())
    assert found[59][1] == pytest.approx(1.08, abs=0.01)
    small = values * np.where(np.arange(60) >= 40, 1.03, 1.0)
    assert asv_alarms(small, range(WARMUP, 60)) == {}  # under its 5% threshold
    assert asv_alarms(values, range(WARMUP, 60)) == {}
    assert AsvRegressions().alarms(stepped, range(59, 60))[59].first_bad == 40


def test_rates_on_quiet_noise():
    """With 0.3% noise the drift is plain: detected, blamed right, no false alarm; the
    previous-result rule at 200% never alarms."""
    request = SimulationRequest(histories=12, seed=1)
    stepped = make_histories(QUIET, request, stepped=True)
    flat = make_histories(QUIET, request, stepped=False)
    ours = evaluate(HistoryCheck(), stepped, flat)
    assert ours.detected >= 0.9 and ours.blame >= 0.9 and ours.onsets == 0
    assert ours.median_delay <= WINDOW
    gab = evaluate(PreviousResult("gab", 2.0), stepped, flat)
    assert gab.detected == 0 and gab.onsets == 0 and math.isnan(gab.blame)
    assert onsets([3, 4, 5, 9, 11, 12]) == 3


def test_tuning_stops_at_the_first_alpha_within_the_goal_and_quieter_noise_keeps_its_shape():
    request = SimulationRequest(histories=3, seed=1)
    tried = tune_alpha(QUIET, request, lambda alpha: HistoryCheck(alpha=alpha))
    assert [alpha for alpha, _ in tried] == list(ALPHAS[:len(tried)])
    assert tried[-1][1] <= FALSE_ALARM_GOAL
    assert all(alarms > FALSE_ALARM_GOAL for _, alarms in tried[:-1])

    class Loud:  # alarms every 10th commit above an alpha of 5e-4
        def __init__(self, alpha):
            self.alpha = alpha

        def alarms(self, values, commits):
            return {n: Alarm(n, 1.1) for n in commits if n % 10 == 0 and self.alpha > 5e-4}

    loud = tune_alpha(QUIET, request, Loud)
    assert [alpha for alpha, _ in loud] == [1e-2, 1e-3, 3e-4]
    assert loud[0][1] == loud[1][1] > FALSE_ALARM_GOAL and loud[2][1] == 0.0
    loud = shrunk(QUIET, 0.02)
    assert np.std(np.log(loud), ddof=1) == pytest.approx(0.02)
    assert np.argsort(loud).tolist() == np.argsort(QUIET).tolist()


def test_noise_is_each_runs_median_of_process_medians_over_their_median():
    records = [timing("torch-gru", "inference", w, [s, s], "r")
               for w, s in enumerate([1.0, 3.0, 2.0, 2.0, 2.0, 9.0, 4.0])]
    values = run_values(records, 3)  # the seventh process starts an incomplete run: dropped
    assert values == (2.0, 2.0)
    noise = MeasuredNoise((2.0, 4.0, 1.0), 3)
    assert noise.ratios.tolist() == [1.0, 2.0, 0.5]
    with pytest.raises(ValueError, match="1 complete run"):
        MeasuredNoise((2.0,), 3)


@pytest.mark.parametrize(("argv", "names"), [
    (["calibrate", "--runs", "10"], ["--runs 10", "--drift"]),
    (["calibrate", "--drift", "--runs", "0"], ["--runs 0"]),
    (["calibrate", "--drift", "--runs", "5"], ["--runs 5"]),
    (["calibrate", "--drift", "--histories", "-3"], ["--histories -3"]),
    (["calibrate", "--drift", "--block", "0"], ["--block 0"]),
    (["calibrate", "--drift", "--analyze", "--out", "nowhere"], ["nowhere"]),
])
def test_calibrate_drift_rejects_bad_options(argv, names, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert all(n in err for n in names)


def test_calibrate_drift_analyze_judges_measured_runs_again(tmp_path, capsys):
    rng = np.random.default_rng(2)
    info = run_info(0, run_id="drift")
    records = [timing("torch-gru", "inference", w, list(np.exp(rng.normal(-6, 0.01, 3))),
                      "drift") for w in range(20)]
    write_run(tmp_path / RUNS_DIR, info, records)
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(
        {"runs": 10, "processes_per_run": 2, "seconds": 60.0, "load_before": 0.1,
         "load_after": 1.2, "cpus": 2}))
    out = tmp_path / "copy.md"
    assert main(["calibrate", "--drift", "--analyze", "--out", str(tmp_path), "--histories", "2",
                 "--output", str(out), "--tune-on", str(tmp_path)]) == 0
    text = (tmp_path / "calibration-drift.md").read_text()
    assert text == out.read_text() and "10 runs of 2 fresh processes" in text
    assert "under load" not in text and "**Tuning** (on a separate measurement" in text
    assert "by the alpha of its test of the latest level: 0.01:" in text
    assert "**The same noise, quieter**" in text
    for name in ("seq-harness history check", "github-action-benchmark", "asv", "Conbench",
                 "CodSpeed"):
        assert name in text
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["calibrate", "--drift", "--help"])
    assert "--processes-per-run" in capsys.readouterr().out


def test_the_default_alpha_keeps_flat_heavy_tailed_histories_quiet_where_five_percent_cries_wolf():
    """history check judges every series after every commit, so its test of the latest level
    runs ~100 times per 100 commits: at 5% it alarms on histories with nothing in them; at the
    default alpha it does not (Student t noise, 3 degrees of freedom, 5% scale: the tails this
    project's machines show)."""
    noise = np.exp(np.random.default_rng(8).standard_t(3, 60) * 0.05)
    flat = make_histories(noise, SimulationRequest(histories=12, seed=4), stepped=False)
    assert false_alarms(HistoryCheck(alpha=0.05), flat)[0] >= 5
    assert false_alarms(HistoryCheck(), flat)[0] == 0


def test_the_command_s_default_alpha_is_the_judge_s(capsys):
    with pytest.raises(SystemExit):
        main(["history", "check", "--help"])
    assert "default 1e-5" in capsys.readouterr().out and ALPHA == 1e-5
    assert main(["history", "check", "--alpha", "0", "--db", "sqlite://"]) == 2
    assert "--alpha 0 is invalid" in capsys.readouterr().err
