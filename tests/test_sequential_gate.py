"""The sequential gate: its alpha spending, its verdicts on synthetic per-process numbers, and
the gate command end to end over a stand-in for the process runner (records written as fresh
processes would write them), so looks, summary and exit codes are tested in milliseconds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.cli import main
from harness.gate import run as gate_run
from harness.gate.sequential import (
    CODES,
    HELD,
    UNDECIDED,
    Schedule,
    look,
    simulated,
)
from harness.gate.stats import IMPROVEMENT, REGRESSION, Comparison
from harness.records import Record, RecordWriter

KEY = ("torch-gru", "T50-B8-I128-H128", "inference")


def sample(center: float, spread: float, n: int, seed: int) -> tuple[float, ...]:
    """n per-process numbers around ``center`` with a relative log-normal spread."""
    rng = np.random.default_rng(seed)
    return tuple(center * np.exp(rng.normal(0.0, spread, n)))


@pytest.mark.parametrize("schedule", [Schedule(10, 5, 40), Schedule(7, 3, 30),
                                      Schedule(10, 5, 10), Schedule(6, 7, 20)])
@pytest.mark.parametrize("timings", [1, 3])
def test_the_looks_spend_exactly_alpha_over_all_timings(schedule, timings):
    looks = schedule.looks
    assert looks[0] == schedule.first and looks[-1] == schedule.most
    assert all(b > a for a, b in itertools.pairwise(looks))
    spent = sum(schedule.alpha_at(n, before, alpha=0.01, timings=timings)
                for before, n in zip((0, *looks), looks)) * timings
    assert spent == pytest.approx(0.01)


def test_a_first_look_that_cannot_decide_is_refused_naming_the_least_that_can():
    with pytest.raises(ValueError, match=r"--workers 5: .* --workers 6 or more can"):
        Schedule(5, 5, 40).validate(alpha=0.01, timings=1)
    Schedule(6, 5, 40).validate(alpha=0.01, timings=1)
    with pytest.raises(ValueError, match="--max-workers 8 is below --workers 10"):
        Schedule(10, 5, 8).validate(alpha=0.01, timings=1)


@pytest.mark.parametrize(("head", "spread", "expected"), [
    (1.10, 0.005, REGRESSION),
    (0.90, 0.005, IMPROVEMENT),
    (1.00, 0.005, HELD),  # identical: provably less than 3% slower
    (1.01, 0.005, HELD),  # slower, but by less than the minimum effect
    (1.03, 0.10, UNDECIDED),  # the minimum effect itself in 10% noise: no decision
])
def test_one_look_decides_what_its_numbers_allow(head, spread, expected):
    base, other = sample(1.0, spread, 40, seed=1), sample(head, spread, 40, seed=2)
    state = look(None, [Comparison(KEY, base, other)], schedule=Schedule(40, 5, 40),
                 alpha=0.01, min_effect=0.03)
    assert [d.verdict for d in state.decisions] == [expected]
    assert state.done == (expected != UNDECIDED)


def test_a_decided_timing_keeps_its_verdict_and_its_look():
    schedule = Schedule(10, 5, 20)
    slow = Comparison(KEY, sample(1.0, 0.005, 10, 1), sample(1.2, 0.005, 10, 2))
    noisy = Comparison(("torch-gru", "T50-B8-I128-H128", "forward_backward"),
                       sample(1.0, 0.2, 10, 3), sample(1.0, 0.2, 10, 4))
    first = look(None, [slow, noisy], schedule=schedule, alpha=0.01, min_effect=0.03)
    assert [d.verdict for d in first.decisions] == [REGRESSION, UNDECIDED]
    # The second look: the slow timing's later processes happen to be fast; its verdict stays.
    later = Comparison(KEY, slow.base + sample(1.0, 0.005, 5, 5), slow.head + sample(
        0.8, 0.005, 5, 6))
    second = look(first, [later, noisy], schedule=schedule, alpha=0.01, min_effect=0.03)
    assert second.decisions[0] is first.decisions[0] and second.decisions[0].look == 1
    assert second.looks == 2


def test_identical_sides_almost_never_regress_over_many_simulated_gates():
    """The false-alarm bound: A/A gates on heavy-tailed noise, at most alpha regress."""
    rng = np.random.default_rng(0)
    base, head = (1.0 + rng.standard_t(3, (4000, 40)) * 0.03 for _ in range(2))
    codes, used = simulated(base, head, schedule=Schedule(10, 5, 40), alpha=0.01,
                            min_effect=0.0)
    assert np.mean(codes == CODES.index(REGRESSION)) <= 0.01
    assert set(used) <= set(Schedule(10, 5, 40).looks)


def test_a_clear_slowdown_is_decided_at_the_first_look_and_noise_needs_more():
    schedule = Schedule(10, 5, 40)
    quiet = np.asarray([sample(1.0, 0.005, 40, 1)]), np.asarray([sample(1.05, 0.005, 40, 2)])
    codes, used = simulated(*quiet, schedule=schedule, alpha=0.01, min_effect=0.03)
    assert (CODES[codes[0]], used[0]) == (REGRESSION, 10)
    noisy = np.asarray([sample(1.0, 0.04, 40, 1)]), np.asarray([sample(1.05, 0.04, 40, 2)])
    codes, used = simulated(*noisy, schedule=schedule, alpha=0.01, min_effect=0.03)
    assert used[0] > 10 and CODES[codes[0]] in (REGRESSION, UNDECIDED)


def fake_processes(centers: dict[str, float], spread: float, calls: list):
    """A stand-in for run_sides: each worker index writes one per-process record per side,
    its numbers drawn around the side's center; worker i's noise is the same on both sides,
    so head / base is exactly the centers' ratio, process by process."""

    def run_sides(sides, *, workers, progress=None, deadline=None, **_):
        calls.append((tuple(workers), deadline))
        for worker in workers:
            for side in sides:
                name = side.out.name
                rng = np.random.default_rng(worker)  # both sides: the same noise
                center = centers[name] * np.exp(rng.normal(0.0, spread))
                writer = RecordWriter(side.out)
                writer.write(Record(
                    impl="torch-gru", family="gru", suite="latency", check="inference",
                    outcome="passed", case_id="T50-B8-I128-H128",
                    metrics={"samples_s": [center * (1 + 0.01 * k) for k in range(5)],
                             "worker": worker}))
                writer.close()
        return []

    return run_sides


