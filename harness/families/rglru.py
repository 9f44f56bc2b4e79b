"""RG-LRU, the Real-Gated Linear Recurrent Unit of Griffin (De et al. 2024): a diagonal linear
recurrence whose decay is gated by the input. Every layer's input size equals its hidden size.

    r = σ(W_a x + b_a),  i = σ(W_x x + b_x),  log a_t = -8 · r ⊙ softplus(-Λ),
    h_t = a_t ⊙ h_{t-1} + sqrt(1 - a_t²) ⊙ (i ⊙ x_t)

weight_ih stacks [W_a; W_x] (2H x H), bias_ih likewise; Λ = weight_hh (H,). sqrt(1 - a²) is
computed as sqrt(-expm1(2 log a)), exact near a = 1. A layer's input is its hidden size wide, so
a stack of bidirectional layers (whose inputs are 2H wide) cannot be expressed. Its reference is
the plain sequential loop below.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.case import Case
from harness.core.families import Family
from harness.core.layer import NamedParameters, State


def log_decay(r_pre: Tensor, lam: Tensor) -> Tensor:
    """log a = -8 σ(r_pre) softplus(-Λ)."""
    return -8.0 * torch.sigmoid(r_pre) * F.softplus(-lam)


def input_scale(log_a: Tensor) -> Tensor:
    """sqrt(1 - a²) from log a, exact near a = 1."""
    return torch.sqrt(-torch.expm1(2.0 * log_a))


def griffin_decays(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """The weights with Λ as Griffin initialises it: a^8 = σ(Λ)^8 spread over [0.9, 0.999]
    (each drawn Λ's rank within its layer's range kept). Decays within 1e-3 of 1, where
    softplus(-Λ) = log(1 + e^-Λ) with e^-Λ down to 1e-4 must not be summed as written."""
    found = dict(weights)
    for name, value in weights.items():
        if name.startswith("weight_hh"):
            drawn = value.double()
            spread = drawn.max() - drawn.min()
            share = (drawn - drawn.min()) / spread if spread > 0 else torch.full_like(drawn, 0.5)
            root = (0.9 + 0.099 * share) ** (1 / 8)  # σ(Λ)
            found[name] = torch.logit(root).to(value.dtype)
    return found


class RGLRULoop(NamedParameters):
    """The RG-LRU reference: the recurrence one step at a time, exactly as written (a and the
    input term, which read x alone, for every step first: h' = a h + sqrt(1 - a²) (i x) is the
    same arithmetic)."""

    mode: ClassVar[str] = "RG-LRU"
    gates: ClassVar[int] = 2
    recurrence: ClassVar[str] = "diagonal"

    def drive(self, slot: int, x: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights(slot)
        r_pre, i_pre = F.linear(x, w["ih"], w["b_ih"]).chunk(2, dim=-1)  # (..., H) each
        log_a = log_decay(r_pre, w["hh"])
        return log_a.exp(), input_scale(log_a) * (torch.sigmoid(i_pre) * x)

    def recur(self, slot: int, driven: tuple[Tensor, ...], state: State) -> State:
        a, written = driven
        (h,) = state
        return (a * h + written,)


class RGLRUFamily(Family):
    """RG-LRU's cases: square layers, so no bidirectional stack."""

    def why_not(self, case: Case) -> str | None:
        if case.bidirectional and case.num_layers > 1:
            return ("not supported: bidirectional with num_layers > 1 (family rglru's layer "
                    "inputs must be hidden_size wide, not 2 x hidden_size)")
        return super().why_not(case)


RGLRU = RGLRUFamily(
    "rglru", RGLRULoop, gates=2, recurrence="diagonal", square=True, order=13,
    signatures="harness.diagnosis.steps:rglru_signatures",
    weight_regimes={"Griffin's decays (a^8 in [0.9, 0.999])": griffin_decays},
    description="Griffin's RG-LRU: h' = a h + sqrt(1 - a²) (i x), log a = -8 r softplus(-Λ)",
)
