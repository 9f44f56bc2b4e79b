"""gradients: backward passes equal torch's — with respect to the input, hx (and cx) and every
parameter, for the same weights and the same random upstream gradients into output, h_n and c_n;
in eval mode as in training mode; torch.autograd.gradcheck passes in float64; padded steps get
exactly zero gradient. For ops: dq, dk, dv, the gates' and the initial state's gradients, and
gradcheck."""

from __future__ import annotations

import pytest
import torch

from harness.conformance.calls import IN_PLACE_REFUSALS
from harness.conformance.checks import Tolerance
from harness.conformance.gradients import (
    NoGradient,
    backward,
    follows_the_forward,
    match_reference,
    padded_mask,
    require_graph,
)
from harness.conformance.grids import BASE, layouts, varlen
from harness.conformance.op_checks import gradients_match
from harness.conformance.op_grids import BASE as OP_BASE
from harness.conformance.op_grids import stressed
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.backprop import Upstream, meaning
from harness.core.contract import Inputs
from harness.core.text import one_line

SUITE = SuiteInfo(order=80, autograd=True)


def grid(fam):
    chosen = [c.with_(with_hx=True) for c in layouts() if c.num_layers < 3]
    chosen += varlen(fam)
    chosen += [BASE.with_(batch=None, num_layers=2, with_hx=True),
               BASE.with_(dtype="float64", num_layers=2, bidirectional=True, with_hx=True),
               BASE.with_(bias=False, with_hx=True),
               # batch x hidden past 4096, where fast layers switch to folded or blocked
               # kernels, backward passes included
               BASE.with_(seq_len=3, batch=65, input_size=8, hidden_size=64, with_hx=True)]
    if fam.supports_proj:
        chosen.append(BASE.with_(proj_size=4, num_layers=2, bidirectional=True, with_hx=True))
    return chosen


@cases(grid)
def test_gradients_match_reference(subject, check):
    match_reference(subject, check, subject.inputs())


@cases(lambda fam: [BASE.with_(with_hx=True),
                    BASE.with_(lengths=(3, 5, 1), num_layers=2, bidirectional=True)])
def test_gradients_in_eval_mode(subject, check):
    """Gradients through the module in eval mode — saliency maps, adversarial inputs, fine-tuning
    with dropout off — equal the reference's: eval mode changes dropout, not autograd. (On a
    device where torch's own module refuses a backward pass in eval mode, cuDNN's, the other
    gradient checks run in training mode, and one that refuses here as torch does is reported
    *as torch*.)"""
    match_reference(subject, check, subject.inputs(), subject.build().eval())


@cases(lambda fam: [BASE.with_(training=True),
                    BASE.with_(training=True, lengths=(3, 5, 1), num_layers=2,
                               bidirectional=True)])
def test_parameter_gradients_when_training(subject, check):
    """As training computes them: the module in training mode (no dropout: the same function)
    and the batch needing no gradient, as a model's data does; every parameter's gradient equals
    the reference's. (Layers wrapped in torch.utils.checkpoint with use_reentrant=True, say,
    give none then: no input of a checkpointed part needs a gradient.)"""
    match_reference(subject, check, subject.inputs(), inputs_need_grad=False)


@cases(lambda fam: [BASE.with_(with_hx=True),
                    BASE.with_(lengths=(3, 5, 1), num_layers=2, bidirectional=True)])
def test_two_calls_in_one_graph(subject, check):
    """The module called twice before one backward pass (an encoder shared by two inputs, a
    siamese pair, a sequence and its reverse): every gradient is the sum over both calls, as
    the reference's. A hand-written backward that keeps its saved tensors or a workspace on
    the module, not per call, mixes the two."""
    match_reference(subject, check, subject.inputs(), calls=2)


@cases(lambda fam: [BASE.with_(with_hx=True),
                    BASE.with_(num_layers=2, bidirectional=True, batch_first=True)])
def test_output_changed_in_place_before_backward(subject, check):
    """1 added in place to the output before the loss (a residual, out += x, as a layer's
    forward adds its input): torch's modules allow it, and every gradient is still theirs. A
    hand-written backward that keeps its outputs on ctx instead of save_for_backward (no
    version check) reads the changed values and gives other gradients, silently. A backward
    that refuses the change, as autograd does where it saved that output (torch's LSTM on its
    oneDNN path), compares nothing: not supported, saying so."""
    try:
        match_reference(subject, check, subject.inputs(), in_place=True)
    except RuntimeError as error:
        if not any(said in str(error) for said in IN_PLACE_REFUSALS):
            raise
        check.not_supported("its backward refuses an output changed in place (autograd: "
                            f"{one_line(error)[:120]}), as torch's LSTM does on its oneDNN "
                            "path: nothing to compare")


