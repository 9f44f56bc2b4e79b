"""Unit tests of harness/impls/cudagraph.py.

On the CPU: forward falls back to the eager FastLSTM / FastGRU (equal to them and to torch.nn,
gradients included), torch's weights load by name, nothing is captured, and the registry entries
claim CUDA only. On a GPU (skipped elsewhere): graph replay equals the eager forward, results
survive the next call, parameter updates are seen (in place, and replaced parameters), autograd
falls back, and the time of a replay against the eager loop is printed.
"""

from __future__ import annotations

import copy
import pickle
import threading
import time

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from harness.core.case import Case
from harness.impls.builtin import FAST_GRU_CUDAGRAPH, FAST_LSTM_CUDAGRAPH
from harness.impls.cudagraph import CudaGraphGRU, CudaGraphLSTM
from harness.impls.fast import FastGRU, FastLSTM
from harness.registry import Registry

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

KINDS = [
    pytest.param(CudaGraphLSTM, FastLSTM, nn.LSTM, id="lstm"),
    pytest.param(CudaGraphGRU, FastGRU, nn.GRU, id="gru"),
]


def build(graphed_cls, torch_cls, *, device="cpu", dtype=torch.float64, input_size=3,
          hidden_size=5, **kwargs):
    """(graphed module, torch's module) with torch's weights, loaded strictly by name."""
    torch.manual_seed(0)
    reference = torch_cls(input_size, hidden_size, device=device, dtype=dtype, **kwargs)
    module = graphed_cls(input_size, hidden_size, device=device, dtype=dtype, **kwargs)
    module.load_state_dict(reference.state_dict())
    return module, reference


def random_hx(module, batch, *, device="cpu", dtype=torch.float64):
    """h_0, or (h_0, c_0) for LSTM: (L*D, B, features)."""
    rows = module.num_layers * (2 if module.bidirectional else 1)
    h = torch.randn(rows, batch, module.proj_size or module.hidden_size, device=device,
                    dtype=dtype)
    if isinstance(module, FastLSTM):
        return h, torch.randn(rows, batch, module.hidden_size, device=device, dtype=dtype)
    return h


def flat(result):
    """Every tensor of a forward result: output, h_n (and c_n)."""
    output, state = result
    return [output, *(state if isinstance(state, tuple) else (state,))]


def assert_results_close(got, expected, atol):
    for a, b in zip(flat(got), flat(expected), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


# On the CPU: the eager fallback --------------------------------------------------------------


@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_cpu_forward_falls_back_to_the_eager_layer(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, num_layers=2, bidirectional=True,
                              batch_first=True)
    fast = fast_cls(3, 5, num_layers=2, bidirectional=True, batch_first=True,
                    dtype=torch.float64)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(4, 6, 3, dtype=torch.float64)  # (B, T, in), batch-first
    hx = random_hx(module, 4)
    with torch.no_grad():
        got = module(x, hx)
        assert_results_close(got, fast(x, hx), atol=0)
        assert_results_close(got, reference(x, hx), atol=1e-10)
        assert_results_close(module(x), reference(x), atol=1e-10)
    assert not module._graphs  # nothing is captured off CUDA


@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_cpu_packed_input_and_lengths_fall_back(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, bidirectional=True)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 4])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    got, want = module(packed), reference(packed)
    torch.testing.assert_close(pad_packed_sequence(got[0])[0], pad_packed_sequence(want[0])[0],
                               atol=1e-10, rtol=0)
    by_lengths = module(x, lengths=lengths)
    torch.testing.assert_close(by_lengths[0], pad_packed_sequence(want[0], total_length=6)[0],
                               atol=1e-10, rtol=0)


