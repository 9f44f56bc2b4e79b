"""minGRU and minLSTM as parallel scans: every gate of the whole sequence in one GEMM, then the
linear recurrence h_t = a_t h_{t-1} + b_t by harness.impls.scan — in chunks (a prefix scan, as
exact as the loop), or over the whole sequence in log space (Heinsen's logcumsumexp) with
``chunk_size=None``.

In chunks, a and b are computed as the loop computes them (a = 1 - z = σ(-z_pre),
b = z g(h̃)): a round trip through log and exp costs |log b| units of rounding (at saturated gates,
b ~ 90, 12x the loop's error). In log space, log a and log b come straight from the
pre-activations, never through a probability that could round to 0 or 1: log(1 - σ(k)) =
-softplus(k), log σ(k) = -softplus(-k), log g(a) as in harness.families.minimal; minLSTM's
normalised gates are log f' = logσ(log f - log i) and log i' = logσ(log i - log f), the loop's own
formula.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.layer import State
from harness.families.minimal import MinGRULoop, MinLSTMLoop, g, log_g, normalised_gates
from harness.impls.scan import chunked, chunked_affine, masked, masked_affine


class ScanMixin:
    """run_direction as one projection GEMM and a scan over time. A subclass gives a and b of
    the recurrence from the projection (T, B, gates * H), and log a and log b for the log-space
    scan."""

    chunk_size: int | None = None

    def decay_and_input(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def log_decay_and_input(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def run_direction(self, slot: int, x: Tensor, state: State, mask: Tensor | None,
                      reverse: bool) -> tuple[Tensor, State]:
        """One (layer, direction) over x (T, B, in): outputs (T, B, H) and the final state."""
        w = self.weights(slot)
        if reverse:  # the reverse direction is the forward scan over the flipped sequence
            x = x.flip(0)
            mask = None if mask is None else mask.flip(0)
        proj = torch.nn.functional.linear(x, w["ih"], w["b_ih"])  # (T, B, gates * H)
        if self.chunk_size is None:
            log_a, log_b = self.log_decay_and_input(proj)
            log_a, b, log_b = masked(log_a, log_b.exp(), mask, log_b)
            h = chunked(log_a, b, state[0], chunk_size=None, b_log=log_b)  # (T, B, H)
        else:
            a, b = masked_affine(*self.decay_and_input(proj), mask)
            h = chunked_affine(a, b, state[0], chunk_size=self.chunk_size)  # (T, B, H)
        final = h[-1]  # padded steps pass the state through: h[-1] is the last valid step's
        out = h if mask is None else h * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (final,)


class MinGRUScan(ScanMixin, MinGRULoop):
    """minGRU by log-space parallel scan (Heinsen 2023); ``chunk_size`` steps at a time."""

    harness_capabilities: ClassVar[dict] = {"chunked": True, "zero_length": True}

    def __init__(self, *args, chunk_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_size = chunk_size

    def decay_and_input(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        z_pre, h_pre = proj.chunk(2, dim=-1)
        return torch.sigmoid(-z_pre), torch.sigmoid(z_pre) * g(h_pre)  # 1 - z, z g(h̃)

    def log_decay_and_input(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        z_pre, h_pre = proj.chunk(2, dim=-1)
        log_a = -F.softplus(z_pre)  # log(1 - z)
        return log_a, -F.softplus(-z_pre) + log_g(h_pre)  # log z + log g(h_pre)


class MinLSTMScan(ScanMixin, MinLSTMLoop):
    """minLSTM by log-space parallel scan; ``chunk_size`` steps at a time."""

    harness_capabilities: ClassVar[dict] = {"chunked": True, "zero_length": True}

    def __init__(self, *args, chunk_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_size = chunk_size

    def decay_and_input(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        f_pre, i_pre, h_pre = proj.chunk(3, dim=-1)
        f_norm, i_norm = normalised_gates(f_pre, i_pre)
        return f_norm, i_norm * g(h_pre)

    def log_decay_and_input(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        f_pre, i_pre, h_pre = proj.chunk(3, dim=-1)
        # f' = σ(log f - log i), i' = σ(log i - log f), as the loop computes them
        difference = F.logsigmoid(f_pre) - F.logsigmoid(i_pre)
        return F.logsigmoid(difference), F.logsigmoid(-difference) + log_g(h_pre)
