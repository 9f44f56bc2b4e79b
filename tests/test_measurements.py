"""The measuring parts of the gradient suites on their own: curve statistics, spectral
rescaling, the adding problem's data."""

from __future__ import annotations

import math

import pytest
import torch

from harness.conformance.adding import CONSTANT_MSE, adding_batch, budget_for
from harness.conformance.grids import BASE
from harness.conformance.stability import Curve
from harness.core.families import load_families
from harness.core.subject import reference_weights, rescaled, spectral_radius


def geometric(rate, steps=50, start=2.0):
    return Curve(tuple(start * rate**k for k in range(steps)))


@pytest.mark.parametrize("rate", [0.5, 0.9, 1.0, 1.3])
def test_rate_recovers_a_geometric_decay_or_growth(rate):
    assert geometric(rate).rate == pytest.approx(rate, rel=1e-9)


def test_vanish_lag_is_the_first_lag_below_a_millionth():
    curve = geometric(0.5)
    expected = next(k for k, n in enumerate(curve.norms) if n < 1e-6 * curve.norms[0])
    assert curve.vanish_lag == expected
    assert 0.5 ** (expected - 1) >= 1e-6 > 0.5**expected
    assert geometric(0.99).vanish_lag is None


def test_nonfinite_and_underflow():
    assert Curve((1.0, math.inf, 0.5)).nonfinite
    assert not geometric(0.5).nonfinite
    # Zeros (underflow) are left out of the fit rather than breaking it.
    assert Curve((1.0, 0.5, 0.25, 0.0, 0.0)).rate == pytest.approx(0.5)
    assert Curve((1.0, 0.0)).rate is None


@pytest.mark.parametrize("family", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("radius", [0.5, 1.5])
def test_rescaled_gate_blocks_have_the_radius(family, radius):
    fam = load_families().by_name[family]
    case = BASE.with_(num_layers=2, bidirectional=True)
    weights = rescaled(reference_weights(case, fam), fam, radius)
    for name, weight in weights.items():
        if name.startswith("weight_hh"):
            for block in weight.chunk(fam.gates):
                assert spectral_radius(block) == pytest.approx(radius, rel=1e-6)


def test_case_radius_rescales_the_reference_weights():
    fam = load_families().by_name["gru"]
    plain = reference_weights(BASE, fam)
    scaled = reference_weights(BASE.with_(radius=1.5), fam)
    blocks = scaled["weight_hh_l0"].chunk(3)
    assert [spectral_radius(b) for b in blocks] == pytest.approx([1.5] * 3, rel=1e-5)
    assert not torch.equal(plain["weight_hh_l0"], scaled["weight_hh_l0"])


def test_adding_batch_marks_one_step_in_each_half_and_sums_them():
    x, y = adding_batch(20, 256, torch.Generator().manual_seed(0))
    values, markers = x[..., 0], x[..., 1]
    assert x.shape == (20, 256, 2) and y.shape == (256, 1)
    assert torch.equal(markers[:10].sum(0), torch.ones(256))
    assert torch.equal(markers[10:].sum(0), torch.ones(256))
    assert torch.allclose((values * markers).sum(0), y[:, 0])
    assert ((values >= 0) & (values <= 1)).all()
    # The mean predictor's MSE is the variance of the target: about 1/6.
    _, target = adding_batch(20, 20000, torch.Generator().manual_seed(1))
    assert float(target.var()) == pytest.approx(CONSTANT_MSE, rel=0.05)


def test_longer_sequences_get_a_larger_budget():
    assert budget_for(200).max_steps > budget_for(50).max_steps