@cases(lambda fam: [BASE.with_(with_hx=True),
                    BASE.with_(with_hx=True, lengths=(3, 5, 1), num_layers=2)])
def test_gradients_through_a_zero_initial_state(subject, check):
    """hx given as zeros that need a gradient (a learned initial state, initialised to zeros
    as most are): every gradient, h_0's included, equals the reference's. A log-space scan
    that takes log(h_0) is right forward and NaN backward there."""
    inputs = subject.inputs()
    hx = inputs.hx
    zeros = tuple(h.new_zeros(h.shape) for h in hx) if isinstance(hx, tuple) else (
        hx.new_zeros(hx.shape))
    match_reference(subject, check, Inputs(inputs.x, inputs.lengths, zeros))


@cases(lambda fam: [BASE.with_(with_hx=True),
                    BASE.with_(lengths=(3, 5, 1), num_layers=2, bidirectional=True)])
def test_input_gradients_with_frozen_parameters(subject, check):
    """Every parameter frozen (requires_grad False, as a pretrained encoder under a trainable
    embedding or a prompt being tuned): the gradients with respect to the input and h_0 still
    equal the reference's. A fast path that runs under torch.no_grad() once no parameter needs
    a gradient leaves everything below the layer untrained. With an initial state, once more
    with the input needing no gradient (a tuned h_0 under a frozen model fed data): a
    hand-written backward that returns early when neither the input nor a weight needs a
    gradient forgets h_0."""
    match_reference(subject, check, subject.inputs(), frozen=True)
    if subject.case.with_hx:
        match_reference(subject, check, subject.inputs(), frozen=True, state_only=True)


@cases(lambda fam: [BASE.with_(seq_len=300, batch=2, hidden_size=8, with_hx=True,
                               dtype="float64",
                               radius=None if fam.recurrence == "none" else 1.0)])
def test_gradient_reaches_h0_over_long_sequences(subject, check):
    """300 steps, float64, the recurrent weights at spectral radius 1: a gradient into the
    final state alone (none into the output's steps) reaches h_0 (and c_0) through all 300
    steps, and equals the reference's there, held to a millionth of its own size — tiny after
    300 steps, never exactly zero. Truncated backpropagation built into the layer (the state
    detached every few hundred steps) gives exactly zero, which equals the reference to any
    absolute tolerance."""
    case = subject.case
    module, inputs = subject.build(gradients=True), subject.inputs()
    reference = subject.reference()
    with torch.no_grad():
        shapes = subject.run_reference(inputs.to("cpu"), reference)
    drawn = Upstream.like(shapes, seed=case.data_seed)
    upstream = Upstream(torch.zeros_like(drawn.output), drawn.h_n, drawn.c_n)  # h_n, c_n only
    got, _ = backward(lambda i: subject.run(module, i), module, inputs, upstream,
                      seed=case.data_seed)
    want, _ = backward(lambda i: subject.run_reference(i, reference), reference,
                       inputs.to("cpu"), upstream, seed=case.data_seed)
    for name in ("h_0", "c_0"):
        expected = want.wrt.get(name)
        if expected is None:
            continue
        found = got.wrt.get(name)
        if found is None:
            raise NoGradient(f"no gradient reaches {name} over {case.seq_len} steps")
        size = float(expected.abs().max())
        if size == 0.0:
            check.not_supported(f"the reference's gradient into {name} is zero: no memory "
                                f"of it after {case.seq_len} steps to compare")
        check.close(f"d loss / d {name} after {case.seq_len} steps", found, expected,
                    Tolerance(1e-6 * size))


@cases(lambda fam: [BASE.with_(seq_len=6, num_layers=2, dropout=0.5, dtype="float64",
                               with_hx=True)])
def test_gradients_with_dropout_follow_the_forward(subject, check):
    """In training with dropout, the gradient is the gradient of the forward pass it follows:
    after one torch.manual_seed the masks are the same call after call, so the input's gradient
    along a random direction equals the training loss's central difference along it (float64).
    Activation checkpointing that does not replay torch's RNG state (preserve_rng_state=False)
    recomputes another mask in the backward pass: the gradient of another function than the
    forward computed, with the forward itself right."""
    follows_the_forward(subject, check)


