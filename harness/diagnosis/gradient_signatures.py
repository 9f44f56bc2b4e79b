"""Bug signatures of the backward pass: mistakes whose forward pass is right and whose gradients
are not, each written as the reference run so that its gradients make the same mistake.

They are tried where a check of gradients failed and the forward pass agrees (``backward-only``,
harness.diagnosis.diagnose), on the gradients harness.diagnosis.backward compares: a signature
matches where the implementation's gradients equal the mistaken reference's within the
diagnosis' bound, and the plain reference's do not.

- ``truncated-backprop`` (modules): the state carried to the next step detached (``h =
  h.detach()`` in the loop, truncated backpropagation through time with one step): the
  reference run one step at a time, the state between steps detached — h_0 keeping its
  gradient into the first step, or (the detach at the top of the loop) not;
- ``state-detached-between-chunks`` (ops): a chunked loop that detaches the state it carries to
  the next chunk: the reference run chunk by chunk, the state between chunks detached;
- ``dq-scale-missing`` (ops): a hand-written backward that forgets ``scale`` in dq (the forward
  applies it): the reference's dq divided by the scale.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.core.case import Case
from harness.core.contract import Capabilities, Inputs, Outputs, call
from harness.core.op_case import OpCase
from harness.core.spec import ImplSpec


@dataclass(frozen=True)
class GradientSignature:
    """One known backward-pass mistake.

    name, says, hint: as a forward signature's (harness.diagnosis.signatures): ``says``
        completes "its gradients equal <reference>'s with ...".
    run: modules: (reference module, inputs, case, has_cell) -> outputs whose gradients make
        the mistake (the same values).
    op: ops: (the family's reference, spec, case) -> an op with fla's signature whose
        gradients make the mistake.
    gradients: ops: (the reference's gradients by name, case) -> the mistaken ones.
    applies: the cases where the mistake can show.
    """

    name: str
    says: str
    hint: str
    run: Callable[[nn.Module, Inputs, Case, bool], Outputs] | None = None
    op: Callable[[Callable, ImplSpec, OpCase], Callable] | None = None
    gradients: Callable[[dict[str, Tensor], OpCase], dict[str, Tensor]] | None = None
    applies: Callable[[Case | OpCase], bool] = lambda case: True


def stepwise_detached(module: nn.Module, inputs: Inputs, case: Case, has_cell: bool, *,
                      initial: bool = False) -> Outputs:
    """The module one time step at a time, the state it carries to the next step detached
    (and the initial state too, where ``initial``: ``h = h.detach()`` at the top of the loop)."""
    time_dim = 1 if case.batch_first and not case.unbatched else 0
    step = case.with_(seq_len=1)
    hx, outputs, out = inputs.hx, [], None
    if initial and hx is not None:
        hx = tuple(h.detach() for h in hx) if isinstance(hx, tuple) else hx.detach()
    for t in range(case.seq_len):
        out = call(module, Capabilities(), step, Inputs(inputs.x.narrow(time_dim, t, 1), None,
                                                         hx), has_cell=has_cell)
        outputs.append(out.output)
        hx = (out.h_n.detach(), out.c_n.detach()) if has_cell else out.h_n.detach()
    return Outputs(torch.cat(outputs, time_dim), out.h_n, out.c_n)


def chunk_size_of(spec: ImplSpec, case: OpCase) -> int | None:
    """The chunk size the op runs ``case`` with: the case's, else its keyword's default."""
    if case.chunk_size is not None:
        return case.chunk_size
    parameter = inspect.signature(spec.factory).parameters.get("chunk_size")
    default = None if parameter is None else parameter.default
    return default if isinstance(default, int) and not isinstance(default, bool) else None


def detached_between_chunks(reference: Callable, spec: ImplSpec, case: OpCase) -> Callable:
    """``reference`` run chunk by chunk (the op's chunk size), the state it carries to the next
    chunk detached."""
    size = chunk_size_of(spec, case)

    def op(q, k, v, *gates, initial_state=None, output_final_state=False, **kwargs):
        if size is None:
            raise ValueError("the op has no chunk size")
        pieces, state = [], initial_state
        for start in range(0, q.shape[1], size):
            part = slice(start, start + size)
            if start:
                state = tuple(s.detach() for s in state) if isinstance(state, tuple) \
                    else state.detach()
            o, state = reference(q[:, part], k[:, part], v[:, part],
                                 *(g[:, part] for g in gates), initial_state=state,
                                 output_final_state=True, **kwargs)
            pieces.append(o)
        return torch.cat(pieces, 1), state if output_final_state else None

    return op


def dq_without_scale(found: dict[str, Tensor], case: OpCase) -> dict[str, Tensor]:
    scale = case.key_dim ** -0.5 if case.scale is None else case.scale
    return {**found, "d q": found["d q"] / scale}


TRUNCATED = ("truncated-backprop",
             "the state carried to the next step detached (truncated backpropagation through "
             "one step)",
             "a .detach() (or .data) on h or c inside the time loop cuts every gradient that "
             "should flow back through time: detach only between training batches, never "
             "between steps")


def one_direction(case: Case) -> bool:
    return case.seq_len > 1 and not case.bidirectional and case.lengths is None


MODULE_SIGNATURES = (  # two variants of one mistake: after each step, or at the top of the loop
    GradientSignature(*TRUNCATED, run=stepwise_detached, applies=one_direction),
    GradientSignature(*TRUNCATED, run=functools.partial(stepwise_detached, initial=True),
                      applies=one_direction),
)

OP_SIGNATURES = (
    GradientSignature(
        "state-detached-between-chunks",
        "the state carried to the next chunk detached",
        "a .detach() on the state between chunks (or a backward that drops the gradient into "
        "each chunk's starting state) stops every gradient at a chunk boundary",
        op=detached_between_chunks,
        applies=lambda case: case.lengths is None),
    GradientSignature(
        "dq-scale-missing",
        "dq not multiplied by scale",
        "the forward multiplies q by scale, so the backward's dq must be multiplied by it too",
        gradients=dq_without_scale),
)


def of(case: Case | OpCase) -> tuple[GradientSignature, ...]:
    """The gradient signatures that can apply to ``case``."""
    known = OP_SIGNATURES if isinstance(case, OpCase) else MODULE_SIGNATURES
    return tuple(s for s in known if s.applies(case))
