"""Bug signatures: mistakes people make writing a recurrent layer, each written as a
transformation of the family's reference — of the weights it loads, the inputs it is given, the
outputs it returns, or the step it computes (another module in the reference's place).

An implementation whose outputs equal a transformed reference, where the plain reference's do
not, has most likely made that mistake; the signature says which in one sentence and where to
look. Every module family gets the generic signatures below (initial state, time order,
directions, layers, padding, biases, weight matrices, precision); a family adds its own through
``Family.signatures`` (gate orders come from ``Family.gate_names``; a third-party family declares
its own signatures the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.core.case import Case
from harness.core.contract import Inputs, Outputs

Weights = dict[str, Tensor]
Runner = Callable[[Inputs, Case], Outputs]  # the reference on these inputs, for this case


def always(case: Case) -> bool:
    return True


@dataclass(frozen=True)
class Signature:
    """One known mistake as a transformation of the reference.

    name: a short id, the same in records and reports ("gate-order-igfo").
    says: what the implementation does, completing "output equals <reference> with ..."
        ("gate blocks ordered (i, g, f, o)").
    hint: where to look ("torch's order is (i, f, g, o): check how weight_ih and weight_hh rows
        are split").
    weights: the reference's state_dict, transformed (the mistake in how weights are read).
    inputs: the inputs the reference is given instead (the mistake in how inputs are read).
    outputs: (outputs of the reference on the transformed inputs, the case, the original inputs)
        -> what the implementation returns instead.
    composed: (run, inputs, case) -> what the implementation returns instead, from calls of
        ``run(inputs, case)``, the (transformed) reference on other inputs or a smaller case: a
        mistake in how calls are put together (padding run through, chunks carried wrong).
    reference: builds another module in the reference's place (torch's constructor arguments;
        torch's parameter names), for a mistake inside the step.
    dtype: the reference computes in this dtype, cast back (a precision mistake).
    applies: the cases where the mistake can show (the others skip the signature).
    """

    name: str
    says: str
    hint: str
    weights: Callable[[Weights, Case], Weights] | None = None
    inputs: Callable[[Inputs, Case], Inputs] | None = None
    outputs: Callable[[Outputs, Case, Inputs], Outputs] | None = None
    composed: Callable[[Runner, Inputs, Case], Outputs] | None = None
    reference: Callable[..., torch.nn.Module] | None = None
    dtype: str | None = None
    applies: Callable[[Case], bool] = always


# Layout helpers: the case's layout to time-major (T, B, F) and back --------------------------


def hx_parts(inputs: Inputs) -> tuple[Tensor, ...]:
    """hx as a tuple of its parts ((h_0,) or (h_0, c_0))."""
    hx = inputs.hx
    return hx if isinstance(hx, tuple) else (hx,)


def replace_hx(inputs: Inputs, parts: tuple[Tensor, ...] | None) -> Inputs:
    hx = None if parts is None else parts if len(parts) == 2 else parts[0]
    return Inputs(inputs.x, inputs.lengths, hx)


def to_time_major(x: Tensor, case: Case) -> Tensor:
    if case.unbatched:
        return x.unsqueeze(1)
    return x.transpose(0, 1) if case.batch_first else x


def from_time_major(x: Tensor, case: Case) -> Tensor:
    if case.unbatched:
        return x.squeeze(1)
    return x.transpose(0, 1) if case.batch_first else x


def valid_mask(case: Case, like: Tensor) -> Tensor:
    """(T, B, 1): True at each sequence's valid steps."""
    lengths = torch.tensor(case.effective_lengths, dtype=torch.int64)
    return (torch.arange(case.seq_len).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2).to(
        like.device)


def reversed_in_time(x: Tensor, case: Case) -> Tensor:
    """Every sequence's valid steps in reverse order (padded steps stay where they are);
    x in the case's layout."""
    tm = to_time_major(x, case)  # (T, B, F)
    steps = torch.arange(case.seq_len).unsqueeze(1)  # (T, 1)
    lengths = torch.tensor(case.effective_lengths, dtype=torch.int64).unsqueeze(0)  # (1, B)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (T, B)
    gathered = tm.gather(0, index.unsqueeze(2).expand_as(tm).to(tm.device))
    return from_time_major(gathered, case)


def with_rows(outputs: Outputs, rows: Callable[[Tensor], Tensor]) -> Outputs:
    """The outputs with h_n (and c_n) rearranged by ``rows`` along the first dimension."""
    c_n = None if outputs.c_n is None else rows(outputs.c_n)
    return Outputs(outputs.output, rows(outputs.h_n), c_n)