@cases(lambda fam: [c for c in varlen(fam)])
def test_padded_steps_get_zero_gradient(subject, check):
    module = subject.build(gradients=True)
    got, _ = backward(lambda i: subject.run(module, i), module, subject.inputs(pad_value=None),
                      None, seed=subject.case.data_seed)
    if got.wrt["input"] is None:
        raise NoGradient("no gradient reaches the input")
    mask = padded_mask(subject).to(got.wrt["input"].device)
    at_padding = got.wrt["input"].masked_select(mask)  # empty when no step is padded
    check.close("d loss / d input at padded steps", at_padding, torch.zeros_like(at_padding),
                Tolerance(0.0))


def gradcheck_grid(fam):
    tiny = BASE.with_(seq_len=3, batch=2, input_size=2, hidden_size=3, dtype="float64",
                      with_hx=True)
    # Two directions double every parameter: there H=2, which halves the finite differences
    # (layer 2's input, 2H=4, stays unlike H; the one-way cases keep I=2 unlike H=3).
    both = tiny.with_(bidirectional=True, hidden_size=2)
    chosen = [tiny, both.with_(num_layers=2), both.with_(lengths=(3, 1)),
              tiny.with_(batch_first=True)]
    if fam.supports_proj:
        chosen.append(tiny.with_(proj_size=2))
    return chosen


@pytest.mark.time_limit(3)  # float64 finite differences over every parameter
@cases(gradcheck_grid)
def test_gradcheck(subject, check):
    """Analytic gradients equal finite differences (torch.autograd.gradcheck, float64) with
    respect to the input, hx and every parameter of the implementation itself."""
    module = subject.build(gradients=True)
    inputs = subject.inputs()
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]
    states = inputs.hx if isinstance(inputs.hx, tuple) else (inputs.hx,)
    leaves = [inputs.x.detach().clone().requires_grad_(True),
              *(s.detach().clone().requires_grad_(True) for s in states)]

    class Called(torch.nn.Module):
        """The implementation called through the contract, so functional_call can swap in the
        parameters gradcheck perturbs."""

        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, x, hx):
            return tuple(subject.run(self.inner, Inputs(x, inputs.lengths, hx)).named().values())

    called = Called()
    require_graph(subject.run(module, inputs))

    def forward(x, *rest):
        hx = rest[: len(states)]
        weights = {f"inner.{n}": p for n, p in zip(names, rest[len(states):])}
        return torch.func.functional_call(called, weights, (x, hx if len(hx) == 2 else hx[0]))

    gradcheck_or_fail(check, forward, (*leaves, *params))


@pytest.mark.time_limit(3)  # float64 finite differences of the backward pass
@cases(lambda fam: [BASE.with_(seq_len=3, batch=2, input_size=2, hidden_size=3, with_hx=True,
                               dtype="float64")])
def test_second_derivatives(subject, check):
    """Double backward — a gradient penalty, MAML, Hessian-vector products — is right:
    torch.autograd.gradgradcheck (float64) with respect to the input and h_0, the weights as
    loaded. A custom autograd.Function whose backward reads what its forward saved as plain
    tensors (a precomputed derivative) gives second derivatives silently missing a term. An
    implementation declaring double_backward False (a hand-written backward) is not held to
    it."""
    if not subject.spec.capabilities.double_backward:
        check.not_supported("double backward (the implementation declares double_backward "
                            "False: its backward pass is not differentiable)")
    module = subject.build(gradients=True)
    inputs = subject.inputs()
    states = inputs.hx if isinstance(inputs.hx, tuple) else (inputs.hx,)
    leaves = [inputs.x.detach().clone().requires_grad_(True),
              *(s.detach().clone().requires_grad_(True) for s in states)]
    require_graph(subject.run(module, inputs))

    def forward(x, *hx):
        given = tuple(hx) if len(hx) == 2 else hx[0]
        return tuple(subject.run(module, Inputs(x, inputs.lengths, given)).named().values())

    outputs = forward(*leaves)
    try:
        with torch.random.fork_rng(devices=[]):  # the same random directions on every run
            torch.manual_seed(0)
            torch.autograd.gradgradcheck(forward, leaves, eps=1e-6, atol=1e-6, rtol=1e-4,
                                         fast_mode=True)
    except RuntimeError as error:
        check.fail(f"gradgradcheck: {' '.join(str(error).split())[:600]}")
    check.count("gradgradcheck's directional second derivatives",
                len(outputs) * len(leaves))


