"""Unit tests of harness/impls/fast.py against torch.nn with equal weights: outputs, final states
and gradients, through both of its loops (autograd, and the in-place one used without it); every
GEMM backend and every way of computing the gate maths in float32; the hand-written backward
through gradcheck; the backend decision."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from harness.impls import kernels, loop, native
from harness.impls.fast import FastGRU, FastLSTM, FastRNN
from harness.impls.loop import Config, Recurrence

ATOL = 1e-10  # float64 throughout: the fast loops must reproduce torch's maths, not approximate it
LENGTHS = torch.tensor([3, 6, 1, 4])  # unsorted: torch must reorder and restore
CASES = [
    pytest.param(FastRNN, nn.RNN, {"nonlinearity": "tanh"}, id="rnn-tanh"),
    pytest.param(FastRNN, nn.RNN, {"nonlinearity": "relu"}, id="rnn-relu"),
    pytest.param(FastLSTM, nn.LSTM, {}, id="lstm"),
    pytest.param(FastLSTM, nn.LSTM, {"proj_size": 3}, id="lstm-proj"),
    pytest.param(FastGRU, nn.GRU, {}, id="gru"),
    pytest.param(FastGRU, nn.GRU, {"bias": False}, id="gru-no-bias"),
]


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def states(result):
    """(h_n,) or (h_n, c_n) from a forward result."""
    state = result[1]
    return state if isinstance(state, tuple) else (state,)


def padded(output):
    return pad_packed_sequence(output)[0] if isinstance(output, PackedSequence) else output


def pair(fast_cls, torch_cls, **kwargs):
    torch.manual_seed(0)
    reference = torch_cls(3, 5, dtype=torch.float64, **kwargs)
    fast = fast_cls(3, 5, dtype=torch.float64, **kwargs)
    fast.load_state_dict(reference.state_dict())  # torch's names: loads by name, strictly
    return fast, reference


def initial_state(module, batch):
    rows = module.num_layers * (2 if module.bidirectional else 1)
    h_size = module.proj_size or module.hidden_size
    h = torch.randn(rows, batch, h_size, dtype=torch.float64)
    if isinstance(module, (FastLSTM, nn.LSTM)):
        return h, torch.randn(rows, batch, module.hidden_size, dtype=torch.float64)
    return h


def run_with_grads(module, x, hx, *, packed):
    """Forward and backward of a fixed function of every output; returns the outputs and the
    gradients of the input, the initial state and every parameter (by name)."""
    x = x.clone().requires_grad_(True)
    hx_leaves = tuple(s.clone().requires_grad_(True) for s in (hx if isinstance(hx, tuple)
                                                                 else (hx,)))
    hx_arg = hx_leaves if isinstance(hx, tuple) else hx_leaves[0]
    inputs = pack_padded_sequence(x, LENGTHS, enforce_sorted=False) if packed else x
    result = module(inputs, hx_arg)
    output = padded(result[0])
    weights = torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view_as(output)
    loss = (output * weights).sum() + sum((s * s).sum() for s in states(result))
    module.zero_grad(set_to_none=True)
    loss.backward()
    grads = {"input": x.grad, **{f"hx{i}": s.grad for i, s in enumerate(hx_leaves)}}
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return output, states(result), grads


@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_bidirectional_two_layer_outputs_and_gradients_match_torch(
    fast_cls, torch_cls, kwargs, packed
):
    fast, reference = pair(fast_cls, torch_cls, num_layers=2, bidirectional=True, **kwargs)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    hx = initial_state(fast, 4)
    got = run_with_grads(fast, x, hx, packed=packed)
    want = run_with_grads(reference, x, hx, packed=packed)
    assert_close(got[0], want[0])
    for g, w in zip(got[1], want[1], strict=True):
        assert_close(g, w)
    assert got[2].keys() == want[2].keys()
    for name, grad in want[2].items():
        assert got[2][name] is not None, name
        assert_close(got[2][name], grad)


@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_inference_loop_matches_torch(fast_cls, torch_cls, kwargs, packed):
    """Without autograd the in-place loop runs; it must give torch's answer too."""
    fast, reference = pair(fast_cls, torch_cls, num_layers=2, bidirectional=True, **kwargs)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    hx = initial_state(fast, 4)
    before = tuple(s.clone() for s in (hx if isinstance(hx, tuple) else (hx,)))
    inputs = pack_padded_sequence(x, LENGTHS, enforce_sorted=False) if packed else x
    with torch.no_grad():
        got, want = fast(inputs, hx), reference(inputs, hx)
    assert type(got[0]) is type(want[0])
    assert_close(padded(got[0]), padded(want[0]))
    for g, w in zip(states(got), states(want), strict=True):
        assert_close(g, w)
    # The caller's hx is never updated in place, although the loop updates its state in place.
    for s, b in zip(hx if isinstance(hx, tuple) else (hx,), before, strict=True):
        assert torch.equal(s, b)