@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_cpu_gradients_equal_torch(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    grads = []
    for m in (module, reference):
        leaf = x.clone().requires_grad_(True)
        sum(t.square().sum() for t in flat(m(leaf))).backward()
        grads.append([leaf.grad, *(p.grad for p in m.parameters())])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_parameters_keep_torch_names(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, num_layers=2, bidirectional=True)
    assert list(module.state_dict()) == list(reference.state_dict())


def test_copies_and_moves_drop_the_captured_graphs():
    """Graphs are a cache of device memory: deepcopy and pickle leave them out, and moving or
    casting the module drops them (the sentinel stands for a graph, which cannot be copied)."""
    module, _ = build(CudaGraphLSTM, nn.LSTM)
    module._graphs["key"] = threading.Lock()
    assert not copy.deepcopy(module)._graphs
    assert not pickle.loads(pickle.dumps(module))._graphs
    assert module._graphs  # the original keeps its own
    module.float()
    assert not module._graphs


# The registry entries ------------------------------------------------------------------------


def test_registry_lists_both_entries():
    specs = Registry.load().specs
    assert specs["fast-lstm-cudagraph"].family == "lstm"
    assert specs["fast-lstm-cudagraph"].factory is CudaGraphLSTM
    assert specs["fast-gru-cudagraph"].family == "gru"
    assert specs["fast-gru-cudagraph"].factory is CudaGraphGRU


@pytest.mark.parametrize("spec", [FAST_LSTM_CUDAGRAPH, FAST_GRU_CUDAGRAPH], ids=lambda s: s.name)
def test_capabilities_claim_the_graphed_contract_on_cuda_only(spec):
    base = Case(seq_len=5, batch=3, input_size=4, hidden_size=6, num_layers=2,
                bidirectional=True, batch_first=True, with_hx=True)
    assert spec.why_not(base) == "not supported: device cpu"
    assert spec.why_not(base.with_(dtype="float64")) == "not supported: device cpu"
    cuda = base.with_(device="cuda")
    assert spec.why_not(cuda) is None
    assert spec.why_not(cuda.with_(batch=None)) is None  # unbatched
    assert spec.why_not(cuda.with_(lengths=(5, 2, 3))) == "not supported: variable-length input"
    assert spec.why_not(cuda.with_(dropout=0.5)) == "not supported: dropout"


# On a GPU: the graphs ------------------------------------------------------------------------

CUDA_CONFIGS = [
    pytest.param(CudaGraphLSTM, FastLSTM, nn.LSTM, {}, id="lstm"),
    pytest.param(CudaGraphLSTM, FastLSTM, nn.LSTM,
                 {"num_layers": 2, "bidirectional": True, "batch_first": True}, id="lstm-bi2-bf"),
    pytest.param(CudaGraphLSTM, FastLSTM, nn.LSTM, {"proj_size": 3, "num_layers": 2},
                 id="lstm-proj"),
    pytest.param(CudaGraphGRU, FastGRU, nn.GRU, {}, id="gru"),
    pytest.param(CudaGraphGRU, FastGRU, nn.GRU, {"num_layers": 2, "bidirectional": True},
                 id="gru-bi2"),
    pytest.param(CudaGraphGRU, FastGRU, nn.GRU, {"bias": False, "batch_first": True},
                 id="gru-no-bias-bf"),
]
DTYPES = [pytest.param(torch.float32, 1e-5, id="float32"),
          pytest.param(torch.float64, 1e-12, id="float64")]


def eager(fast_cls, module, *args):
    """The parent's eager forward on the same module and weights."""
    return fast_cls.forward(module, *args)


@needs_cuda
@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls", "kwargs"), CUDA_CONFIGS)
@pytest.mark.parametrize(("dtype", "atol"), DTYPES)
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx-none", "hx"])
def test_graphed_forward_equals_eager(graphed_cls, fast_cls, torch_cls, kwargs, dtype, atol,
                                      with_hx):
    module, reference = build(graphed_cls, torch_cls, device="cuda", dtype=dtype, **kwargs)
    x = torch.randn(7, 4, 3, device="cuda", dtype=dtype)  # (T, B, in), or (B, T, in)
    args = (x, random_hx(module, 7 if module.batch_first else 4, device="cuda", dtype=dtype)) \
        if with_hx else (x,)
    with torch.no_grad():
        want = eager(fast_cls, module, *args)
        captured = module(*args)  # first call: warm-up, capture, replay
        replayed = module(*args)
        assert len(module._graphs) == 1
        assert_results_close(captured, want, atol)
        assert_results_close(replayed, want, atol)
        assert_results_close(replayed, reference(*args), 5e-5 if dtype == torch.float32 else 1e-10)


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_graphed_unbatched_input(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, device="cuda", num_layers=2)
    x = torch.randn(6, 3, device="cuda", dtype=torch.float64)  # (T, in)
    with torch.no_grad():
        module(x)
        assert_results_close(module(x), reference(x), 1e-10)
    assert len(module._graphs) == 1


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_second_call_is_right_and_leaves_the_first_result_alone(graphed_cls, fast_cls,
                                                                torch_cls):
    module, _ = build(graphed_cls, torch_cls, device="cuda", dtype=torch.float32,
                      bidirectional=True)
    x1, x2 = (torch.randn(9, 2, 3, device="cuda") for _ in range(2))
    hx1, hx2 = (random_hx(module, 2, device="cuda", dtype=torch.float32) for _ in range(2))
    with torch.no_grad():
        first = module(x1, hx1)
        kept = [t.clone() for t in flat(first)]
        second = module(x2, hx2)
        assert_results_close(second, eager(fast_cls, module, x2, hx2), 1e-5)
        for now, was in zip(flat(first), kept, strict=True):
            torch.testing.assert_close(now, was, atol=0, rtol=0)
        assert not torch.equal(flat(first)[0], flat(second)[0])
    assert len(module._graphs) == 1


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_parameter_updates_are_seen(graphed_cls, fast_cls, torch_cls):
    module, _ = build(graphed_cls, torch_cls, device="cuda", dtype=torch.float64, num_layers=2)
    x = torch.randn(8, 3, 3, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        module(x)
        graph = next(iter(module._graphs.values())).graph
        # In place, as an optimiser step or load_state_dict does: the same graph sees it.
        module.weight_hh_l1.mul_(-0.5)
        module.load_state_dict({**module.state_dict(), "weight_ih_l0": torch.randn_like(
            module.weight_ih_l0)})
        assert_results_close(module(x), eager(fast_cls, module, x), 1e-12)
        assert next(iter(module._graphs.values())).graph is graph
        # Replaced: a new tensor at a new address; the graphs are captured again.
        module.weight_hh_l0 = nn.Parameter(torch.randn_like(module.weight_hh_l0))
        assert_results_close(module(x), eager(fast_cls, module, x), 1e-12)
        assert next(iter(module._graphs.values())).graph is not graph


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_autograd_falls_back_to_the_eager_loop(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, device="cuda", num_layers=2)
    x = torch.randn(5, 2, 3, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        module(x)  # a graph exists for this key; a call that needs grad must not use it
    grads = []
    for m in (module, reference):
        leaf = x.clone().requires_grad_(True)
        sum(t.square().sum() for t in flat(m(leaf))).backward()
        grads.append([leaf.grad, *(p.grad for p in m.parameters())])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_inference_mode_and_no_grad_get_their_own_graphs(graphed_cls, fast_cls, torch_cls):
    module, reference = build(graphed_cls, torch_cls, device="cuda")
    x = torch.randn(5, 2, 3, device="cuda", dtype=torch.float64)
    with torch.no_grad():
        want = reference(x)
    for _ in range(2):
        with torch.inference_mode():
            assert_results_close(module(x), want, 1e-10)
        with torch.no_grad():
            assert_results_close(module(x), want, 1e-10)
    assert len(module._graphs) == 2


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_invalid_input_raises_torch_error_and_captures_nothing(graphed_cls, fast_cls,
                                                              torch_cls):
    module, _ = build(graphed_cls, torch_cls, device="cuda")
    with torch.no_grad(), pytest.raises(RuntimeError, match="input_size"):
        module(torch.randn(5, 2, 4, device="cuda", dtype=torch.float64))
    assert not module._graphs


def mean_ms(call, reps=50):
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        call()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1e3


@needs_cuda
@pytest.mark.parametrize(("graphed_cls", "fast_cls", "torch_cls"), KINDS)
def test_replay_is_faster_than_eager_at_small_batch(graphed_cls, fast_cls, torch_cls):
    """B=1, T=100, H=256: the eager loop is bound by kernel launches; a replay is one launch."""
    module, _ = build(graphed_cls, torch_cls, device="cuda", dtype=torch.float32,
                      input_size=256, hidden_size=256)
    x = torch.randn(100, 1, 256, device="cuda")
    with torch.no_grad():
        eager_ms = mean_ms(lambda: eager(fast_cls, module, x))
        graphed_ms = mean_ms(lambda: module(x))
    print(f"\n{graphed_cls.__name__} B=1 T=100 H=256 float32: eager {eager_ms:.3f} ms, "
          f"graph replay {graphed_ms:.3f} ms ({eager_ms / graphed_ms:.1f}x)")
    assert graphed_ms < eager_ms