GATE = ["gate", "--base-impl", "torch-gru", "--head-impl", "torch-gru", "--phase", "inference"]


@pytest.mark.parametrize(("head", "spread", "code", "status", "processes"), [
    (1.20, 0.005, 1, "**REGRESSION**", [range(0, 10)]),
    (1.00, 0.005, 0, "**OK**", [range(0, 10)]),
    # Exactly the minimum effect: neither a regression above it nor provably below it.
    (1.03, 0.10, 2, "**INCONCLUSIVE**", [range(a, b) for a, b in (
        (0, 10), (10, 15), (15, 20), (20, 25), (25, 30), (30, 35), (35, 40))]),
])
def test_gate_measures_look_by_look_until_decided(head, spread, code, status, processes,
                                                  tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(gate_run, "run_sides",
                        fake_processes({"base": 1e-3, "head": head * 1e-3}, spread, calls))
    assert main([*GATE, "--out", str(tmp_path / "g")]) == code
    captured = capsys.readouterr()
    assert [workers for workers, _ in calls] == [tuple(r) for r in processes]
    assert calls[0][1] is None  # the first look is never cut short by the budget
    assert status in captured.out
    assert status in (tmp_path / "g" / "summary.md").read_text()
    if code == 2:
        assert captured.err.count("\n") == 1
        assert "undecided after 40 processes per side (the most, --max-workers)" in captured.err
        assert "| ? | torch-gru |" in captured.out
    if code == 0:
        assert "no regression ≥ min effect" in captured.out


def test_gate_stops_looking_at_its_budget(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(gate_run, "run_sides",
                        fake_processes({"base": 1e-3, "head": 1.03e-3}, 0.10, calls))
    assert main([*GATE, "--budget", "0.000001", "--out", str(tmp_path / "g")]) == 2
    assert [w for w, _ in calls] == [tuple(range(10))]
    assert "undecided after 10 processes per side (the budget of 1e-06 s)" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(("argv", "names"), [
    ([*GATE, "--workers", "3"], ["--workers 3", "--workers 6 or more can"]),
    ([*GATE, "--workers", "10", "--max-workers", "5"], ["--max-workers 5", "--workers 10"]),
    ([*GATE, "--step", "0"], ["--step 0"]),
    ([*GATE, "--budget", "-1"], ["--budget -1"]),
])
def test_gate_bad_schedules_get_one_line(argv, names, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(n in err for n in names), err


def rates(label: str, slowdown: float, regression: float, gates: int = 10_000):
    from harness.gate.calibration import SequentialRates

    return SequentialRates(label, slowdown, regression, 0.0, 1.0 - regression, (40,) * gates)


def test_the_anchor_drift_figures_follow_the_gates_rates():
    """A gate against an anchor every K commits, an alarm taking C gates in a row: detection
    over the window's fewest gates, false alarms per 100 commits, a bound above the point."""
    from harness.gate.calibration import AnchorDrift

    flat, drifted = rates("A'", 0.0, 0.001), rates("+5%", 0.05, 0.9)
    one = AnchorDrift(10, flat, drifted)
    assert (one.gates_in_window, one.detected) == (1, pytest.approx(0.9))
    assert one.false_alarms_per_100 == pytest.approx(1.0)  # 10 gates x 0.1%, in percent
    two = AnchorDrift(5, flat, drifted, confirm=2)
    assert two.gates_in_window == 2 and two.detected == pytest.approx(1 - (1 - 0.81) ** 2)
    assert two.false_alarms_per_100 == pytest.approx(20 * 1e-6 * 100)
    assert two.false_alarms_per_100 < two.false_alarms_per_100_bound < one.false_alarms_per_100
    assert two.minutes_per_100(3.0) == pytest.approx(20 * 1.001 * 2 * 40 * 3.0 / 60)


def test_the_anchor_detection_is_what_a_simulated_schedule_reaches_at_least():
    """Gates every 5 commits from a random phase, each regression confirmed by one more gate
    at once: the share of windows with an alarm is at least the figure (it counts the window's
    fewest gates)."""
    from harness.gate.calibration import AnchorDrift

    rng = np.random.default_rng(0)
    p, every, window, draws = 0.7, 5, 11, 20_000
    alarms = 0
    for _ in range(draws):
        scheduled = range(int(rng.integers(every)), window, every)
        alarms += any(rng.random() < p and rng.random() < p for _ in scheduled)
    figure = AnchorDrift(every, rates("A'", 0.0, 0.0), rates("+5%", 0.05, p), confirm=2).detected
    assert alarms / draws >= figure - 0.01
    assert alarms / draws <= 1 - (1 - p * p) ** 3 + 0.01  # and at most with the most gates


def test_the_calibration_document_prices_the_anchor_drift_and_says_what_it_lacks():
    from harness.report.calibration import anchor_section

    section = "\n".join(anchor_section([rates("A'", 0.0, 0.001), rates("+5%", 0.05, 0.9)],
                                       {"A'": 0.0, "+5%": 0.052}, process_s=3.0))
    rows = [line for line in section.splitlines() if line.startswith(("| 1 gate |", "| 2 gates"))]
    assert len(rows) == 6 and "| 2 gates in a row | 10 commits | 1 | 81.0% |" in section
    assert "(measured +5.2%)" in section
    missing = "\n".join(anchor_section([rates("A'", 0.0, 0.001)], {"A'": 0.0}, process_s=3.0))
    assert "Needs the A' pool and a +5% one" in missing
