"""Unit tests of harness/contract.py: how call() drives a module and what it accepts back."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from harness.core.case import Case
from harness.core.contract import ContractError, Inputs, Outputs, call
from harness.core.spec import Capabilities

CASE = Case(seq_len=5, batch=3, input_size=3, hidden_size=4)
VARLEN = CASE.with_(lengths=(5, 2, 3))
X = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(0))
OUT, H, C = torch.zeros(5, 3, 4), torch.zeros(1, 3, 4), torch.ones(1, 3, 4)


class Returns(nn.Module):
    """Returns a fixed value and remembers how it was called."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        return self.value


@pytest.mark.parametrize(
    ("returned", "has_cell", "pattern"),
    [
        (OUT, False, "returned a Tensor; expected a pair"),
        ((OUT, H, C), True, "tuple of 3.*\\(h_n, c_n\\)\\)"),
        ((OUT,), False, "tuple of 1"),
        ((OUT, (H, C)), False, "state is a tuple.*the tensor h_n"),
        ((OUT, H), True, "state is a Tensor.*\\(h_n, c_n\\)"),
        ((OUT, (H, None)), True, "state is a tuple of 2 \\(Tensor, NoneType\\)"),
        ((OUT.tolist(), H), False, "output is a list"),
    ],
)
def test_results_outside_the_contract_are_contract_errors(returned, has_cell, pattern):
    with pytest.raises(ContractError, match=pattern):
        call(Returns(returned), Capabilities(), CASE, Inputs(X), has_cell=has_cell)


def test_contract_error_is_a_type_error():
    assert issubclass(ContractError, TypeError)


def test_packed_input_needs_a_packed_output():
    module = Returns((OUT, H))
    inputs = Inputs(X, torch.tensor(VARLEN.lengths))
    with pytest.raises(ContractError, match=r"given a PackedSequence.*Tensor output"):
        call(module, Capabilities(), VARLEN, inputs, has_cell=False)
    assert isinstance(module.args[0], PackedSequence)


def test_packed_output_for_padded_input_is_refused():
    packed = nn.utils.rnn.pack_padded_sequence(OUT, torch.tensor([5, 5, 5]))
    with pytest.raises(ContractError, match="PackedSequence; expected a Tensor"):
        call(Returns((packed, H)), Capabilities(), CASE, Inputs(X), has_cell=False)


def test_variable_length_input_is_fed_packed_and_returned_padded_with_zeros():
    lstm = nn.LSTM(3, 4)
    x = X.clone()
    got = call(lstm, Capabilities(), VARLEN, Inputs(x, torch.tensor(VARLEN.lengths)),
               has_cell=True)
    assert got.output.shape == (5, 3, 4) and got.c_n is not None
    assert torch.equal(got.output[2:, 1], torch.zeros(3, 4))
    alone, (h, c) = lstm(x[:2, 1:2])
    torch.testing.assert_close(got.output[:2, 1:2], alone)
    torch.testing.assert_close(got.h_n[:, 1:2], h)
    torch.testing.assert_close(got.c_n[:, 1:2], c)


def test_lengths_capability_passes_lengths_as_a_keyword():
    caps = Capabilities(packed=False, lengths=True)
    module = Returns((OUT, H))
    call(module, caps, VARLEN, Inputs(X, torch.tensor(VARLEN.lengths)), has_cell=False)
    assert module.kwargs["lengths"].tolist() == [5, 2, 3]
    call(module, caps, CASE.with_(batch_first=True), Inputs(X.transpose(0, 1)), has_cell=False)
    assert module.kwargs["lengths"].tolist() == [5, 5, 5]  # full lengths when none are given
    assert not isinstance(module.args[0], PackedSequence)


@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_capability_on_unbatched_input_describes_one_sequence(batch_first):
    case = CASE.with_(batch=None, batch_first=batch_first)
    module = Returns((torch.zeros(5, 4), torch.zeros(1, 4)))
    call(module, Capabilities(lengths=True), case, Inputs(torch.randn(5, 3)), has_cell=False)
    lengths = module.kwargs.get("lengths")
    assert lengths is None or lengths.tolist() == [5]


def test_hx_is_passed_positionally():
    module = Returns((OUT, (H, C)))
    got = call(module, Capabilities(), CASE, Inputs(X, hx=(H, C)), has_cell=True)
    assert module.args[1][0] is H and module.args[1][1] is C
    assert got.c_n is C


def test_outputs_named_and_state():
    plain = Outputs(OUT, H)
    assert list(plain.named()) == ["output", "h_n"]
    assert plain.state is H
    lstm = Outputs(OUT, H, C)
    assert list(lstm.named()) == ["output", "h_n", "c_n"]
    assert lstm.named()["c_n"] is C
    assert lstm.state == (H, C)


def test_outputs_detach_and_inputs_to():
    grad = torch.zeros(2, requires_grad=True) * 1
    detached = Outputs(grad, grad, grad).detach()
    assert not any(t.requires_grad for t in detached.named().values())
    moved = Inputs(X.double(), None, (H, C)).to("cpu")
    assert isinstance(moved.hx, tuple) and torch.equal(moved.hx[1], C)
