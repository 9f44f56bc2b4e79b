"""errors: malformed input raises the same type of error torch raises — never a silent answer.

Wrong input size, wrong hx shape (layers x directions, batch, features, cell state), hx of the
wrong rank for the input, a zero-length sequence, input of the wrong rank. Each bad call is made
on torch's module first; the implementation must raise an instance of the same exception type.

For ops: k with another head dimension than q, v with another number of steps, a gate with one
step too many, an initial state with a row too many, cu_seqlens with a batch of two rows. The
family's reference loop refuses each (one ValueError naming the value); the op must raise too —
any exception, as kernels refuse with ValueError, an assert or a failed launch — where a kernel
launched on q's shape alone reads the first rows and steps and answers.
"""

from __future__ import annotations

import dataclasses

import torch

from harness.conformance.grids import BASE
from harness.conformance.op_grids import BASE as OP_BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.contract import Inputs
from harness.core.op_subject import OpInputs

SUITE = SuiteInfo(order=60)


def grid(fam):
    chosen = [BASE, BASE.with_(bidirectional=True, num_layers=2),
             BASE.with_(batch_first=True, num_layers=2), BASE.with_(batch=None),
             BASE.with_(batch=None, bidirectional=True)]
    if fam.supports_proj:
        chosen.append(BASE.with_(proj_size=4, num_layers=2))
    return chosen


def state(case, fam, *, rows=0, batch=0, features=0, cell_features=0):
    """A random h_0 (and c_0), with the given offsets added to its dimensions."""
    generator = torch.Generator().manual_seed(case.data_seed)
    lead = case.num_layers * case.num_directions + rows
    middle = () if case.unbatched else (case.batch + batch,)
    like = {"dtype": case.torch_dtype}
    h = torch.randn(lead, *middle, case.h_out + features, generator=generator, **like)
    if not fam.has_cell:
        return h.to(case.device)
    c = torch.randn(lead, *middle, case.hidden_size + cell_features, generator=generator, **like)
    return h.to(case.device), c.to(case.device)


def expect_same_error(subject, check, what, inputs, *, case=None):
    module, reference = subject.build(), subject.reference()
    kind = check.raises_like(
        what,
        lambda: subject.run_reference(inputs, reference, case=case),
        lambda: subject.run(module, inputs, case=case),
    )
    check.note(f"{what}: raises {kind}")


@cases(grid)
def test_wrong_input_size(subject, check):
    wider = subject.case.with_(input_size=subject.case.input_size + 1)
    x = type(subject)(subject.spec, wider).inputs().x
    expect_same_error(subject, check, "input with input_size + 1 features", Inputs(x))


@cases(grid)
def test_wrong_hx_layers(subject, check):
    inputs = subject.inputs()
    hx = state(subject.case, subject.family_def, rows=1)
    expect_same_error(subject, check, "hx with layers x directions + 1 rows",
                      Inputs(inputs.x, None, hx))


@cases(grid)
def test_wrong_hx_batch(subject, check):
    if subject.case.unbatched:
        check.not_supported("unbatched input has no batch dimension")
    inputs = subject.inputs()
    for offset in (1, -1):
        hx = state(subject.case, subject.family_def, batch=offset)
        expect_same_error(subject, check, f"hx with batch {offset:+d}",
                          Inputs(inputs.x, None, hx))


@cases(grid)
def test_wrong_hx_features(subject, check):
    inputs = subject.inputs()
    expect_same_error(subject, check, "h_0 with hidden features + 1",
                      Inputs(inputs.x, None, state(subject.case, subject.family_def, features=1)))
    if subject.family_def.has_cell:
        expect_same_error(subject, check, "c_0 with hidden_size + 1 features",
                          Inputs(inputs.x, None,
                                 state(subject.case, subject.family_def, cell_features=1)))


@cases(grid)
def test_hx_rank_differs_from_input(subject, check):
    """Unbatched input with a batched hx, or batched input with an unbatched hx."""
    case = subject.case
    inputs = subject.inputs()
    other = case.with_(batch=1) if case.unbatched else case.with_(batch=None)
    hx = state(other, subject.family_def)
    expect_same_error(subject, check, f"{'batched' if case.unbatched else 'unbatched'} hx",
                      Inputs(inputs.x, None, hx))


