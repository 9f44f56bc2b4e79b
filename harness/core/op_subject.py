"""An op under test paired with its family's reference loop, for one OpCase: the op counterpart
of harness.core.subject.Subject.

It draws the case's inputs (from the case's own seed, in float64, then cast), calls the op
through the contract — only the keywords the case uses, the result checked to be ``(o,
final_state)`` with the family's state parts — and runs the reference on the CPU, whose outputs
carry their twin in another precision (the case's rounding: harness.conformance.rounding).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from harness.core.contract import ContractError, Twin, describe
from harness.core.op_case import OpCase
from harness.core.op_family import OpFamily
from harness.core.spec import ImplSpec
from harness.core.twins import NEARBY, TwinKey, builder_name, digest, nudged, shared

OTHER = {"float64": "float32"}  # the twin's precision: float64, or float32 for a float64 case


@dataclass(frozen=True)
class OpInputs:
    """What an op is called with: q, k, v, the gates (in the family's order), the initial state
    (its parts) or None, cu_seqlens or None, and scale (None: not passed, the op's default)."""

    q: Tensor
    k: Tensor
    v: Tensor
    gates: tuple[Tensor, ...]
    initial_state: tuple[Tensor, ...] | None = None
    cu_seqlens: Tensor | None = None
    scale: float | None = None

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.q, self.k, self.v, *self.gates, *(self.initial_state or ()))

    def rebuilt(self, tensors) -> OpInputs:
        """The same call with ``tensors`` (in ``tensors()`` order) in place of these."""
        tensors = tuple(tensors)
        count = 3 + len(self.gates)
        state = tensors[count:] if self.initial_state is not None else None
        return OpInputs(*tensors[:3], tuple(tensors[3:count]), state, self.cu_seqlens,
                        self.scale)

    def to(self, device=None, dtype=None) -> OpInputs:
        """On ``device``, in ``dtype``: q, k, v and the gates in it, the initial state in
        float64 for float64 and float32 otherwise (fla's convention: a bfloat16 layer keeps a
        float32 state)."""
        count = 3 + len(self.gates)
        state = None if dtype is None else torch.float64 if dtype == torch.float64 \
            else torch.float32
        return self.rebuilt(t.to(device=device, dtype=dtype if n < count else state)
                            for n, t in enumerate(self.tensors()))

    def strided(self) -> OpInputs:
        """The same values laid out as an attention layer leaves them: q, k, v and the gates as
        transposed views of head-first ([B, H, T, ...]) tensors, the state stored [N, H, V, K]
        (non-contiguous, same values)."""
        return self.rebuilt([*(t.transpose(1, 2).contiguous().transpose(1, 2)
                               for t in (self.q, self.k, self.v, *self.gates)),
                             *(s.mT.contiguous().mT if s.dim() >= 2 else s
                               for s in self.initial_state or ())])

    def leaves(self) -> OpInputs:
        """Copies that require grad (for gradients)."""
        return self.rebuilt(t.detach().clone().requires_grad_(True) for t in self.tensors())


@dataclass(frozen=True)
class OpOutputs:
    """What an op returned: o (B, T, H, V) and the final state's parts (None when not asked)."""

    o: Tensor
    state: tuple[Tensor, ...] | None
    names: tuple[str, ...]
    twin: Callable[[], Twin] | None = field(default=None, compare=False, repr=False)

    def named(self) -> dict[str, Tensor]:
        named = {"o": self.o}
        if self.state is not None:
            named.update(zip(self.names, self.state))
        return named

    def detach(self) -> OpOutputs:
        state = None if self.state is None else tuple(s.detach() for s in self.state)
        return OpOutputs(self.o.detach(), state, self.names, self.twin)


def call_op(fn: Callable, inputs: OpInputs, family: OpFamily, *, final: bool = True,
            chunk_size: int | None = None) -> OpOutputs:
    """fn(q, k, v, *gates, ...) with the keywords the call uses; ContractError when what it
    returns is not (o, final_state) with the family's state parts."""
    kwargs = {"output_final_state": final}
    if inputs.initial_state is not None:
        state = inputs.initial_state
        kwargs["initial_state"] = state if len(state) > 1 else state[0]
    if inputs.cu_seqlens is not None:
        kwargs["cu_seqlens"] = inputs.cu_seqlens
    if chunk_size is not None:
        kwargs["chunk_size"] = chunk_size
    if inputs.scale is not None:
        kwargs["scale"] = inputs.scale
    result = fn(inputs.q, inputs.k, inputs.v, *inputs.gates, **kwargs)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ContractError(f"the op returned {describe(result)}; expected a pair (o, "
                            "final_state)")
    o, state = result
    if not isinstance(o, Tensor):
        raise ContractError(f"o is a {type(o).__name__}; expected a Tensor")
    parts = None
    if final:
        parts = tuple(state) if isinstance(state, (tuple, list)) else (state,)
        if len(parts) != len(family.state) or not all(isinstance(p, Tensor) for p in parts):
            raise ContractError(f"final_state is {describe(state)}; expected "
                                f"{len(family.state)} tensor(s): {', '.join(family.state)}")
    elif state is not None:
        raise ContractError("final_state is not None although output_final_state=False")
    return OpOutputs(o, parts, family.state)


@dataclass(frozen=True)
class OpSubject:
    """The op ``spec`` and its family's reference loop, for ``case``."""

    spec: ImplSpec
    case: OpCase

    @property
    def family_def(self) -> OpFamily:
        return self.spec.family_def

    def inputs(self, *, salt: int = 0) -> OpInputs:
        """The case's inputs, drawn in float64 from its seed, in its dtype and on its device."""
        case, family = self.case, self.family_def
        generator = torch.Generator().manual_seed(case.data_seed + 7919 * (salt + 1))
        q, k, v, gates = family.draw(case, generator)
        if case.lengths is not None:  # the sequences concatenated along T, batch 1
            q, k, v = (t[:1] for t in (q, k, v))
            gates = tuple(g[:1] for g in gates)
        state = family.draw_state(case, generator) if case.with_state else None
        drawn = OpInputs(q, k, v, gates, state, case.cu_seqlens, case.scale)
        return drawn.to(torch.device(case.device), case.torch_dtype)

    @property
    def final(self) -> bool:
        """Whether calls ask for the final state: where the op claims one and the case asks."""
        return bool(self.spec.capabilities.final_state) and self.case.final_state

    def run(self, inputs: OpInputs, *, final: bool | None = None,
            chunk_size: int | None = None) -> OpOutputs:
        """The op's outputs; the final state as ``final`` says (default: ``self.final``)."""
        return call_op(self.spec.factory, inputs, self.family_def,
                       final=self.final if final is None else final,
                       chunk_size=self.case.chunk_size if chunk_size is None else chunk_size)

    def run_reference(self, inputs: OpInputs, *, final: bool = True) -> OpOutputs:
        """The reference loop's outputs on the CPU, with their twin in another precision."""
        inputs = inputs.to("cpu")
        out = call_op(self.family_def.reference, inputs, self.family_def, final=final)
        # computed on demand, maybe after the op wrote into these tensors: from their values now
        inputs = inputs.rebuilt(t.detach().clone() for t in inputs.tensors())
        compute = functools.partial(self._twin, inputs, final)
        family = self.family_def

        def twin() -> Twin:  # shared by every op of the family asking for the same one
            content = digest([*((f"t{n}", t) for n, t in enumerate(inputs.tensors())),
                              ("cu_seqlens", inputs.cu_seqlens)])
            return shared(TwinKey((family.name, builder_name(family.reference), str(final),
                                   str(inputs.scale)), self.case, False, content, compute))

        return replace(out, twin=functools.cache(twin))

    def comparable(self, got: OpOutputs, want: OpOutputs) -> OpOutputs:
        """The op's outputs as they are compared with the reference's (mLSTM's state rescaled
        to the reference's stabiliser)."""
        if got.state is None or want.state is None:
            return got
        state = self.family_def.compared(got.state, tuple(s.to(got.o.device) for s in want.state))
        return replace(got, state=state)

    def _twin(self, inputs: OpInputs, final: bool) -> Twin:
        """The reference in the other precision at the case's point, and the pair (case dtype,
        other precision) at NEARBY nudged points."""
        case, family = self.case, self.family_def
        other = getattr(torch, OTHER.get(case.dtype, "float64"))

        def run_in(dtype, point: OpInputs) -> OpOutputs:
            with torch.no_grad():
                return call_op(family.reference, point.to(dtype=dtype), family,
                               final=final).detach()

        nearby = []
        for k in range(NEARBY):
            generator = torch.Generator().manual_seed(case.data_seed + 104729 * (k + 1))
            point = inputs.rebuilt(nudged(t, generator) for t in inputs.tensors())
            nearby.append((run_in(case.torch_dtype, point), run_in(other, point)))
        return Twin(run_in(other, inputs), tuple(nearby))
