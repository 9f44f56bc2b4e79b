"""streaming: a sequence split at random points, the state carried from piece to piece, equals
the whole sequence — every output step, the final state, and the gradient that reaches the
initial state. This is how a recurrent model serves a stream; for a parallel implementation it
is also the classic bug: a scan given an h_0 must agree with its own sequential mode (for an op:
an initial state ignored, or detached from the graph)."""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.conformance.gradients import NoGradient
from harness.conformance.grids import BASE, product
from harness.conformance.op_grids import BASE as OP_BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.contract import Inputs
from harness.core.op_subject import OpInputs, OpOutputs
from harness.core.subject import layout

SUITE = SuiteInfo(order=45)


def grid(fam):
    """Unidirectional only: a reverse direction needs the whole future before its first output."""
    long = BASE.with_(seq_len=13)
    chosen = product(long, with_hx=(False, True), num_layers=(1, 2))
    chosen += [long.with_(batch_first=True, with_hx=True),
               long.with_(dtype="float64", num_layers=2, with_hx=True)]
    return chosen


def split_points(case) -> list[int]:
    """1 to 3 cut points strictly inside the sequence, drawn from the case's seed."""
    generator = torch.Generator().manual_seed(case.data_seed)
    cuts = int(torch.randint(1, 4, (1,), generator=generator))
    points = torch.randperm(case.seq_len - 1, generator=generator)[:cuts] + 1
    return sorted(int(p) for p in points)


def time_major(case, tensor):
    return tensor.transpose(0, 1) if case.batch_first else tensor


def streamed(subject, module, inputs):
    """The pieces run one after the other, each from the state the previous one left; the
    outputs concatenated in the case's layout, and the last piece's outputs."""
    case = subject.case
    x = time_major(case, inputs.x)  # (T, B, I)
    bounds = [0, *split_points(case), case.seq_len]
    state, outputs, last = inputs.hx, [], None
    for start, stop in itertools.pairwise(bounds):
        piece_case = case.with_(seq_len=stop - start)
        piece = layout(piece_case, x[start:stop], None, None).x
        last = subject.run(module, Inputs(piece, None, state), case=piece_case)
        outputs.append(time_major(case, last.output))
        state = last.state
    return time_major(case, torch.cat(outputs)), last


@cases(grid)
def test_split_sequence_equals_whole(subject, check):
    case = subject.case
    module = subject.build()
    inputs = subject.inputs()
    whole = subject.run(module, inputs)
    output, last = streamed(subject, module, inputs)
    check.note(f"split at steps {split_points(case)}")
    check.close("outputs of the pieces vs the whole sequence", output, whole.output)
    check.close("h_n after the last piece vs the whole sequence", last.h_n, whole.h_n)
    if whole.c_n is not None:
        check.close("c_n after the last piece vs the whole sequence", last.c_n, whole.c_n)


@pytest.mark.autograd
@cases(lambda fam: [c for c in grid(fam) if c.with_hx])
def test_split_sequence_gradient_into_h0(subject, check):
    """The same random upstream gradient into every output step and the final state: the
    gradient reaching h_0 (and c_0) through the pieces equals the one through the whole."""
    from harness.conformance.gradients import NoGradient, leaf_inputs, require_graph

    case = subject.case
    module = subject.build(gradients=True)
    generator = torch.Generator().manual_seed(case.data_seed + 1)
    grads = []
    for run_pieces in (False, True):
        inputs = leaf_inputs(subject.inputs())
        if run_pieces:
            output, last = streamed(subject, module, inputs)
        else:
            last = subject.run(module, inputs)
            output = last.output
        require_graph(last)
        watched = [output, *(s for s in (last.h_n, last.c_n) if s is not None)]
        if not grads:
            upstream = [torch.randn(t.shape, generator=generator, dtype=torch.float64)
                        .to(device=t.device, dtype=t.dtype) for t in watched]
        loss = sum((t * u).sum() for t, u in zip(watched, upstream))
        states = inputs.hx if isinstance(inputs.hx, tuple) else (inputs.hx,)
        found = torch.autograd.grad(loss, states, allow_unused=True)
        if any(g is None for g in found):
            raise NoGradient("no gradient reaches h_0" + (" through the pieces" if run_pieces
                                                          else ""))
        grads.append(found)
    for name, split, whole in zip(("h_0", "c_0"), grads[1], grads[0]):
        check.close(f"d loss / d {name} through the pieces vs the whole sequence", split, whole)


@pytest.mark.autograd
@cases(lambda fam: [OP_BASE.with_(seq_len=100), OP_BASE.with_(seq_len=100, dtype="float64")],
       kind="op")
def test_op_split_sequence_equals_whole(subject, check):
    """Split at steps 17 and 64, the final state carried in as the next piece's initial state:
    the outputs, the final state and the gradient into the first initial state equal the whole
    sequence's."""
    inputs = subject.inputs().leaves()
    whole = subject.run(inputs)
    if whole.state is None:
        check.not_supported("the op returns no final state: nothing to carry")
    pieces, state = [], inputs.initial_state
    for start, end in ((0, 17), (17, 64), (64, 100)):
        part = slice(start, end)
        piece = subject.run(OpInputs(inputs.q[:, part], inputs.k[:, part], inputs.v[:, part],
                                     tuple(g[:, part] for g in inputs.gates), state,
                                     scale=inputs.scale))
        pieces.append(piece.o)
        state = piece.state
    split = OpOutputs(torch.cat(pieces, 1), state, whole.names)
    check.outputs_close(split, whole.detach(), against="the whole sequence")
    generator = torch.Generator().manual_seed(subject.case.data_seed)
    upstream = [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype)
                for t in whole.named().values()]
    start = inputs.initial_state[0]
    grads = []
    for result in (whole, split):
        total = sum((t * u.to(t.device)).sum() for t, u in zip(result.named().values(), upstream))
        found = torch.autograd.grad(total, [start], allow_unused=True)[0]
        if found is None:
            raise NoGradient("no gradient reaches the initial state")
        grads.append(found)
    check.close("d loss / d initial_state (split vs whole)", grads[1], grads[0],
                check.tolerance_of("gradient"))
