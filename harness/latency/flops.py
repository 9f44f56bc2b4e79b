"""Analytic FLOP counts: what GFLOP/s and "% peak" divide by.

FLOP counts are analytic and count matrix multiplications only (2*M*N*K each); elementwise gate
arithmetic is left out. Per layer and direction, every step does x_t @ W_ih^T and h @ W_hh^T:
2 * B * gates * H * (in_features + h_out) per step, plus 2 * B * H * proj_size for LSTM's
projection. The backward pass computes every weight gradient (as many FLOPs as the forward), the
gradient flowing back through h (the recurrent and projection matmuls once more) and the gradient
of each layer's input except the first one's (the timed input does not require grad).
"""

from __future__ import annotations

from harness.core.case import Case
from harness.core.families import Family


def analytic_flops(case: Case, fam: Family, phase: str) -> int:
    """Matrix-multiply FLOPs of one call (see the module docstring for what is counted): the
    FLOPs of one sequence's step, times every valid step of every sequence (0 for an empty
    batch)."""
    forward = backward = 0  # per step of one sequence, all layers and directions
    for layer in range(case.num_layers):
        in_features = case.input_size if layer == 0 else case.num_directions * case.h_out
        input_part = 2 * fam.gates * case.hidden_size * in_features
        recurrent = 2 * fam.gates * case.hidden_size * case.h_out
        if case.proj_size:
            recurrent += 2 * case.hidden_size * case.proj_size
        forward += case.num_directions * (input_part + recurrent)
        # weight gradients + the gradient through h + (beyond layer 0) the input's gradient
        backward += case.num_directions * (
            input_part + recurrent + recurrent + (input_part if layer else 0))
    per_step = forward + backward if phase == "forward_backward" else forward
    return int(per_step * sum(case.effective_lengths))
