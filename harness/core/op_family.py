"""A family of ops: the maths a matrix-state op must reproduce, as a plug-in beside the module
families.

An OpFamily names its reference (the sequential loop, with fla's signature), its gates, what
its state is (the parts, and how two states are compared: mLSTM's are rescaled to the
reference's stabiliser before they are), how its inputs are drawn for a case (and under each gate
stress), its tolerances, FLOP formula per form, and its thin layer for the training tasks. It is
published in the same ``seq_harness.families`` entry-point group as the module families, and the
registry, records and report take its entries like any other: a family's ``kind`` says which
kind of subject it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from harness.core.families import DEFAULT_TOLERANCES
from harness.core.op_case import OpCase

FORMS = ("recurrent", "chunk", "parallel")
Drawn = tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]  # q, k, v, gates (float64)


def frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class OpFamily:
    """One matrix-state family (see the module docstring).

    name: the id in registry entries, records and reports.
    reference: the sequential loop, an op with fla's signature.
    gates: the names of the gate arguments after q, k, v, in order ("g"; "g", "beta"; "i", "f").
    state: the names of the state's parts ("S"; "C", "n", "m"), each with a leading row per
        sequence.
    draw: (case, generator) -> q, k, v and the gates, float64, as the case's stress says.
    draw_state: (case, generator) -> the initial state's parts, float64.
    stresses: stress name -> what it draws, for the extremes suite (the family's gate stresses).
    comparable: (state, reference state) -> the state as it is compared with the reference's
        (mLSTM: C and n rescaled to the reference's stabiliser); None: compared as returned.
    flop_formula: (case, phase, form) -> FLOPs of one call (the matrix products).
    layer: how the thin model layer around an op (harness.ops.layer) makes its gates, for the
        training tasks.
    signatures: the family's own bug signatures (harness.diagnosis.op_signatures.OpSignature),
        tried after the generic ones when a check fails: a callable returning them, or a
        "module:function" path to one.
    tolerances, not_applicable, order, description, baseline, reference_label: as a module
        Family's.
    """

    name: str
    reference: Callable[..., Any]
    gates: tuple[str, ...]
    state: tuple[str, ...]
    draw: Callable[[OpCase, torch.Generator], Drawn]
    draw_state: Callable[[OpCase, torch.Generator], tuple[Tensor, ...]]
    stresses: Mapping[str, str] = field(default_factory=dict)
    comparable: Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, ...]] | None = None
    flop_formula: Callable[[OpCase, str, str], int] | None = None
    layer: Any = None
    tolerances: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_TOLERANCES))
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    order: int = 200
    description: str = ""
    baseline: str = ""
    reference_label: str = ""
    device_modules: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    signatures: str | Callable[[], Any] | None = None

    kind = "op"

    def __post_init__(self) -> None:
        for name in ("stresses", "not_applicable", "device_modules"):
            object.__setattr__(self, name, frozen(getattr(self, name)))
        object.__setattr__(self, "tolerances",
                           frozen({**DEFAULT_TOLERANCES, **dict(self.tolerances)}))
        if not self.baseline:
            object.__setattr__(self, "baseline", f"{self.name.replace('_', '-')}-recurrent")
        if not self.reference_label:
            object.__setattr__(self, "reference_label", f"the {self.name} reference loop")

    def adapt(self, case: OpCase) -> OpCase:
        return case

    def why_not(self, case: OpCase) -> str | None:
        if not isinstance(case, OpCase):
            return f"not supported: family {self.name} checks ops, not modules"
        if case.stress and case.stress not in self.stresses:
            return f"not supported: stress {case.stress!r} (family {self.name} has none)"
        return None

    def suite_applies(self, suite: str) -> str | None:
        why = self.not_applicable.get(suite)
        return None if why is None else f"not supported: {why} (family {self.name})"

    def tolerance(self, dtype: str) -> tuple[float, float]:
        return self.tolerances.get(dtype, DEFAULT_TOLERANCES["float32"])

    def refuses_eval_backward(self, device: str) -> bool:
        return False  # an op has no modes

    def flops(self, case: OpCase, phase: str, form: str = "chunk") -> int:
        return 0 if self.flop_formula is None else self.flop_formula(case, phase, form)

    def compared(self, state: tuple[Tensor, ...], reference: tuple[Tensor, ...]
                 ) -> tuple[Tensor, ...]:
        """The state as it is compared with the reference's."""
        return state if self.comparable is None else self.comparable(state, reference)
