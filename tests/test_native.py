"""Unit tests of harness/impls/native.py and native.c: the build and its cache, what happens without
a compiler or with the kernels turned off, and each compiled kernel against torch's maths in
float64 (products in both weight layouts and at every row count and width tail, the LSTM, GRU and
Elman step maths, extreme and non-finite inputs)."""

from __future__ import annotations

import pytest
import torch

from harness.impls import kernels, native
from harness.impls.fast import FastGRU, FastLSTM, FastRNN

KERNELS, WHY = native.kernels(torch.zeros(()))
pytestmark = pytest.mark.skipif(KERNELS is None, reason=f"no compiled kernels: {WHY}")


def reference_sigmoid(x):
    return torch.sigmoid(x.double())


def test_build_is_cached_per_source(tmp_path, monkeypatch):
    monkeypatch.setenv(native.CACHE_VAR, str(tmp_path))
    first = native.build()
    assert first.parent == tmp_path and first.exists()
    stamp = first.stat().st_mtime_ns
    assert native.build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    other = native.build(native.source() + b"\n/* another source */\n")
    assert other != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


@pytest.mark.parametrize(("compiler", "says"), [
    ("/nonexistent/cc", "could not run"),
    ("false", r"false failed \(exit 1\)"),
])
def test_a_missing_or_failing_compiler_is_reported(compiler, says, tmp_path, monkeypatch):
    monkeypatch.setenv(native.CACHE_VAR, str(tmp_path))
    monkeypatch.setenv("CC", compiler)
    with pytest.raises(native.NativeUnavailable, match=says):
        native.build()


def test_turned_off_the_layers_use_torch_operators(monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, "0")
    fast = FastLSTM(6, 128)  # 128 -> 512 per step: a product large enough to be measured
    fast(torch.randn(3, 1, 6))
    assert fast.last_gate_kernel == f"torch operators ({native.ENV_VAR}=0)"
    assert fast.harness_kernel_path()["gate_kernel"] == fast.last_gate_kernel
    assert "native" not in fast.last_gemm.key[6]  # not a candidate either
    assert kernels.unusable("native", torch.zeros(())) == f"{native.ENV_VAR}=0"


def test_gate_kernel_requests_are_checked():
    fast = FastGRU(3, 5, dtype=torch.float64)
    fast.gate_kernel = "native"
    with pytest.raises(ValueError, match=r"'native' was requested but cannot run: cpu "
                                         r"torch\.float64"):
        fast(torch.randn(2, 1, 3, dtype=torch.float64))
    fast.gate_kernel = "fused"
    with pytest.raises(ValueError, match="unknown gate_kernel 'fused'; valid: auto, native"):
        fast(torch.randn(2, 1, 3, dtype=torch.float64))
    fast = FastRNN(3, 5)
    fast(torch.randn(2, 1, 3))
    assert fast.last_gate_kernel.startswith("compiled (")


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
@pytest.mark.parametrize(("n", "k"), [(2048, 512), (13, 7), (130, 3), (1, 1)])
@pytest.mark.parametrize("layout", ["rows", "transposed"])
@pytest.mark.parametrize("add", ["matrix", "bias", "none", "in-place"])
def test_products_match_torch(rows, n, k, layout, add):
    torch.manual_seed(0)
    w = torch.randn(n, k)
    weight = w if layout == "rows" else w.t().contiguous().t()  # (n, k), a view of a (k, n)
    x = torch.randn(rows, k)
    term = {"matrix": torch.randn(rows, n), "bias": torch.randn(n), "none": None,
            "in-place": torch.randn(rows, n)}[add]
    expected = x.double() @ w.double().t() + (0 if term is None else term.double())
    out = term if add == "in-place" else torch.full((rows, n), float("nan"))
    got = KERNELS.linear_add(weight, x, term, out)
    assert got is out
    torch.testing.assert_close(got.double(), expected, atol=2e-6 * k ** 0.5, rtol=1e-5)


def test_lstm_step_maths_matches_torch():
    torch.manual_seed(0)
    batch, hidden = 3, 37  # not a multiple of any vector width: the tails run too
    pre = torch.randn(batch, 4 * hidden) * 4
    c = torch.randn(batch, hidden)
    gates, c_out, h_out = pre.clone(), torch.empty(batch, hidden), torch.empty(batch, hidden)
    KERNELS.lstm_cell(gates, -2 * c, c_out, h_out)
    i, f, g, o = pre.double().chunk(4, dim=1)
    i, f, o, g = i.sigmoid(), f.sigmoid(), o.sigmoid(), g.tanh()
    c_new = f * c.double() + i * g
    expected = torch.cat([i, f, torch.sigmoid(2 * pre.double()[:, 2 * hidden:3 * hidden]), o], 1)
    torch.testing.assert_close(gates.double(), expected, atol=3e-7, rtol=0)
    torch.testing.assert_close(c_out.double(), -2 * c_new, atol=2e-6, rtol=0)  # C = -2c
    torch.testing.assert_close(h_out.double(), o * c_new.tanh(), atol=5e-7, rtol=0)


