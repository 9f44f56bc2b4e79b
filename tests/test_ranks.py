"""A new regression's ratio and interval are its rank test's own (harness.gate.ranks): the
interval lies above 1 exactly when the test says slower at its tail, it covers a true shift as
often as its level says, and one far-outlying run no longer stretches it over 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.gate import ranks
from harness.gate.ranks import p_slower, shift, shift_interval
from harness.history.changes import Change, welch_interval
from harness.history.judge import newest_slowdown


@pytest.mark.parametrize("sizes", [(30, 5), (12, 12), (40, 9)])
def test_the_interval_lies_above_no_change_exactly_when_the_test_says_slower(sizes):
    """Tie-free runs, exact (a side of 8 or fewer) and asymptotic tests alike."""
    rng = np.random.default_rng(sum(sizes))
    agree = above = 0
    for _ in range(40):
        before = rng.normal(0.0, 0.02, sizes[0])
        after = rng.normal(rng.choice([0.0, 0.01, 0.02, 0.04]), 0.02, sizes[1])
        low, high = shift_interval(before, after, 0.95)
        rejects = p_slower(after, before) <= 0.025
        agree += (low > 0.0) == rejects
        above += rejects
        assert low <= shift(before, after) <= high
    assert agree == 40 and 4 <= above <= 36  # both kinds of case were met


@pytest.mark.parametrize("sizes", [(6, 3), (30, 5), (300, 20)])
def test_its_ends_are_those_every_shift_tested_at_once_gives(sizes, monkeypatch):
    """The interval narrows over the differences PROBES_PER_CALL at a time (memory bounded at
    any history length); testing every shift at once gives the same ends (300 x 20 runs: 6,000
    differences, three rounds of narrowing)."""
    rng = np.random.default_rng(len(sizes))
    before, after = rng.normal(0.0, 0.02, sizes[0]), rng.normal(0.02, 0.02, sizes[1])
    narrowed = shift_interval(before, after, 0.95)
    monkeypatch.setattr(ranks, "PROBES_PER_CALL", 10**9)
    assert shift_interval(before, after, 0.95) == narrowed


def test_the_interval_covers_a_true_shift_as_often_as_its_level_says():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(300):
        before, after = rng.standard_t(3, 20) * 0.02, rng.standard_t(3, 6) * 0.02 + 0.05
        low, high = shift_interval(before, after, 0.95)
        covered += low <= 0.05 <= high
    assert 0.92 * 300 <= covered <= 0.99 * 300


def test_too_few_runs_to_reject_anything_give_an_unbounded_side():
    low, high = shift_interval(np.array([0.0, 0.01]), np.array([0.5, 0.6]), 0.95)
    assert low == -math.inf and high == math.inf  # 2 against 2: p >= 1/6 whatever the order


def test_one_far_outlying_run_no_longer_stretches_a_new_regression_over_one():
    """Five runs 6% slower than all 30 before and one 2.7x: the Welch interval of the means
    holds no change, the rank test says slower at 1e-5, and the regression it reports has an
    interval above 1 around the runs' 6%, not the outlier's pull."""
    rng = np.random.default_rng(3)
    before = np.exp(rng.normal(0.0, 0.005, 30))
    after = np.exp(np.concatenate([rng.normal(0.06, 0.005, 5), [1.0]]))
    logs_b, logs_a = np.log(before), np.log(after)
    difference, half = welch_interval(logs_b, logs_a, 0.95)
    assert difference - half < 0.0 < difference + half  # the old interval held 1
    step = Change(index=30, before_s=1.0, after_s=1.1, ratio=1.1, low=1.05, high=1.15)
    found = newest_slowdown(np.concatenate([before, after]), [step], min_effect=0.03)
    assert found is not None and found[1] == 1
    change = found[0]
    assert 1.0 < change.low < change.ratio < change.high
    assert change.ratio == pytest.approx(1.06, abs=0.01) and change.high < 1.2
