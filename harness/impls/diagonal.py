"""Fast IndRNN and RG-LRU: the input projection of the whole sequence in one GEMM, then

- IndRNN: an elementwise-fused loop, one addcmul and one relu per step (in place, into the
  output, when no gradient is recorded); its recurrence is not linear, so it cannot be scanned;
- RG-LRU: a linear recurrence, computed by the log-space parallel scan of harness.impls.scan
  (b = sqrt(1 - a²) ⊙ i ⊙ x takes either sign: its two parts are scanned apart), in chunks.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.layer import State
from harness.families.indrnn import IndRNNLoop
from harness.families.rglru import RGLRULoop, input_scale, log_decay
from harness.impls.scan import chunked, masked


class IndRNNFused(IndRNNLoop):
    """IndRNN with the projection hoisted out of the loop and the step fused."""

    def run_direction(self, slot: int, x: Tensor, state: State, mask: Tensor | None,
                      reverse: bool) -> tuple[Tensor, State]:
        w = self.weights(slot)
        xw = F.linear(x, w["ih"], w["b_ih"])  # (T, B, H): every step's input part
        u, (h,) = w["hh"], state
        order = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        valid = None if mask is None else mask.unsqueeze(2)  # (T, B, 1)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (xw, u, h)):
            outputs: list[Tensor] = [xw[0]] * x.shape[0]
            for t in order:
                new = torch.relu(torch.addcmul(xw[t], u, h))
                if valid is None:
                    h = outputs[t] = new
                else:  # a padded step keeps the state and outputs zero
                    h = torch.where(valid[t], new, h)
                    outputs[t] = torch.where(valid[t], new, 0.0)
            return torch.stack(outputs), (h,)
        with torch.no_grad():
            out = torch.empty_like(xw)  # (T, B, H), this call's own
            h = h.clone()
            for t in order:
                torch.addcmul(xw[t], u, h, out=out[t]).relu_()
                if valid is None:
                    h.copy_(out[t])
                else:
                    torch.where(valid[t], out[t], h, out=h)
                    out[t].masked_fill_(~valid[t], 0.0)
            return out, (h,)


class RGLRUScan(RGLRULoop):
    """RG-LRU by log-space parallel scan; ``chunk_size`` steps at a time."""

    harness_capabilities: ClassVar[dict] = {"chunked": True, "zero_length": True}

    def __init__(self, *args, chunk_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_size = chunk_size

    def run_direction(self, slot: int, x: Tensor, state: State, mask: Tensor | None,
                      reverse: bool) -> tuple[Tensor, State]:
        w = self.weights(slot)
        if reverse:
            x = x.flip(0)
            mask = None if mask is None else mask.flip(0)
        r_pre, i_pre = F.linear(x, w["ih"], w["b_ih"]).chunk(2, dim=-1)  # (T, B, H) each
        log_a = log_decay(r_pre, w["hh"])
        b = input_scale(log_a) * torch.sigmoid(i_pre) * x
        log_a, b, _ = masked(log_a, b, mask)
        h = chunked(log_a, b, state[0], chunk_size=self.chunk_size)
        out = h if mask is None else h * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (h[-1],)