@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lengths_keyword_in_both_loops_equals_torch_packed(fast_cls, torch_cls, kwargs,
                                                           batch_first):
    fast, reference = pair(fast_cls, torch_cls, bidirectional=True, batch_first=batch_first,
                           **kwargs)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)  # a non-contiguous (T, B, in) input
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    want = reference(packed)
    want_output, _ = pad_packed_sequence(want[0], batch_first=batch_first, total_length=6)
    for grad_enabled in (True, False):
        with torch.set_grad_enabled(grad_enabled):
            got = fast(x, lengths=LENGTHS)
        assert_close(got[0], want_output)  # padded steps are zeros, as unpacking gives
        for g, w in zip(states(got), states(want), strict=True):
            assert_close(g, w)


@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
@pytest.mark.parametrize("grad_enabled", [True, False], ids=["autograd", "inference"])
def test_returned_outputs_are_distinct_tensors(fast_cls, torch_cls, kwargs, grad_enabled):
    fast, _ = pair(fast_cls, torch_cls, **kwargs)
    with torch.set_grad_enabled(grad_enabled):
        first = fast(torch.randn(6, 4, 3, dtype=torch.float64))
        kept = [first[0].clone(), *(s.clone() for s in states(first))]
        second = fast(torch.randn(6, 4, 3, dtype=torch.float64))
    assert first[0].data_ptr() != second[0].data_ptr()
    assert not torch.equal(first[0], second[0])
    for now, then in zip([first[0], *states(first)], kept, strict=True):
        assert torch.equal(now, then)  # the second call left the first call's results alone


@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
def test_double_backward_raises_instead_of_returning_zeros(fast_cls, torch_cls, kwargs):
    """The hand-written backward is not differentiable: create_graph=True raises (the entries
    declare double_backward False), where once_differentiable alone gives zero second
    derivatives with respect to the input."""
    fast, _ = pair(fast_cls, torch_cls, **kwargs)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(fast(x)[0].sum(), x)  # one backward pass: as before
    assert first.abs().sum() > 0
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(fast(x)[0].sum(), x, create_graph=True)


def test_parameter_names_are_torchs():
    for fast_cls, torch_cls, kwargs in [
        (FastRNN, nn.RNN, {}), (FastLSTM, nn.LSTM, {"proj_size": 2}), (FastGRU, nn.GRU, {})
    ]:
        fast = fast_cls(3, 5, num_layers=2, bidirectional=True, **kwargs)
        reference = torch_cls(3, 5, num_layers=2, bidirectional=True, **kwargs)
        assert [(n, p.shape) for n, p in fast.named_parameters()] == [
            (n, p.shape) for n, p in reference.named_parameters()
        ]


