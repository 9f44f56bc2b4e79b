"""The thin layer that makes an op a model layer, for the training tasks (recall): q, v and the
gates projected from the input, k from the input one step earlier (a one-step shift: the
smallest of the short convolutions these models put before the recurrence, without which a
state of Σ k_t v_t^T can only associate a token with itself, never a key with the value that
follows it), the op over the sequence, an output projection — the shape of a linear-attention
block, without normalisation or feed-forward, so that what is learned is the recurrence's. Each
family says how its raw gate projections become its gates (``LayerGates``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LayerGates:
    """How a family's gates come from their projections, and whether keys are L2-normalised."""

    gates: Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]
    normalise_keys: bool = False


class OpLayer(nn.Module):
    """x (T, B, width) -> (T, B, width) through ``op`` with ``heads`` heads of width / heads."""

    def __init__(self, op: Callable, gate_names: tuple[str, ...], layer: LayerGates, *,
                 width: int, heads: int, dtype=None, device=None) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is invalid; expected a multiple of heads={heads}")
        factory = {"dtype": dtype, "device": device}
        self.op, self.layer, self.heads = op, layer, heads
        self.qkv = nn.Linear(width, 3 * width, **factory)
        self.gate_projection = nn.Linear(width, len(gate_names) * heads, **factory)
        self.out = nn.Linear(width, width, **factory)

    def forward(self, x: Tensor) -> Tensor:
        seq_len, batch, width = x.shape
        xb = x.transpose(0, 1)  # (B, T, width)
        q, k, v = (t.reshape(batch, seq_len, self.heads, -1)
                   for t in self.qkv(xb).chunk(3, dim=-1))  # (B, T, H, d) each
        k = torch.cat([torch.zeros_like(k[:, :1]), k[:, :-1]], dim=1)  # k_t from x_(t-1)
        if self.layer.normalise_keys:
            k = F.normalize(k, dim=-1)
        raw = self.gate_projection(xb).reshape(batch, seq_len, -1, self.heads)
        gates = self.layer.gates(tuple(raw.unbind(2)))  # each (B, T, H)
        o, _ = self.op(q, k, v, *gates)
        return self.out(o.reshape(batch, seq_len, width)).transpose(0, 1)


def log_decay(raw: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """scalar decay: g = logσ(raw) <= 0."""
    return (F.logsigmoid(raw[0]),)


def delta_gates(raw: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """gated delta rule: g = logσ(raw_g), beta = σ(raw_beta)."""
    return F.logsigmoid(raw[0]), torch.sigmoid(raw[1])


def mlstm_gates(raw: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """mLSTM: the input gate as projected, the forget gate biased open (+3, as xLSTM)."""
    return raw[0], raw[1] + 3.0
