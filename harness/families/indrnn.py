"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network"): each unit recurs only on
itself, h_t = relu(W x_t + b + u ⊙ h_{t-1}), with u = ``weight_hh_l{k}`` a vector of shape (H,)
(a diagonal recurrent matrix) and W = ``weight_ih_l{k}`` (H x I). Its reference is the plain
sequential loop below; there is no recurrent bias (b is ``bias_ih_l{k}``)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.families import Family
from harness.core.layer import NamedParameters, State


class IndRNNLoop(NamedParameters):
    """The IndRNN reference: the recurrence one step at a time, exactly as written (W x + b,
    which reads x alone, for every step first)."""

    mode: ClassVar[str] = "IndRNN"
    gates: ClassVar[int] = 1
    recurrence: ClassVar[str] = "diagonal"

    def drive(self, slot: int, x: Tensor) -> tuple[Tensor]:
        w = self.weights(slot)
        return (F.linear(x, w["ih"], w["b_ih"]),)  # (..., H)

    def recur(self, slot: int, driven: tuple[Tensor, ...], state: State) -> State:
        (projected,), (h,) = driven, state
        return (torch.relu(projected + self.weights(slot)["hh"] * h),)


INDRNN = Family(
    "indrnn", IndRNNLoop, gates=1, recurrence="diagonal", order=12,
    signatures="harness.diagnosis.steps:indrnn_signatures",
    description="IndRNN: h' = relu(W x + b + u ⊙ h), a per-unit recurrent weight u",
)
