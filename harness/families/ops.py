"""The matrix-state op families: scalar decay, the gated delta rule and mLSTM (the maths is in
harness.ops), with how their inputs are drawn, their gate stresses, states and FLOPs.

Inputs are drawn in float64 from the case's own seed: q, k, v standard normal (the gated delta
rule's keys L2-normalised, as its callers do), and the gates:

- g (a log decay): logσ(U[0, 1]) / 8 — per-step decays 0.92-0.96, so states remember tens of
  steps; the stresses draw it as fla's tests do, logσ(U[0, 1]) / s for s in 0.01, 0.1, 1, 10
  (per-step decays from e^-69 to nearly 1), and set exact zeros (decay exactly 1) at a third of
  the positions or everywhere;
- beta = σ(N(0, 1)), and beta near 0 or near 1 as stresses;
- mLSTM: i ~ N(0, 1), f ~ N(3, 1) (forget gates mostly open, as xLSTM initialises them), and the
  stresses i near -12 or +15, f near +6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.op_case import OpCase
from harness.core.op_family import Drawn, OpFamily
from harness.ops.gated_delta import gated_delta_recurrent
from harness.ops.layer import LayerGates, delta_gates, mlstm_gates
from harness.ops.layer import log_decay as decay_gate
from harness.ops.mlstm import mlstm_recurrent
from harness.ops.scalar_decay import scalar_decay_recurrent

DECAY_STRESSES = {
    "s0.01": "g = logσ(U[0,1]) / 0.01: per-step decays down to e^-69",
    "s0.1": "g = logσ(U[0,1]) / 0.1",
    "s1": "g = logσ(U[0,1])",
    "s10": "g = logσ(U[0,1]) / 10: decays near 1",
    "zero-some": "g = 0 (decay exactly 1) at a third of the positions",
    "zero-all": "g = 0 everywhere: no decay at all",
    "strengthening": "gentle decays (g = logσ(U[0,1]) / 50) over the first 64 steps, strong "
                     "ones after (/ 0.25, about e^-3 a step): a decision taken on the first "
                     "chunk's decays (whether to factor them, say) fails on later chunks",
    "mixed-heads": "the last head's decays strong (g = logσ(U[0,1]) / 0.25, about e^-2 a "
                   "step), the others gentle: heads as unlike as Mamba-2's per-head A (a "
                   "decision taken over every head at once, as whether to factor the decays, "
                   "fails on the one); drawn with 8 heads",
}
DELTA_STRESSES = {
    **DECAY_STRESSES,
    "beta-low": "beta = σ(N(-12, 1)): near 0",
    "beta-high": "beta = σ(N(12, 1)): near 1",
    "unnormalised": "keys not L2-normalised (outside the contract: errors recorded)",
}
MLSTM_STRESSES = {
    "i-low": "input gates near -12",
    "i-high": "input gates near +15",
    "f-high": "forget gates near +6 (over 2000 steps: the stabiliser climbs)",
    "f-low": "forget gates near -120: σ(f) underflows to 0 in float32, log σ(f) does not",
}


def normal(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def qkv(case: OpCase, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    b, t, h = case.batch, case.seq_len, case.heads
    return (normal(generator, b, t, h, case.key_dim), normal(generator, b, t, h, case.key_dim),
            normal(generator, b, t, h, case.value_dim))


def log_decay(case: OpCase, generator: torch.Generator) -> Tensor:
    """g (B, T, H) as the case's stress says."""
    shape = (case.batch, case.seq_len, case.heads)
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
    divisor = {"s0.01": 0.01, "s0.1": 0.1, "s1": 1.0, "s10": 10.0}.get(case.stress, 8.0)
    g = F.logsigmoid(uniform) / divisor
    if case.stress == "mixed-heads":
        g[..., -1] = F.logsigmoid(uniform[..., -1]) / 0.25
    if case.stress == "strengthening":
        g = torch.cat([F.logsigmoid(uniform[:, :64]) / 50, F.logsigmoid(uniform[:, 64:]) / 0.25],
                      dim=1)
    if case.stress == "zero-all":
        return torch.zeros_like(g)
    if case.stress == "zero-some":
        g = g.masked_fill(torch.rand(shape, generator=generator, dtype=torch.float64) < 1 / 3,
                          0.0)
    return g


def draw_scalar_decay(case: OpCase, generator: torch.Generator) -> Drawn:
    q, k, v = qkv(case, generator)
    return q, k, v, (log_decay(case, generator),)


def draw_gated_delta(case: OpCase, generator: torch.Generator) -> Drawn:
    q, k, v = qkv(case, generator)
    if case.stress != "unnormalised":
        k = F.normalize(k, dim=-1)
    g = log_decay(case, generator)
    centre = {"beta-low": -12.0, "beta-high": 12.0}.get(case.stress, 0.0)
    beta = torch.sigmoid(normal(generator, *g.shape) + centre)
    return q, k, v, (g, beta)