@cases(grid)
def test_zero_length_sequence(subject, check):
    case = subject.case
    x = subject.inputs().x
    time_dim = 1 if case.batch_first and not case.unbatched else 0
    empty = x.narrow(time_dim, 0, 0)
    expect_same_error(subject, check, "a sequence of length 0", Inputs(empty))


@cases(grid)
def test_input_of_wrong_rank(subject, check):
    x = subject.inputs().x
    four_d = x.reshape((1,) * (4 - x.dim()) + tuple(x.shape))
    expect_same_error(subject, check, "4-D input", Inputs(four_d))


OP_CASES = [OP_BASE.with_(seq_len=20), OP_BASE.with_(seq_len=30, batch=1, lengths=(10, 0, 20))]


def longer(t, dim: int):
    """t with one more entry along ``dim`` (a copy of its first)."""
    return torch.cat([t, t.narrow(dim, 0, 1)], dim)


def op_refuses(subject, check, what: str, inputs: OpInputs) -> None:
    with torch.no_grad():
        kind = check.raises_like(what, lambda: subject.run_reference(inputs),
                                 lambda: subject.run(inputs), who="the reference loop",
                                 any_type=True)
    check.note(f"{what}: raises {kind}")


@cases(lambda fam: OP_CASES, kind="op")
def test_op_key_dim_differs_from_q(subject, check):
    inputs = subject.inputs()
    op_refuses(subject, check, "k with K + 1 features (q has K)",
               dataclasses.replace(inputs, k=longer(inputs.k, -1)))


@cases(lambda fam: OP_CASES, kind="op")
def test_op_value_steps_differ(subject, check):
    inputs = subject.inputs()
    op_refuses(subject, check, "v with T - 1 steps",
               dataclasses.replace(inputs, v=inputs.v[:, :-1]))


@cases(lambda fam: OP_CASES, kind="op")
def test_op_gate_one_step_too_long(subject, check):
    inputs = subject.inputs()
    for n, name in enumerate(subject.family_def.gates):
        gates = list(inputs.gates)
        gates[n] = longer(gates[n], 1)
        op_refuses(subject, check, f"{name} with T + 1 steps",
                   dataclasses.replace(inputs, gates=tuple(gates)))


@cases(lambda fam: OP_CASES, kind="op")
def test_op_initial_state_one_row_too_many(subject, check):
    inputs = subject.inputs()
    state = tuple(longer(part, 0) for part in inputs.initial_state)
    op_refuses(subject, check, "initial_state with N + 1 rows",
               dataclasses.replace(inputs, initial_state=state))


@cases(lambda fam: OP_CASES[1:], kind="op")
def test_op_cu_seqlens_with_two_batch_rows(subject, check):
    inputs = subject.inputs()
    doubled = inputs.rebuilt([*(torch.cat([t, t]) for t in (inputs.q, inputs.k, inputs.v,
                                                             *inputs.gates)),
                              *inputs.initial_state])
    op_refuses(subject, check, "cu_seqlens with B = 2", doubled)


@cases(lambda fam: OP_CASES[1:], kind="op")
def test_op_cu_seqlens_invalid(subject, check):
    """Offsets that do not run from 0 to T without going back (the last short of T, one
    decreasing, the first not 0) are refused, as the reference refuses them, not answered with
    steps left out (zeros in o where no sequence covers them) or read twice."""
    inputs = subject.inputs()
    steps = inputs.q.shape[1]
    for what, offsets in ((f"cu_seqlens ending at T - 2 = {steps - 2}", [0, 10, 10, steps - 2]),
                          ("cu_seqlens going back", [0, 10, 5, steps]),
                          ("cu_seqlens starting at 2", [2, 10, 10, steps])):
        bad = torch.tensor(offsets, dtype=inputs.cu_seqlens.dtype,
                           device=inputs.cu_seqlens.device)
        op_refuses(subject, check, what, dataclasses.replace(inputs, cu_seqlens=bad))