def test_constructor_rejects_what_torch_rejects():
    with pytest.raises(ValueError, match="nonlinearity"):
        FastRNN(3, 5, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size"):
        FastGRU(3, 5, proj_size=2)
    with pytest.raises(ValueError, match="proj_size"):
        FastLSTM(3, 5, proj_size=5)


# The GEMM backends (kernels.py) and the hand-written backward (loop.py, cells.py) ------------

ONEDNN = kernels.onednn_usable()
needs_onednn = pytest.mark.skipif(ONEDNN is not None, reason=f"oneDNN unusable: {ONEDNN}")
NATIVE, NATIVE_WHY = native.kernels(torch.zeros(()))
needs_native = pytest.mark.skipif(NATIVE is None, reason=f"no compiled kernels: {NATIVE_WHY}")
FLOAT32_ATOL = 1e-5  # the suites' float32 tolerance at the small exact-check sizes


def run_float32(module, backend, x, lengths):
    """Outputs and gradients (input, every parameter) of one float32 forward/backward."""
    module.gemm_backend = backend
    leaf = x.clone().requires_grad_(True)
    inputs = pack_padded_sequence(leaf, lengths, enforce_sorted=False) if lengths is not None \
        else leaf
    result = module(inputs)
    output = padded(result[0])
    weights = torch.linspace(-1, 1, output.numel()).view_as(output)
    loss = (output * weights).sum() + sum((s * s).sum() for s in states(result))
    module.zero_grad(set_to_none=True)
    loss.backward()
    return [output, *states(result), leaf.grad, *(p.grad for p in module.parameters())]


@pytest.fixture(params=[True, False], ids=["folded-tanh", "torch-tanh"])
def fold(request, monkeypatch):
    """Both ways of computing a tanh (loop.py): folded into the weights from every size, or
    torch's from none, whatever the sizes of the test."""
    monkeypatch.setattr(loop, "FOLD_MIN", 0 if request.param else 1 << 62)
    return request.param


@pytest.fixture(params=["native", "folded-tanh", "torch-tanh"])
def gates(request, monkeypatch):
    """The three ways of computing the gate maths: compiled (native.c), or torch operators with
    the tanh folded into the weights (loop.py) or torch's own tanh."""
    if request.param == "native" and NATIVE is None:
        pytest.skip(f"no compiled kernels: {NATIVE_WHY}")
    monkeypatch.setattr(loop, "FOLD_MIN", 0 if request.param == "folded-tanh" else 1 << 62)
    return "native" if request.param == "native" else "torch"


@needs_onednn
@needs_native
@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["padded", "packed"])
@pytest.mark.parametrize("batch", [4, 1])
@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_every_backend_agrees_with_torch_in_float32(fast_cls, torch_cls, kwargs, lengths, batch,
                                                   gates):
    torch.manual_seed(0)
    reference = torch_cls(8, 12, num_layers=2, bidirectional=True, **kwargs)
    fast = fast_cls(8, 12, num_layers=2, bidirectional=True, **kwargs)
    fast.load_state_dict(reference.state_dict())
    fast.gate_kernel = gates
    x = torch.randn(6, batch, 8)
    lengths = None if lengths is None else lengths[:batch]
    want = run_float32(reference, None, x, lengths)
    for backend in kernels.BACKENDS:
        got = run_float32(fast, backend, x, lengths)
        assert fast.last_gemm.backend == backend
        assert fast.last_projection_gemm.backend == backend
        assert fast.last_gate_kernel.startswith("compiled" if gates == "native" else "torch")
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=FLOAT32_ATOL, rtol=0)
        with torch.inference_mode():
            output = padded(fast(x if lengths is None else pack_padded_sequence(
                x, lengths, enforce_sorted=False))[0])
        torch.testing.assert_close(output, want[0], atol=FLOAT32_ATOL, rtol=0)


@pytest.mark.parametrize(("fast_cls", "torch_cls", "kwargs"), CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_recurrence_passes_gradcheck(fast_cls, torch_cls, kwargs, reverse, masked, fold):
    """The hand-written backward through time, one (layer, direction), against finite
    differences in float64: input, initial state and every weight."""
    fast, _ = pair(fast_cls, torch_cls, **kwargs)
    w = fast.weights(0)
    mask = (torch.arange(5).unsqueeze(1) < torch.tensor([5, 2, 4]).unsqueeze(0)) if masked \
        else None
    config = Config(kernels.GEMMS["aten"], fast.hidden_size, reverse, mask,
                    kwargs.get("nonlinearity", "tanh"))
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, fast.h_out, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True) \
        if fast_cls is FastLSTM else None
    weights = [None if t is None else t.detach().clone().requires_grad_(True)
               for t in (w["ih"], w["hh"], w["b_ih"], w["b_hh"], w["hr"])]

    def function(*args):
        return Recurrence.apply(fast.run_class, config, *args)

    assert torch.autograd.gradcheck(function, (x, h0, c0, *weights))
    with torch.no_grad():
        state0 = (h0,) if c0 is None else (h0, c0)
        assert fast.run_class(config, x, state0, w, keep=False).fold == fold  # the path asked


