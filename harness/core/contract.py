"""torch's forward contract, enforced: how an implementation is called and what it must return.

Every suite calls implementations through ``call``, so an implementation is driven the same way
everywhere: padded input for fixed-length batches; a PackedSequence (or padded input plus
``lengths=``, for entries that pack internally) for variable-length ones. Whatever it returns is
checked against the contract and normalised to padded Outputs, zeros at padded steps, so that
suites compare like with like. A result of the wrong type is a ContractError, a failed check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from harness.core.case import Case
from harness.core.spec import Capabilities

Hidden = Tensor | tuple[Tensor, Tensor]


class ContractError(TypeError):
    """An implementation returned something torch's contract does not allow."""


@dataclass(frozen=True)
class Inputs:
    """What is fed to an implementation for one case.

    x: padded input, (T, B, I), or (B, T, I) batch-first, or (T, I) unbatched.
    lengths: (B,) int64 on the CPU, valid steps per sequence; None for a fixed-length batch.
    hx: initial state, h_0 or (h_0, c_0), each (L*D, B, features); None for zeros.
    """

    x: Tensor
    lengths: Tensor | None = None
    hx: Hidden | None = None

    def detach(self) -> Inputs:
        """The same values, cut from any autograd graph (what an inference-only class gets)."""
        hx = self.hx
        hx = (None if hx is None else tuple(h.detach() for h in hx) if isinstance(hx, tuple)
              else hx.detach())
        return Inputs(self.x.detach(), self.lengths, hx)

    def copy(self) -> Inputs:
        """The same values in tensors of their own: kept as they are now, whatever a later call
        writes into the caller's tensors."""
        hx = self.hx
        hx = (None if hx is None else tuple(h.detach().clone() for h in hx)
              if isinstance(hx, tuple) else hx.detach().clone())
        return Inputs(self.x.detach().clone(), self.lengths, hx)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> Inputs:
        """The same inputs on ``device`` and/or in ``dtype`` (lengths stay int64 on the CPU)."""
        hx = self.hx
        if isinstance(hx, tuple):
            hx = tuple(h.to(device=device, dtype=dtype) for h in hx)
        elif hx is not None:
            hx = hx.to(device=device, dtype=dtype)
        return Inputs(self.x.to(device=device, dtype=dtype), self.lengths, hx)


@dataclass(frozen=True)
class Outputs:
    """What an implementation returned, normalised.

    output: padded, in the input's layout, zeros at padded steps; (T, B, D*h_out) by default.
    h_n: (L*D, B, h_out), never batch-first, rows layer-major; (L*D, h_out) when unbatched.
    c_n: LSTM's cell state (L*D, B, hidden_size); None for the other families.
    twin: for the reference's outputs, the same reference in another precision, computed on
        demand (Twin): how far the answer moves under rounding alone
        (harness.conformance.rounding).
    """

    output: Tensor
    h_n: Tensor
    c_n: Tensor | None = None
    twin: Callable[[], Twin] | None = field(default=None, compare=False, repr=False)

    def named(self) -> dict[str, Tensor]:
        named = {"output": self.output, "h_n": self.h_n}
        if self.c_n is not None:
            named["c_n"] = self.c_n
        return named

    def detach(self) -> Outputs:
        c_n = None if self.c_n is None else self.c_n.detach()
        return Outputs(self.output.detach(), self.h_n.detach(), c_n, self.twin)

    @property
    def state(self) -> Hidden:
        """The final state in the form forward takes as hx."""
        return self.h_n if self.c_n is None else (self.h_n, self.c_n)


@dataclass(frozen=True)
class Twin:
    """The reference's outputs in another precision (float64 for a float32 case, float32 for a
    float64 one): the float64 answer, and samples of how far rounding moves it.

    outputs: the same reference on the same inputs and weights in the other precision.
    nearby: (the case's dtype, the other precision) outputs of the reference at points a few
        float32 units away (inputs and weights nudged): further samples of the rounding, each
        against its own twin, so the case's rounding is not judged on one lucky sample.
    """

    outputs: Outputs
    nearby: tuple[tuple[Outputs, Outputs], ...] = ()

    def pairs(self, name: str, expected: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every (case's dtype, other precision) pair of the tensor ``name``: the reference's
        ``expected`` with its twin, then the nearby samples."""
        return [(expected, self.outputs.named()[name]),
                *((low.named()[name], high.named()[name]) for low, high in self.nearby)]


def call(
    module: nn.Module, capabilities: Capabilities, case: Case, inputs: Inputs, *, has_cell: bool
) -> Outputs:
    """Run ``module`` on ``inputs`` as the contract says and normalise what it returns."""
    x, lengths, hx = inputs.x, inputs.lengths, inputs.hx
    args = (x,) if hx is None else (x, hx)
    time_dim = 1 if case.batch_first else 0
    # An empty sequence cannot be packed: it goes as padded input plus lengths= (an
    # implementation claims that with zero_length).
    by_keyword = capabilities.lengths or (
        capabilities.zero_length and lengths is not None and bool((lengths == 0).any()))
    if by_keyword and not case.unbatched:
        if lengths is None:
            lengths = torch.full((x.size(1 - time_dim),), x.size(time_dim), dtype=torch.int64)
        result = module(*args, lengths=lengths)
    elif lengths is not None:
        # Packed as a user packs: lengths already longest first with torch's default
        # (enforce_sorted=True: the PackedSequence has no sorted_indices), any other order with
        # enforce_sorted=False.
        ordered = bool((lengths[:-1] >= lengths[1:]).all())
        packed = pack_padded_sequence(
            x, lengths, batch_first=case.batch_first, enforce_sorted=ordered
        )
        result = module(packed) if hx is None else module(packed, hx)
    else:
        result = module(*args)
    output, h_n, c_n = split_result(result, has_cell=has_cell)
    if lengths is not None and not by_keyword:
        if not isinstance(output, PackedSequence):
            raise ContractError(
                f"given a PackedSequence, the implementation returned a {type(output).__name__} "
                "output; torch's contract returns a PackedSequence"
            )
        output, _ = pad_packed_sequence(
            output, batch_first=case.batch_first, total_length=x.size(time_dim)
        )
    elif not isinstance(output, Tensor):
        raise ContractError(f"output is a {type(output).__name__}; expected a Tensor")
    return Outputs(output, h_n, c_n)


def split_result(result: object, *, has_cell: bool) -> tuple[object, Tensor, Tensor | None]:
    """(output, h_n, c_n) from ``output, h_n`` or ``output, (h_n, c_n)``; ContractError if not."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ContractError(
            f"forward returned {describe(result)}; expected a pair (output, "
            + ("(h_n, c_n))" if has_cell else "h_n)")
        )
    output, state = result
    if has_cell:
        if not (isinstance(state, (tuple, list)) and len(state) == 2
                and all(isinstance(s, Tensor) for s in state)):
            raise ContractError(f"the state is {describe(state)}; expected a pair (h_n, c_n)")
        return output, state[0], state[1]
    if not isinstance(state, Tensor):
        raise ContractError(f"the state is {describe(state)}; expected the tensor h_n")
    return output, state, None


def describe(value: object) -> str:
    if isinstance(value, (tuple, list)):
        inner = ", ".join(type(v).__name__ for v in value[:4])
        return f"a {type(value).__name__} of {len(value)} ({inner})"
    return f"a {type(value).__name__}"