def draw_mlstm(case: OpCase, generator: torch.Generator) -> Drawn:
    q, k, v = qkv(case, generator)
    shape = (case.batch, case.seq_len, case.heads)
    i = normal(generator, *shape) + {"i-low": -12.0, "i-high": 15.0}.get(case.stress, 0.0)
    f = normal(generator, *shape) + {"f-high": 6.0, "f-low": -120.0}.get(case.stress, 3.0)
    return q, k, v, (i, f)


def matrix_state(case: OpCase, generator: torch.Generator) -> tuple[Tensor, ...]:
    return (normal(generator, case.sequences, case.heads, case.key_dim, case.value_dim),)


def mlstm_state(case: OpCase, generator: torch.Generator) -> tuple[Tensor, ...]:
    rows, h, k = case.sequences, case.heads, case.key_dim
    return (normal(generator, rows, h, k, case.value_dim), normal(generator, rows, h, k),
            normal(generator, rows, h))


def rescaled(state: tuple[Tensor, ...], reference: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """mLSTM's (C, n, m) as it means to the reference: C e^m and n e^m in the units of the
    reference's stabiliser (C e^(m - m_ref)), never exponentiated on their own; m as the
    reference's."""
    c, n, m = state
    shift = (m.double() - reference[2].double()).to(c.dtype)  # (N, H)
    return c * shift.exp()[..., None, None], n * shift.exp()[..., None], reference[2]


def flops(case: OpCase, phase: str, form: str, *, extra_per_step: int = 0) -> int:
    """Matrix-product FLOPs of one call: per step and head, the recurrent form updates and reads
    a K x V state (4 K V, plus the family's extra); the chunked form (chunk C) adds the
    intra-chunk products (2 C (K + V) per step: Q K^T and its product with V); the parallel form
    the T x T products (2 T (K + V) per step, the masked half included). A backward pass costs
    twice the forward."""
    k, v, chunk = case.key_dim, case.value_dim, case.chunk_size or 64
    per_step = {"recurrent": 4 * k * v + extra_per_step,
                "chunk": 4 * k * v + 2 * chunk * (k + v) + extra_per_step,
                "parallel": 4 * k * v + 2 * case.seq_len * (k + v) + extra_per_step}[form]
    total = per_step * case.heads * sum(case.effective_lengths)
    return total * 3 if phase == "forward_backward" else total


def delta_flops(case: OpCase, phase: str, form: str) -> int:
    """The delta rule reads the state once more per step (S^T k), and the chunked form solves a
    C x C triangular system per chunk (C^2 (K + V) / C per step)."""
    chunk = case.chunk_size or 64
    extra = 2 * case.key_dim * case.value_dim + (chunk * (case.key_dim + case.value_dim)
                                                 if form == "chunk" else 0)
    return flops(case, phase, form, extra_per_step=extra)


def mlstm_flops(case: OpCase, phase: str, form: str) -> int:
    return flops(case, phase, form, extra_per_step=4 * case.key_dim)  # the normaliser n


# Float32 tolerances: outputs sum hundreds of products; values of order 1-10 (see docs/ops.md).
# bfloat16: the inputs and o in bfloat16, computed in float32: forms may round o a bfloat16
# unit (2^-8 relative) apart; float16 likewise, its unit 2^-11 (2e-3: two units and a margin).
OP_TOLERANCES = {"float32": (1e-5, 1e-5), "float64": (1e-10, 1e-10), "bfloat16": (1e-2, 1e-2),
                 "float16": (2e-3, 2e-3)}

SCALAR_DECAY = OpFamily(
    "scalar_decay", scalar_decay_recurrent, gates=("g",), state=("S",),
    draw=draw_scalar_decay, draw_state=matrix_state, stresses=DECAY_STRESSES,
    flop_formula=flops, tolerances=OP_TOLERANCES, order=20, layer=LayerGates(decay_gate),
    signatures="harness.diagnosis.op_steps:scalar_decay_signatures",
    description="S_t = exp(g_t) S + k v^T, o = S^T (scale q): simple GLA, RetNet, Mamba-2 SSD")
GATED_DELTA = OpFamily(
    "gated_delta", gated_delta_recurrent, gates=("g", "beta"), state=("S",),
    draw=draw_gated_delta, draw_state=matrix_state, stresses=DELTA_STRESSES,
    flop_formula=delta_flops, tolerances=OP_TOLERANCES, order=21,
    layer=LayerGates(delta_gates, normalise_keys=True),
    signatures="harness.diagnosis.op_steps:gated_delta_signatures",
    description="S' = exp(g) S, S = S' + beta k (v - S'^T k)^T: Gated DeltaNet, DeltaNet (g = 0)")
MLSTM = OpFamily(
    "mlstm", mlstm_recurrent, gates=("i", "f"), state=("C", "n", "m"),
    draw=draw_mlstm, draw_state=mlstm_state, stresses=MLSTM_STRESSES, comparable=rescaled,
    flop_formula=mlstm_flops, tolerances=OP_TOLERANCES, order=22, layer=LayerGates(mlstm_gates),
    signatures="harness.diagnosis.op_steps:mlstm_signatures",
    description="xLSTM's mLSTM, stabilised (m_0 = 0): C, n and the stabiliser m")