def gradcheck_or_fail(check, forward, leaves) -> None:
    """torch.autograd.gradcheck in fast mode (per input and output, one random directional
    derivative vᵀ J u, analytic against its finite difference: a wrong gradient anywhere moves
    it); where that differs, the full Jacobians (slow mode) decide, and name the entries."""
    outputs = forward(*leaves)
    try:
        with torch.random.fork_rng(devices=[]):  # the same u and v on every run
            torch.manual_seed(0)
            torch.autograd.gradcheck(forward, leaves, eps=1e-6, atol=1e-6, rtol=1e-4,
                                     fast_mode=True)
    except RuntimeError:
        try:
            torch.autograd.gradcheck(forward, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)
        except RuntimeError as error:
            check.fail(f"gradcheck: {' '.join(str(error).split())[:600]}")
        check.count("gradcheck's Jacobian entries", sum(t.numel() for t in outputs)
                    * sum(t.numel() for t in leaves))
        return
    check.count("gradcheck's directional derivatives (one per input and output)",
                len(outputs) * len(leaves))


def op_grid(fam):
    return [OP_BASE.with_(seq_len=65), OP_BASE.with_(seq_len=65, dtype="float64"),
            OP_BASE.with_(seq_len=63, key_dim=100, value_dim=64, heads=1),
            OP_BASE.with_(seq_len=83, batch=1, lengths=(1, 17, 0, 65)),
            OP_BASE.with_(seq_len=64, with_state=False), OP_BASE.with_(seq_len=40, scale=0.3),
            OP_BASE.with_(seq_len=65, final_state=False),  # the training call: o alone
            OP_BASE.with_(seq_len=100, chunk_size=16),  # seven chunks: the state's gradient
            # carried back across many boundaries, not one
            # decays strong enough that chunked forms take their masked-exponential path
            *(stressed(OP_BASE.with_(seq_len=65), stress)
              for stress in ("s0.1", "mixed-heads") if stress in fam.stresses)]


@cases(op_grid, kind="op")
def test_op_gradients_match_reference(subject, check):
    """dq, dk, dv, every gate's gradient and the initial state's equal the reference's, for the
    loss (o · do) + (final state · dht) with random do and dht (fla's)."""
    gradients_match(subject, check)


@cases(lambda fam: [OP_BASE.with_(seq_len=65)], kind="op")
def test_op_gradients_from_non_contiguous_inputs(subject, check):
    """q, k, v and the gates as views of head-first tensors and the state stored [N, H, V, K]
    (values::non_contiguous_inputs' inputs), through the backward pass too: every gradient
    equals the reference's. A hand-written backward that flattens what it saved with .view
    raises there, though the forward took the views."""
    views = subject.inputs().strided()
    if views.leaves().q.is_contiguous():
        check.fail("the harness failed to keep the inputs non-contiguous through the leaves")
    gradients_match(subject, check, views)


@cases(lambda fam: [OP_BASE.with_(seq_len=65)], kind="op")
def test_op_gradients_with_the_initial_state_detached(subject, check):
    """The initial state passed as a plain tensor, needing no gradient — a decode cache, or the
    state carried by truncated backpropagation: dq, dk, dv and the gates' gradients still equal
    the reference's. A hand-written backward that keeps the initial state only when it needs a
    gradient of its own recomputes the states from zeros."""
    gradients_match(subject, check, state_needs_grad=False)


@cases(lambda fam: [OP_BASE.with_(seq_len=5, batch=1, heads=1, key_dim=3, value_dim=2,
                                  dtype="float64"),
                    OP_BASE.with_(seq_len=5, batch=1, heads=1, key_dim=3, value_dim=2,
                                  dtype="float64", chunk_size=2)], kind="op")
def test_op_gradcheck(subject, check):
    """Analytic gradients equal finite differences (float64) with respect to every input."""
    inputs = subject.inputs()
    leaves = list(inputs.leaves().tensors())

    def forward(*tensors):  # the final state through what it means (mLSTM: C e^(m - m_ref))
        return tuple(meaning(subject.run(inputs.rebuilt(tensors)), subject, inputs).named()
                     .values())

    if not any(t.requires_grad for t in forward(*leaves)):
        raise NoGradient("no gradient reaches any input: the outputs were computed without "
                         "autograd")
    gradcheck_or_fail(check, forward, tuple(leaves))
