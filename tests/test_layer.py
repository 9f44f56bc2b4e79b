"""harness.core.layer: a loop whose gates read the input alone (minGRU, minLSTM, IndRNN, RG-LRU)
computes that side for the whole sequence ahead (``drive``) and steps only the rest
(``recur``): the same numbers as one ``cell`` per step, in every layout the layer takes; a
subclass that redefines ``cell`` (a diagnosis signature, a mutant) runs its own step."""

from __future__ import annotations

import pytest
import torch

from harness.core.families import family
from harness.diagnosis.steps import mingru_step

AHEAD = ["mingru", "minlstm", "indrnn", "rglru"]


def stepped(cls):
    """``cls`` with its step written as one cell: the step-by-step path of the same maths."""

    class Stepped(cls):
        def cell(self, slot, x_t, state):
            return self.recur(slot, self.drive(slot, x_t), state)

    return Stepped


@pytest.mark.parametrize("name", AHEAD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("layers", "bidirectional", "with_lengths"),
                         [(1, False, False), (2, True, True), (1, True, True)])
def test_the_input_side_ahead_equals_one_cell_per_step(name, dtype, layers, bidirectional,
                                                        with_lengths):
    cls = family(name).reference
    if name == "rglru" and layers > 1 and bidirectional:
        pytest.skip("rglru: no bidirectional stack (its layers are square)")
    torch.manual_seed(0)
    ahead = cls(6, 6, num_layers=layers, bidirectional=bidirectional, dtype=dtype)
    step = stepped(cls)(6, 6, num_layers=layers, bidirectional=bidirectional, dtype=dtype)
    step.load_state_dict(ahead.state_dict())
    assert ahead.drives_ahead and not step.drives_ahead
    x = torch.randn(40, 3, 6, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([40, 17, 1]) if with_lengths else None
    out, h_n = ahead(x, lengths=lengths)
    want, want_h = step(x, lengths=lengths)
    eps = torch.finfo(dtype).eps  # the same operations; products over more rows at once
    torch.testing.assert_close(out, want, atol=64 * eps, rtol=0)
    torch.testing.assert_close(h_n, want_h, atol=64 * eps, rtol=0)
    grad, = torch.autograd.grad(out.square().sum(), x)
    want_grad, = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(grad, want_grad, atol=1024 * eps, rtol=64 * eps)


def test_a_subclass_that_redefines_the_step_runs_its_own():
    """A signature's step (minGRU's candidate through g twice) is what runs, not the family's
    input side computed ahead: the two differ."""
    cls = family("mingru").reference
    torch.manual_seed(1)
    reference, twice = cls(4, 5), mingru_step(lambda a: a.exp())(4, 5)
    twice.load_state_dict(reference.state_dict())
    assert not twice.drives_ahead
    x = torch.randn(9, 2, 4)
    assert (reference(x)[0] - twice(x)[0]).abs().max() > 1e-2
