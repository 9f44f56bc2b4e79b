"""Scalar decay: S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = S_t^T (scale q_t), per head, with g a
log decay (<= 0). Simple GLA; RetNet with g_h = log(1 - 2^(-5-h)) constant per head; Mamba-2's
SSD with q = C, k = B, v = x Δ, g = A Δ (A < 0).

Three forms of the same maths:

- ``recurrent``: the loop above, one step at a time (the family's reference);
- ``chunk``: chunks of C steps; with b the inclusive cumulative sum of g inside the chunk,
  O = ((scale Q) K^T ⊙ L) V + ((scale Q) ⊙ e^b) S_prev, L_lj = e^(b_l - b_j) for l >= j (masked
  before the exponential: every exponent <= 0; b_l - b_j summed over its own segment,
  harness.ops.sequences.segment_sums), S_next = e^(b_C) S_prev + (K ⊙ e^(b_C - b))^T V;
- ``parallel``: the quadratic form, the whole sequence as one chunk (a T x T decay matrix).
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.ops.sequences import (
    State,
    blocks,
    decay_mask,
    factored_decays,
    in_chunks,
    regions,
    run,
)

GATES = ("g",)


def zero_state(rows: int, heads: int, key_dim: int, value_dim: int, dtype) -> State:
    return (torch.zeros(rows, heads, key_dim, value_dim, dtype=dtype),)


def recurrent_core(q, k, v, gates, state, scale, chunk_size) -> tuple[Tensor, State]:
    (g,), (s,) = gates, state  # g (B, T, H); s (B, H, K, V)
    outputs = []
    for t in range(q.shape[1]):
        s = s * g[:, t].exp()[..., None, None] + k[:, t, :, :, None] * v[:, t, :, None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
    o = torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)
    return o, (s,)


def chunk_core(q, k, v, gates, state, scale, chunk_size) -> tuple[Tensor, State]:
    (g,), (s,) = gates, state
    # (B, H, T, .), laid out once: elementwise products keep their operands' strides, and
    # every batched product over chunks of a transposed view would copy it again
    qs, kt, vt = ((q * scale).transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(),
                  v.transpose(1, 2).contiguous())
    gt = g.transpose(1, 2)  # (B, H, T)
    outputs = []
    for part, size in regions(q.shape[1], chunk_size):
        o, s = region(qs[:, :, part], kt[:, :, part], vt[:, :, part], gt[:, :, part], s, size)
        outputs.append(o)
    o = torch.cat(outputs, 2).transpose(1, 2) if outputs else v.new_zeros(v.shape)
    return o, (s,)


def region(qs, kt, vt, gt, s, size) -> tuple[Tensor, Tensor]:
    """Chunks of ``size`` steps. Every chunk's products at once — its intra-chunk outputs, what
    it adds to the state (U_n) and how it decays it (e^(b_C)) — then the states themselves,
    S_(n+1) = e^(b_C) S_n + U_n, one elementwise step per chunk, and every chunk's read of its
    incoming state at once. qs, kt (B, H, L, K); vt (B, H, L, V); gt (B, H, L)."""
    qc, kc, vc, gc = (in_chunks(t, size) for t in (qs, kt, vt, gt))  # (B, H, N, c, .)
    b = gc.cumsum(-1)  # (B, H, N, c): log decay from each chunk's start
    reads = qc * b.exp().unsqueeze(-1)  # how each step reads the chunk's incoming state
    if factored_decays(b):  # e^(b_t - b_j) as e^(b_t) e^(-b_j): no (c, c) exponential
        keys = kc * (-b).exp().unsqueeze(-1)
        o = (reads @ keys.transpose(-1, -2)).tril_() @ vc  # intra-chunk: (B, H, N, c, V)
        writes = (keys * b[..., -1:].exp().unsqueeze(-1)).transpose(-1, -2)  # (B, H, N, K, c)
    else:  # strong decays: the masked exponential of segment sums (every exponent <= 0)
        gamma = decay_mask(gc)  # (B, H, N, c, c): e^(b_t - b_j), j <= t
        o = (qc @ kc.transpose(-1, -2) * gamma) @ vc
        writes = (kc * gamma[..., -1, :].unsqueeze(-1)).transpose(-1, -2)
    carry = b[..., -1].exp()[..., None, None]  # (B, H, N, 1, 1)
    for part in blocks(qc.shape[2], s[0].numel()):
        added = writes[:, :, part] @ vc[:, :, part]  # U_n: (B, H, n, K, V)
        starts = []
        for n in range(added.shape[2]):
            starts.append(s)
            s = torch.addcmul(added[:, :, n], s, carry[:, :, part][:, :, n])
        o[:, :, part] += reads[:, :, part] @ torch.stack(starts, 2)
    return o.reshape(*o.shape[:2], -1, o.shape[-1]), s


def parallel_core(q, k, v, gates, state, scale, chunk_size) -> tuple[Tensor, State]:
    return chunk_core(q, k, v, gates, state, scale, max(q.shape[1], 1))


def call(core, q, k, v, g, *, scale=None, initial_state=None, output_final_state=False,
         cu_seqlens=None, chunk_size=None):
    return run(core, q, k, v, (g,), gate_names=GATES, zero_state=zero_state, scale=scale,
               initial_state=initial_state, output_final_state=output_final_state,
               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def scalar_decay_recurrent(q, k, v, g, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None):
    """The reference: S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = S_t^T (scale q_t), step by step."""
    return call(recurrent_core, q, k, v, g, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def scalar_decay_chunk(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False,
                       cu_seqlens=None, chunk_size=64):
    """The chunked form: intra-chunk products, the state carried between chunks."""
    return call(chunk_core, q, k, v, g, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                chunk_size=chunk_size)


def scalar_decay_parallel(q, k, v, g, *, scale=None, initial_state=None,
                          output_final_state=False, cu_seqlens=None):
    """The quadratic form: one T x T decay-masked product per sequence (RetNet's)."""
    return call(parallel_core, q, k, v, g, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens)