def test_backend_decision_is_measured_once_and_recorded():
    fast = FastLSTM(16, 32)
    path = kernels.kernel_path(fast)
    assert path["gemm_backend"] is None and path["reason"] == "no forward has run yet"
    assert path["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    fast(torch.randn(4, 8, 16))
    decision = fast.last_gemm
    assert decision.backend in kernels.BACKENDS
    if ONEDNN is None and os.environ.get(kernels.ENV_VAR) is None:
        assert decision.reason.startswith("measured: ")
        # 8 rows: the compiled product (a small-batch one, up to 4 rows) is not a candidate
        assert set(decision.timings_us) == {"aten", "onednn"} == set(decision.key[6])
        fast(torch.randn(3, 7, 16))  # the same shape class: the same decision, not measured again
        assert fast.last_gemm is decision
    path = kernels.kernel_path(fast)
    assert path["gemm_backend"] == decision.backend and path["reason"] == decision.reason
    # The input projection (T*B = 21 rows of 16 inputs) is a product of another shape, decided
    # on its own and recorded beside the step's.
    projection = fast.last_projection_gemm
    assert projection.backend in kernels.BACKENDS
    assert path["projection_backend"] == projection.backend
    assert fast.harness_kernel_path()["projection_reason"] == projection.reason
    if projection.key:
        # (rows, in, out) rounded up to powers of two, and products per packing: T=3 steps, and
        # one 21-row chunk
        assert projection.key[3:6] == (32, 16, 128) and decision.key[3:6] == (8, 32, 128)
        assert (projection.key[7], decision.key[7]) == (1, 4)
    json.dumps(kernels.kernel_path())  # the whole record serialises
    assert "chooses its own kernels" in kernels.kernel_path(nn.LSTM(3, 5))["reason"]


def test_backend_decision_by_capability_and_request(monkeypatch):
    fast = FastGRU(3, 5, dtype=torch.float64)
    fast(torch.randn(2, 2, 3, dtype=torch.float64))
    assert fast.last_gemm.backend == "aten"
    assert "float64" in fast.last_gemm.reason
    fast.gemm_backend = "onednn"
    with pytest.raises(ValueError, match="'onednn' was requested but cannot run"):
        fast(torch.randn(2, 2, 3, dtype=torch.float64))
    fast.gemm_backend = "mkl"
    with pytest.raises(ValueError, match="unknown GEMM backend 'mkl'"):
        fast(torch.randn(2, 2, 3, dtype=torch.float64))
    fast = FastRNN(3, 5)
    monkeypatch.setenv(kernels.ENV_VAR, "aten")
    fast(torch.randn(2, 2, 3))
    assert (fast.last_gemm.backend, fast.last_gemm.reason) == ("aten", "requested")
    monkeypatch.setenv(kernels.ENV_VAR, "blas")
    with pytest.raises(ValueError, match="SEQ_HARNESS_GEMM='blas'"):
        fast(torch.randn(2, 2, 3))


def test_a_tiny_product_is_not_measured(monkeypatch):
    """A conformance case's products (here 2 rows, 3 -> 12) cost about a microsecond on any
    backend: aten, decided without the 20-70 ms measurement, the same on every run."""
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    monkeypatch.setattr(kernels, "measure", lambda key: pytest.fail(f"measured {key}"))
    decision = kernels.decide(torch.zeros(1), 2, 3, 12, uses=3)
    assert decision.backend == "aten" and decision.reason.startswith("not measured: (2x3)")
    with pytest.raises(pytest.fail.Exception, match="measured"):
        kernels.decide(torch.zeros(1), 64, 128, 512)  # a real one is
