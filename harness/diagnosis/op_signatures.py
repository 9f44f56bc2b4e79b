"""Bug signatures of matrix-state ops: the mistakes their users report (fla, mamba and
mlstm_kernels issues), each written as what an op making that mistake returns — the family's
reference loop with one step done the wrong way, or its inputs or outputs changed.

Every op family gets the generic ones (the initial state ignored, the state carried across
the sequences of ``cu_seqlens``, q left unscaled, the scale on k or from V, the state laid out
(N, H, V, K), every sequence from the first state row, an empty sequence's state zeroed); a
family adds its own through ``OpFamily.signatures`` (a callable returning them, or a
"module:function" path), as the built-in families do (harness.diagnosis.op_steps). A
signature's ``run(inputs, case)`` returns the OpOutputs the mistaken op would return on those
inputs.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from harness.core.op_case import OpCase
from harness.core.op_subject import OpInputs, OpOutputs, call_op

CHUNKS = (16, 32, 64)  # chunk sizes tried for a chunk mistake when the case sets none


def always(case: OpCase) -> bool:
    return True


@dataclass(frozen=True)
class OpSignature:
    """One known mistake of an op.

    name: a short id ("decay-after-delta-error"); says: completes "output equals <reference>
    with ..."; hint: where to look; run: (inputs, case) -> what the mistaken op returns;
    applies: the cases where the mistake can show."""

    name: str
    says: str
    hint: str
    run: Callable[[OpInputs, OpCase], OpOutputs]
    applies: Callable[[OpCase], bool] = always


def of(family) -> list[OpSignature]:
    """Every signature tried for an op ``family``: the generic ones, then its own."""
    declared = family.signatures
    if isinstance(declared, str):
        module, _, name = declared.partition(":")
        declared = getattr(importlib.import_module(module), name)
    return generic(family) + list(declared() if declared is not None else ())


def chunk_sizes(case: OpCase) -> tuple[int, ...]:
    return (case.chunk_size,) if case.chunk_size else CHUNKS


# The generic signatures -------------------------------------------------------------------


def generic(family) -> list[OpSignature]:
    reference = family.reference

    def without_state(inputs: OpInputs, case: OpCase) -> OpOutputs:
        return call_op(reference, replace(inputs, initial_state=None), family)

    def unscaled(inputs: OpInputs, case: OpCase) -> OpOutputs:
        return call_op(reference, replace(inputs, scale=1.0), family)

    def default_scale(inputs: OpInputs, case: OpCase) -> OpOutputs:
        return call_op(reference, replace(inputs, scale=None), family)

    def leaking(inputs: OpInputs, case: OpCase) -> OpOutputs:
        """The sequences run one after another, each from where the previous one ended."""
        bounds = [int(x) for x in inputs.cu_seqlens.tolist()]
        state = None if inputs.initial_state is None else tuple(
            s[:1] for s in inputs.initial_state)
        outputs, finals = [], []
        for start, stop in itertools.pairwise(bounds):
            part = OpInputs(*(t[:, start:stop] for t in (inputs.q, inputs.k, inputs.v)),
                            tuple(g[:, start:stop] for g in inputs.gates), state, None,
                            inputs.scale)
            out = call_op(reference, part, family)
            outputs.append(out.o)
            finals.append(out.state)
            state = out.state
        o = torch.cat(outputs, 1)
        return OpOutputs(o, tuple(torch.cat(parts, 0) for parts in zip(*finals)), family.state)

    def keys_scaled(inputs: OpInputs, case: OpCase) -> OpOutputs:
        """scale applied to k instead of q: the same o, a state scale times too large."""
        scale = inputs.q.shape[-1] ** -0.5 if inputs.scale is None else inputs.scale
        return call_op(reference, replace(inputs, k=inputs.k * scale, scale=1.0), family)

    def value_dim_scale(inputs: OpInputs, case: OpCase) -> OpOutputs:
        return call_op(reference, replace(inputs, scale=inputs.v.shape[-1] ** -0.5), family)

    def transposed_state(inputs: OpInputs, case: OpCase) -> OpOutputs:
        """The state kept as (N, H, V, K): read and returned with K and V swapped."""
        def flip(state):
            return tuple(s.mT if s.dim() == 4 else s for s in state)

        start = None if inputs.initial_state is None else flip(inputs.initial_state)
        out = call_op(reference, replace(inputs, initial_state=start), family)
        return replace(out, state=flip(out.state))

    def first_row_for_all(inputs: OpInputs, case: OpCase) -> OpOutputs:
        state = tuple(s[:1].expand_as(s) for s in inputs.initial_state)
        return call_op(reference, replace(inputs, initial_state=state), family)

    def in_float32(inputs: OpInputs, case: OpCase) -> OpOutputs:
        """A float64 call computed in float32 and cast back (o and the state)."""
        out = call_op(reference, inputs.to(dtype=torch.float32), family)
        return replace(out, o=out.o.double(),
                       state=None if out.state is None else tuple(s.double() for s in out.state))

    def empty_ends_at_zero(inputs: OpInputs, case: OpCase) -> OpOutputs:
        """An empty sequence's final state zero, not the initial state it was given."""
        out = call_op(reference, inputs, family)
        empty = inputs.cu_seqlens.diff() == 0  # (N,)
        return replace(out, state=tuple(
            s.masked_fill(empty.view(-1, *[1] * (s.dim() - 1)), 0.0) for s in out.state))

    return [
        OpSignature("initial-state-ignored", "the initial state ignored (every sequence from "
                    "zero)", "check that initial_state reaches the first step (and the first "
                    "chunk) and is not replaced by zeros", without_state,
                    applies=lambda case: case.with_state),
        OpSignature("state-across-sequences", "the state carried across the sequences of "
                    "cu_seqlens", "each sequence must start from its own initial state (or "
                    "zero): reset the state at every offset of cu_seqlens",
                    leaking, applies=lambda case: case.lengths is not None
                    and len(case.lengths) > 1),
        OpSignature("scale-missing", "q not multiplied by scale (K^-1/2 by default)",
                    "apply scale to q (or to the scores) once", unscaled,
                    applies=lambda case: case.scale != 1),
        OpSignature("scale-ignored", "the scale argument ignored (K^-1/2 used whatever it "
                    "is)", "use the scale the caller passes; K^-1/2 only when it is None",
                    default_scale, applies=lambda case: case.scale is not None),
        OpSignature("scale-on-keys", "scale applied to k instead of q (o the same, the "
                    "state scale times too large)", "scale multiplies q (or the scores), "
                    "never k: the state is the sum of k_t v_t^T of the keys as given",
                    keys_scaled, applies=lambda case: case.scale != 1 and case.final_state),
        OpSignature("scale-from-value-dim", "the default scale taken from the value "
                    "dimension (V^-1/2 instead of K^-1/2)", "scale defaults to "
                    "q.shape[-1] ** -0.5, the key dimension", value_dim_scale,
                    applies=lambda case: case.scale is None
                    and case.key_dim != case.value_dim),
        OpSignature("state-as-v-by-k", "the state read and returned as (N, H, V, K), K and V "
                    "swapped (Mamba-2's ssm_state layout)", "this convention's state is "
                    "[N, H, K, V]: S_t = S_(t-1) + k_t v_t^T; transpose at the boundary when "
                    "the kernel keeps it [N, H, V, K]", transposed_state,
                    applies=lambda case: case.key_dim == case.value_dim and (
                        case.with_state or case.final_state)),
        OpSignature("first-initial-state-for-every-sequence", "every sequence of cu_seqlens "
                    "started from the initial state's first row", "sequence n starts from "
                    "initial_state[n]: index the state by the sequence, not the batch row "
                    "(B is 1 with cu_seqlens)", first_row_for_all,
                    applies=lambda case: case.lengths is not None and len(case.lengths) > 1
                    and case.with_state),
        OpSignature("computes-in-float32", "the computation in float32 (cast back to "
                    "float64)", "a float64 call should be computed in float64: check for "
                    "float32 casts, constants or buffers (a kernel's accumulator dtype)",
                    in_float32, applies=lambda case: case.dtype == "float64"),
        OpSignature("empty-sequence-state-zeroed", "an empty sequence's final state returned "
                    "as zeros instead of its initial state", "a sequence of length 0 ends in "
                    "the state it started from: copy initial_state[n] through (a kernel that "
                    "skips empty sequences must still write their final state)",
                    empty_ends_at_zero, applies=lambda case: case.lengths is not None
                    and 0 in case.lengths and case.with_state and case.final_state),
    ]


