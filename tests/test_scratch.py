"""Unit tests of harness/impls/scratch.py used standalone, against torch.nn with equal weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from harness.impls.course_cell import ScratchRNN
from harness.impls.scratch import ScratchGRU, ScratchLSTM

ATOL = 1e-5
LENGTHS = torch.tensor([3, 6, 1, 4])  # unsorted: torch must reorder and restore
GATED = [(ScratchLSTM, nn.LSTM), (ScratchGRU, nn.GRU)]


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def states(result):
    """(h_n,) or (h_n, c_n) from a forward result."""
    state = result[1]
    return state if isinstance(state, tuple) else (state,)


def pair(scratch_cls, torch_cls, **kwargs):
    torch.manual_seed(0)
    reference = torch_cls(3, 5, **kwargs)
    scratch = scratch_cls(3, 5, **kwargs)
    scratch.load_state_dict(reference.state_dict())
    return scratch, reference


@pytest.mark.parametrize(("scratch_cls", "torch_cls"), GATED)
def test_padded_bidirectional_two_layer_batch_first(scratch_cls, torch_cls):
    scratch, reference = pair(scratch_cls, torch_cls, num_layers=2, bidirectional=True,
                              batch_first=True)
    x = torch.randn(4, 6, 3)
    got, want = scratch(x), reference(x)
    assert got[0].shape == (4, 6, 10)
    assert_close(got[0], want[0])
    for g, w in zip(states(got), states(want), strict=True):
        assert_close(g, w)


@pytest.mark.parametrize(("scratch_cls", "torch_cls"), GATED)
@pytest.mark.parametrize("with_hx", [False, True])
def test_packed_unsorted_batch(scratch_cls, torch_cls, with_hx):
    scratch, reference = pair(scratch_cls, torch_cls, num_layers=2, bidirectional=True)
    x = torch.randn(6, 4, 3)
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    hx = None
    if with_hx:
        hx = torch.randn(4, 4, 5)
        hx = (hx, torch.randn(4, 4, 5)) if scratch_cls is ScratchLSTM else hx
    got, want = scratch(packed, hx), reference(packed, hx)
    assert isinstance(got[0], PackedSequence)
    assert torch.equal(got[0].unsorted_indices, want[0].unsorted_indices)
    assert_close(pad_packed_sequence(got[0])[0], pad_packed_sequence(want[0])[0])
    for g, w in zip(states(got), states(want), strict=True):
        assert_close(g, w)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_with_projection():
    scratch, reference = pair(ScratchLSTM, nn.LSTM, num_layers=2, proj_size=2,
                              bidirectional=True)
    x = torch.randn(6, 4, 3)
    got, want = scratch(x), reference(x)
    assert got[1][0].shape == (4, 4, 2) and got[1][1].shape == (4, 4, 5)
    assert_close(got[0], want[0])
    for g, w in zip(states(got), states(want), strict=True):
        assert_close(g, w)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_scratch_rnn_loads_reference_weights(nonlinearity):
    torch.manual_seed(0)
    kwargs = {"num_layers": 2, "bidirectional": True, "nonlinearity": nonlinearity}
    reference, scratch = nn.RNN(3, 5, **kwargs), ScratchRNN(3, 5, **kwargs)
    scratch.load_reference_weights(reference.state_dict())
    x, h0 = torch.randn(6, 4, 3), torch.randn(4, 4, 5)
    got, want = scratch(x, h0), reference(x, h0)
    assert_close(got[0], want[0])
    assert_close(got[1], want[1])
    unbatched = scratch(x[:, 0], h0[:, 0])
    assert_close(unbatched[0], want[0][:, 0])


@pytest.mark.parametrize("cls", [ScratchLSTM, ScratchGRU, ScratchRNN])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_keyword_equals_the_packed_call(cls, batch_first):
    torch.manual_seed(0)
    module = cls(3, 5, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = torch.randn(4, 6, 3) if batch_first else torch.randn(6, 4, 3)
    padded = module(x, lengths=LENGTHS)
    packed = module(pack_padded_sequence(x, LENGTHS, batch_first=batch_first,
                                         enforce_sorted=False))
    unpacked, _ = pad_packed_sequence(packed[0], batch_first=batch_first, total_length=6)
    assert_close(padded[0], unpacked)
    for g, w in zip(states(padded), states(packed), strict=True):
        assert_close(g, w)
    output = padded[0] if batch_first else padded[0].transpose(0, 1)  # (B, T, F)
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.equal(output[b, n:], torch.zeros_like(output[b, n:]))
        assert output[b, :n].abs().min() > 0


def test_lengths_keyword_ignores_padding_values():
    module = ScratchGRU(3, 5, bidirectional=True)
    x = torch.randn(6, 4, 3)
    noisy = x.clone()
    for b, n in enumerate(LENGTHS.tolist()):
        noisy[n:, b] = 1e3
    clean, dirty = module(x, lengths=LENGTHS), module(noisy, lengths=LENGTHS)
    assert_close(dirty[0], clean[0])
    assert_close(dirty[1], clean[1])


@pytest.mark.parametrize(
    ("cls", "torch_cls"), [(ScratchLSTM, nn.LSTM), (ScratchGRU, nn.GRU), (ScratchRNN, nn.RNN)]
)
def test_wrong_input_size_is_a_runtime_error_like_torch(cls, torch_cls):
    x = torch.randn(6, 4, 2)
    with pytest.raises(RuntimeError):
        torch_cls(3, 5)(x)
    with pytest.raises(RuntimeError, match="Expected 3, got 2"):
        cls(3, 5)(x)


@pytest.mark.parametrize(
    ("cls", "torch_cls"), [(ScratchLSTM, nn.LSTM), (ScratchGRU, nn.GRU), (ScratchRNN, nn.RNN)]
)
@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 3, 5), (1, 4, 4), (4, 5)])
def test_wrong_hx_shape_is_a_runtime_error_like_torch(cls, torch_cls, shape):
    x = torch.randn(6, 4, 3)
    hx = torch.randn(shape)
    if cls is ScratchLSTM:
        hx = (hx, torch.randn(1, 4, 5))
    with pytest.raises(RuntimeError):
        torch_cls(3, 5)(x, hx)
    with pytest.raises(RuntimeError):
        cls(3, 5)(x, hx)


def test_input_of_wrong_rank_is_a_value_error_like_torch():
    x = torch.randn(2, 6, 4, 3)
    with pytest.raises(ValueError, match="2D or 3D"):
        nn.GRU(3, 5)(x)
    with pytest.raises(ValueError, match="2D or 3D"):
        ScratchGRU(3, 5)(x)


def test_lengths_must_match_the_batch():
    with pytest.raises(ValueError, match="lengths must be a \\(batch,\\) tensor"):
        ScratchGRU(3, 5)(torch.randn(6, 4, 3), lengths=torch.tensor([6, 6]))