def test_gru_step_maths_matches_torch():
    torch.manual_seed(0)
    batch, hidden = 2, 21
    gx, hg, h = torch.randn(batch, 3 * hidden) * 3, torch.randn(batch, 3 * hidden), \
        torch.randn(batch, hidden)
    gates, h_out = gx.clone(), torch.empty(batch, hidden)
    KERNELS.gru_cell(gates, hg, h, h_out)
    x_r, x_z, x_n = gx.double().chunk(3, dim=1)
    h_r, h_z, h_n = hg.double().chunk(3, dim=1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    torch.testing.assert_close(gates.double(), torch.cat([r, z, n], 1), atol=3e-7, rtol=0)
    torch.testing.assert_close(h_out.double(), (1 - z) * n + z * h.double(), atol=5e-7, rtol=0)


def test_activations_across_the_range_and_beyond():
    x = torch.cat([torch.linspace(-40, 40, 100_003),
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, 89.0, -89.0, 1e4, -1e4])])
    out = torch.empty_like(x)
    KERNELS.rnn_act(x, out, relu=False)
    # Cephes documents tanhf's peak relative error as 1.3e-7 (its exp), ours is measured at
    # 6.6e-8 absolute and 1.1e-7 relative on an AVX2 EPYC: the bounds leave room for another
    # -march's rounding, and a tanh that loses relative precision near 0 still fails below
    torch.testing.assert_close(out.double(), x.double().tanh(), atol=2e-7, rtol=0)
    small = (x.abs() < 1) & (x != 0)  # near 0 the error is relative to a small result
    relative = (out.double() - x.double().tanh()).abs() / x.double().tanh().abs()
    assert relative[small].max() < 2e-7 and out[x == 1e-30].item() == x[x == 1e-30].item()
    special = torch.tensor([float("inf"), float("-inf"), float("nan")])
    out = torch.empty_like(special)
    KERNELS.rnn_act(special, out, relu=False)
    assert out[0] == 1 and out[1] == -1 and out[2].isnan()
    KERNELS.rnn_act(special, out, relu=True)
    assert out[0] == float("inf") and out[1] == 0 and out[2].isnan()  # NaN is not hidden
    # sigmoid through the LSTM kernel: all four gates of one hidden unit
    pre = torch.tensor([[1e4, -1e4, 0.0, float("nan")]])
    KERNELS.lstm_cell(pre, torch.zeros(1, 1), torch.empty(1, 1), torch.empty(1, 1))
    assert pre[0, 0] == 1 and 0 <= pre[0, 1] < 1e-37 and pre[0, 2] == 0.5 and pre[0, 3].isnan()


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("keep", [False, True], ids=["inference", "autograd"])
def test_lstm_blocks_run_in_one_compiled_call(bidirectional, keep, monkeypatch):
    """With the compiled product and gate maths, no mask and no projection, an LSTM's steps run
    in sh_lstm_steps and its gate gradients in sh_lstm_cell_backward: the Python paths are not
    entered, and the result is torch's, gradients included."""
    from harness.impls.lstm_cell import LSTMRun

    def no_step(self, *args):
        raise AssertionError("a Python path ran")

    torch.manual_seed(0)
    reference = torch.nn.LSTM(6, 9, num_layers=2, bidirectional=bidirectional)
    fast = FastLSTM(6, 9, num_layers=2, bidirectional=bidirectional)
    fast.load_state_dict(reference.state_dict())
    fast.gemm_backend = "native"
    monkeypatch.setattr(LSTMRun, "step", no_step)
    monkeypatch.setattr(LSTMRun, "backward_steps", no_step)
    monkeypatch.setattr("harness.impls.loop.CHUNK_ROWS", 3)  # several blocks per sequence
    x = torch.randn(7, 1, 6, requires_grad=keep)
    with torch.set_grad_enabled(keep):
        got, want = fast(x), reference(x)
    for g, w in zip([got[0], *got[1]], [want[0], *want[1]], strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    if keep:
        grads = torch.autograd.grad(got[0].sum(), [x, *fast.parameters()])
        wants = torch.autograd.grad(want[0].sum(), [x, *reference.parameters()])
        for g, w in zip(grads, wants, strict=True):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_with_several_threads_large_steps_keep_torch_operators():
    """The compiled gate maths run on one thread: with more torch threads, a step above
    SERIAL_MAX gate elements stays in torch's (parallel) operators; small steps, where threads
    do not pay, stay compiled."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fast = FastGRU(4, 64)  # 3 x 64 = 192 gate elements per row
        fast(torch.randn(2, native.SERIAL_MAX // 192 + 1, 4))
        assert fast.last_gate_kernel.startswith("torch operators (2 threads and ")
        fast(torch.randn(2, 3, 4))
        assert fast.last_gate_kernel.startswith("compiled (")
        torch.set_num_threads(1)
        fast(torch.randn(2, native.SERIAL_MAX // 192 + 1, 4))
        assert fast.last_gate_kernel.startswith("compiled (")
    finally:
        torch.set_num_threads(before)
