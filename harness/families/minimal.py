"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gated recurrences whose
gates read the input only, so h_t is a linear function of h_{t-1} and a whole sequence can be
computed by a parallel scan. Their references are the plain sequential loops below.

With σ the logistic sigmoid and g(a) = a + 0.5 for a >= 0, σ(a) otherwise (so g > 0):

- mingru: z = σ(W_z x + b_z), h̃ = g(W_h x + b_h), h_t = (1 - z) ⊙ h_{t-1} + z ⊙ h̃;
  weight_ih stacks [W_z; W_h] (2H x I), bias_ih likewise; no recurrent weight; h_0 = 0.
- minlstm: f = σ(W_f x + b_f), i = σ(W_i x + b_i), h̃ = g(W_h x + b_h), f' = f / (f + i),
  i' = i / (f + i), h_t = f' ⊙ h_{t-1} + i' ⊙ h̃; blocks [f; i; h̃]. (f' is computed as
  σ(log f - log i), the same number, so that both gates underflowing gives no 0 / 0.)

Both keep h positive once h_0 is (h̃ > 0, the weights sum to 1): the state domain is positive.
A negative initial state is outside the domain: the loops below still compute the recurrence,
while log-space scans may return NaN.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.families import Family
from harness.core.layer import NamedParameters, State

STEPS = "harness.diagnosis.steps"  # the families' own bug signatures, loaded when asked


def g(a: Tensor) -> Tensor:
    """a + 0.5 for a >= 0, σ(a) otherwise: continuous, increasing, always positive."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def log_g(a: Tensor) -> Tensor:
    """log g(a), computed without forming g for the negative branch: log σ(a) = -softplus(-a)."""
    return torch.where(a >= 0, (a.clamp(min=0) + 0.5).log(), -F.softplus(-a))


def normalised_gates(f_pre: Tensor, i_pre: Tensor) -> tuple[Tensor, Tensor]:
    """f' = f / (f + i) and i' = i / (f + i) for f = σ(f_pre), i = σ(i_pre), computed as
    f' = σ(log f - log i): the same numbers, and no 0 / 0 when both gates underflow."""
    difference = F.logsigmoid(f_pre) - F.logsigmoid(i_pre)  # log f - log i
    return torch.sigmoid(difference), torch.sigmoid(-difference)


def long_memory(blocks: int, shifts: tuple[float, ...]):
    """A weight regime where the state forgets over thousands of steps, as trained models' slow
    units do: each gate block's bias shifted (``shifts``, one per block, over ``blocks`` stacked
    H-row blocks of bias_ih): minGRU's z to σ(-7) ≈ 1e-3, minLSTM's f' to about 1 - 1e-3. A case
    without biases keeps its weights."""

    def regime(weights: dict[str, Tensor]) -> dict[str, Tensor]:
        found = dict(weights)
        for name, value in weights.items():
            if name.startswith("bias_ih"):
                parts = list(value.chunk(blocks))
                found[name] = torch.cat([part + shift for part, shift in zip(parts, shifts)])
        return found

    return regime


LONG_MEMORY = "long memory (a gate bias that keeps the state over thousands of steps)"


class MinGRULoop(NamedParameters):
    """The minGRU reference: the recurrence one step at a time, exactly as written (the gates,
    which read x alone, for every step first: h' = (1 - z) h + z h̃ is the same arithmetic)."""

    mode: ClassVar[str] = "minGRU"
    gates: ClassVar[int] = 2
    recurrence: ClassVar[str] = "none"

    def drive(self, slot: int, x: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights(slot)
        z_pre, h_pre = F.linear(x, w["ih"], w["b_ih"]).chunk(2, dim=-1)  # (..., H) each
        z = torch.sigmoid(z_pre)
        return 1 - z, z * g(h_pre)  # what keeps h, what is written

    def recur(self, slot: int, driven: tuple[Tensor, ...], state: State) -> State:
        keep, write = driven
        (h,) = state
        return (keep * h + write,)


class MinLSTMLoop(NamedParameters):
    """The minLSTM reference: the recurrence one step at a time, exactly as written (the gates,
    which read x alone, for every step first: h' = f' h + i' h̃ is the same arithmetic)."""

    mode: ClassVar[str] = "minLSTM"
    gates: ClassVar[int] = 3
    recurrence: ClassVar[str] = "none"

    def drive(self, slot: int, x: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights(slot)
        f_pre, i_pre, h_pre = F.linear(x, w["ih"], w["b_ih"]).chunk(3, dim=-1)  # (..., H) each
        f_norm, i_norm = normalised_gates(f_pre, i_pre)
        return f_norm, i_norm * g(h_pre)

    def recur(self, slot: int, driven: tuple[Tensor, ...], state: State) -> State:
        keep, write = driven
        (h,) = state
        return (keep * h + write,)


MINGRU = Family(
    "mingru", MinGRULoop, gates=2, recurrence="none", state_domain="positive", order=10,
    weight_regimes={LONG_MEMORY: long_memory(2, (-7.0, 0.0))},
    gate_names=("z", "h̃"), signatures=f"{STEPS}:mingru_signatures",
    description="minGRU: h' = (1 - z) h + z g(W_h x), z = σ(W_z x); gates from x only",
)
MINLSTM = Family(
    "minlstm", MinLSTMLoop, gates=3, recurrence="none", state_domain="positive", order=11,
    weight_regimes={LONG_MEMORY: long_memory(3, (7.0, -7.0, 0.0))},
    gate_names=("f", "i", "h̃"), signatures=f"{STEPS}:minlstm_signatures",
    description="minLSTM: h' = f' h + i' g(W_h x), f', i' normalised to sum to 1",
)