# Building signatures from a family's driver and a mistaken core ---------------------------


def from_core(family, call: Callable, core: Callable) -> Callable[[OpInputs, OpCase],
                                                                   OpOutputs]:
    """run(inputs, case) of the op ``call(core, q, k, v, *gates, ...)``: the family's driver
    (variable lengths, states, scale) around a mistaken core."""

    def run(inputs: OpInputs, case: OpCase) -> OpOutputs:
        return call_op(functools.partial(call, core), inputs, family)

    return run


def per_chunk(core: Callable, size: int, at_end: Callable) -> Callable:
    """A core that runs ``core`` chunk by chunk (chunks of ``size`` steps, the tail shorter)
    and lets ``at_end(state_in, state_out, gates_of_chunk) -> state`` change each chunk's
    outgoing state (a mistake in how chunks are carried)."""

    def chunked(q, k, v, gates, state, scale, chunk_size):
        outputs = []
        for start in range(0, q.shape[1], size):
            part = slice(start, start + size)
            chunk_gates = tuple(g[:, part] for g in gates)
            o, out = core(q[:, part], k[:, part], v[:, part], chunk_gates, state, scale,
                          chunk_size)
            outputs.append(o)
            state = at_end(state, out, chunk_gates)
        return (torch.cat(outputs, 1) if outputs else v.new_zeros(v.shape)), state

    return chunked


def overflow_rows(g: Tensor, size: int) -> Tensor:
    """(B, T, H) True where a chunked form that exponentiates e^(b_t - b_j) before masking
    overflows: some later step j of t's chunk has b_t - b_j above the dtype's log max."""
    limit = math.log(torch.finfo(g.dtype).max)
    rows = torch.zeros_like(g, dtype=torch.bool)
    for start in range(0, g.shape[1], size):
        b = g[:, start:start + size].cumsum(1)  # (B, c, H)
        gaps = b.unsqueeze(2) - b.unsqueeze(1)  # (B, t, j, H): b_t - b_j
        later = torch.ones(b.shape[1], b.shape[1], dtype=torch.bool).triu(1)  # j > t
        rows[:, start:start + size] = ((gaps > limit) & later[None, :, :, None]).any(2)
    return rows
