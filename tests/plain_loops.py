"""Correct implementations written the way a newcomer writes them: a plain loop per family, the
same maths as the family's reference computed in another order of operations (biases summed
first, products written with ``@``, convex combinations as ``h + z (h̃ - h)``).

They are the control of the verdicts: a correct implementation must pass every suite at every
scale, whatever the case's conditioning, and its float32 results differ from the reference's only
by rounding. tests/test_verdicts.py runs them through the suites.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.layer import NamedParameters, State
from harness.impls.scratch import ScratchGRU, ScratchLSTM


def summed_bias(w: dict[str, Tensor | None]) -> Tensor | int:
    """b_ih + b_hh, added once after both products (torch adds each to its own product)."""
    if w["b_ih"] is None:
        return 0
    return w["b_ih"] if w["b_hh"] is None else w["b_ih"] + w["b_hh"]


class PlainElman(NamedParameters):
    """h' = act(x W_ih^T + h W_hh^T + (b_ih + b_hh)): the loop of issue 21."""

    mode: ClassVar[str] = "RNN"
    gates: ClassVar[int] = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", *args, **kwargs) -> None:  # torch's order
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        super().__init__(input_size, hidden_size, num_layers, *args, **kwargs)
        self.nonlinearity = nonlinearity

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        pre = x_t @ w["ih"].T + h @ w["hh"].T + summed_bias(w)  # (B, H)
        return (torch.relu(pre) if self.nonlinearity == "relu" else torch.tanh(pre),)


class PlainLSTM(ScratchLSTM):
    """LSTM with the biases summed first and c' = i g + f c."""

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        h, c = state
        gates = h @ w["hh"].T + (x_t @ w["ih"].T + summed_bias(w))  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
        h = torch.tanh(c) * torch.sigmoid(o)
        if w["hr"] is not None:
            h = h @ w["hr"].T
        return h, c


class PlainGRU(ScratchGRU):
    """GRU with h' = n + z (h - n)."""

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        x_part = x_t @ w["ih"].T + (0 if w["b_ih"] is None else w["b_ih"])  # (B, 3H)
        h_part = h @ w["hh"].T + (0 if w["b_hh"] is None else w["b_hh"])
        x_r, x_z, x_n = x_part.chunk(3, dim=1)
        h_r, h_z, h_n = h_part.chunk(3, dim=1)
        r = torch.sigmoid(h_r + x_r)
        z = torch.sigmoid(h_z + x_z)
        n = torch.tanh(r * h_n + x_n)
        return (n + z * (h - n),)


def g(a: Tensor) -> Tensor:
    """minGRU's g: a + 0.5 for a >= 0, σ(a) otherwise."""
    return torch.where(a < 0, torch.sigmoid(a), a + 0.5)


class PlainMinGRU(NamedParameters):
    """minGRU as h' = h + z (g(h̃) - h)."""

    mode: ClassVar[str] = "minGRU"
    gates: ClassVar[int] = 2
    recurrence: ClassVar[str] = "none"

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        pre = x_t @ w["ih"].T + (0 if w["b_ih"] is None else w["b_ih"])  # (B, 2H)
        z_pre, h_pre = pre.chunk(2, dim=1)
        return (h + torch.sigmoid(z_pre) * (g(h_pre) - h),)


class PlainMinLSTM(NamedParameters):
    """minLSTM with f' = exp(log f - logaddexp(log f, log i)) (no 0 / 0 either)."""

    mode: ClassVar[str] = "minLSTM"
    gates: ClassVar[int] = 3
    recurrence: ClassVar[str] = "none"

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        pre = x_t @ w["ih"].T + (0 if w["b_ih"] is None else w["b_ih"])  # (B, 3H)
        f_pre, i_pre, h_pre = pre.chunk(3, dim=1)
        log_f, log_i = F.logsigmoid(f_pre), F.logsigmoid(i_pre)
        total = torch.logaddexp(log_f, log_i)
        return (torch.exp(log_i - total) * g(h_pre) + torch.exp(log_f - total) * h,)


class PlainIndRNN(NamedParameters):
    """IndRNN as relu(u h + (x W^T + b))."""

    mode: ClassVar[str] = "IndRNN"
    gates: ClassVar[int] = 1
    recurrence: ClassVar[str] = "diagonal"

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        pre = x_t @ w["ih"].T + (0 if w["b_ih"] is None else w["b_ih"])
        return (torch.relu(w["hh"] * h + pre),)


class PlainRGLRU(NamedParameters):
    """RG-LRU with sqrt(1 - a²) as sqrt((1 - a)(1 + a)), 1 - a from expm1 (no cancellation)."""

    mode: ClassVar[str] = "RG-LRU"
    gates: ClassVar[int] = 2
    recurrence: ClassVar[str] = "diagonal"

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        pre = x_t @ w["ih"].T + (0 if w["b_ih"] is None else w["b_ih"])  # (B, 2H)
        r_pre, i_pre = pre.chunk(2, dim=1)
        log_a = F.softplus(-w["hh"]) * torch.sigmoid(r_pre) * -8.0
        a = torch.exp(log_a)
        scale = torch.sqrt(-torch.expm1(log_a) * (1 + a))
        return (a * h + scale * torch.sigmoid(i_pre) * x_t,)


# family -> the plain loop that implements it
PLAIN = {
    "rnn_tanh": "tests.plain_loops:PlainElman",
    "rnn_relu": "tests.plain_loops:PlainElman",
    "lstm": "tests.plain_loops:PlainLSTM",
    "gru": "tests.plain_loops:PlainGRU",
    "mingru": "tests.plain_loops:PlainMinGRU",
    "minlstm": "tests.plain_loops:PlainMinLSTM",
    "indrnn": "tests.plain_loops:PlainIndRNN",
    "rglru": "tests.plain_loops:PlainRGLRU",
}
