"""From-scratch recurrent layers: torch's contract written out one time step at a time.

These are the teaching entries of the registry (scratch-lstm, scratch-gru; scratch-rnn, the
course's own cell, is in harness.impls.course_cell). They exist to be read: every step of
torch's recurrence is spelled out in Python, including the parts people get wrong — masking
padded steps so they never touch the state, starting the reverse direction at each sequence's
last valid step, ordering h_n rows layer-major, applying dropout only between layers. They are
checked against torch.nn like any third-party class would be.

The machinery every layer shares (input layouts, PackedSequence, lengths=, directions, layers,
dropout, hx validation) is harness.core.layer; ScratchLSTM and ScratchGRU keep torch's parameter
names and gate layouts, so torch's weights load by name, and define one step each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.layer import CellState, NamedParameters, State


class ScratchLSTM(CellState, NamedParameters):
    """LSTM from scratch with torch's gate layout: weight rows [i, f, g, o]."""

    gates = 4

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        h, c = state
        gates = F.linear(x_t, w["ih"], w["b_ih"]) + F.linear(h, w["hh"], w["b_hh"])  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w["hr"] is not None:
            h = F.linear(h, w["hr"])  # (B, proj_size)
        return h, c


class ScratchGRU(NamedParameters):
    """GRU from scratch with torch's layout: rows [r, z, n], the reset gate applied after the
    hidden matmul: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h."""

    mode = "GRU"
    gates = 3

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("proj_size"):
            raise ValueError("proj_size argument is only supported for LSTM, not GRU")
        super().__init__(*args, **kwargs)

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        w = self.weights(slot)
        (h,) = state
        x_r, x_z, x_n = F.linear(x_t, w["ih"], w["b_ih"]).chunk(3, dim=1)  # each (B, H)
        h_r, h_z, h_n = F.linear(h, w["hh"], w["b_hh"]).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return ((1 - z) * n + z * h,)
