"""xLSTM's mLSTM, stabilised with m_0 = 0: per head,
m_t = max(logσ(f_t) + m_{t-1}, i_t), f' = e^(logσ(f_t) + m_{t-1} - m_t), i' = e^(i_t - m_t),
C_t = f' C_{t-1} + i' k_t v_t^T, n_t = f' n_{t-1} + i' k_t,
h_t = C_t^T q̂_t / (max(|n_t · q̂_t|, e^(-m_t)) + eps), q̂ = scale q (scale = K^-1/2).
The state is (C (N, H, K, V), n (N, H, K), m (N, H)).

Unrolled, with F the cumulative log forget gate, the stabiliser is the largest log weight:
m_t = max(F_t + m_0, max_{j<=t} (F_t - F_j + i_j)). The chunked and parallel forms compute that
same m from the weights they sum (so they carry the reference's m exactly, up to rounding): in a
chunk with b the inclusive cumulative logσ(f), a_t = b_t + m_prev is the log weight of the
carried state and D_tj = b_t - b_j + i_j (j <= t, masked before the exponential) of step j;
m_t = max(a_t, max_j D_tj), every exponent below is <= 0, and
h_t = (Σ_j e^(D_tj - m_t) (k_j · q̂_t) v_j + e^(a_t - m_t) C_prev^T q̂_t)
      / (max(|Σ_j e^(D_tj - m_t) (k_j · q̂_t) + e^(a_t - m_t) n_prev · q̂_t|, e^(-m_t)) + eps).

- ``recurrent``: the loop (the family's reference);
- ``chunk``: chunks of C steps, the state carried between them;
- ``parallel``: the stabilised quadratic form, the whole sequence as one chunk.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.ops.sequences import State, chunked, run, segment_sums

GATES = ("i", "f")
EPS = 1e-6


def zero_state(rows: int, heads: int, key_dim: int, value_dim: int, dtype) -> State:
    return (torch.zeros(rows, heads, key_dim, value_dim, dtype=dtype),
            torch.zeros(rows, heads, key_dim, dtype=dtype), torch.zeros(rows, heads, dtype=dtype))


def recurrent_core(q, k, v, gates, state, scale, chunk_size, eps=EPS) -> tuple[Tensor, State]:
    (i, f), (c, n, m) = gates, state  # i, f (B, T, H); c (B,H,K,V), n (B,H,K), m (B,H)
    outputs = []
    for t in range(q.shape[1]):
        log_f = F.logsigmoid(f[:, t])
        m_new = torch.maximum(log_f + m, i[:, t])
        forget, write = (log_f + m - m_new).exp(), (i[:, t] - m_new).exp()  # (B, H)
        c = forget[..., None, None] * c + write[..., None, None] * (
            k[:, t, :, :, None] * v[:, t, :, None, :])
        n = forget[..., None] * n + write[..., None] * k[:, t]
        q_hat = q[:, t] * scale
        numerator = torch.einsum("bhk,bhkv->bhv", q_hat, c)
        denominator = torch.maximum(torch.einsum("bhk,bhk->bh", n, q_hat).abs(), (-m_new).exp())
        outputs.append(numerator / (denominator + eps).unsqueeze(-1))
        m = m_new
    o = torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)
    return o, (c, n, m)


def chunk_core(q, k, v, gates, state, scale, chunk_size, eps=EPS) -> tuple[Tensor, State]:
    i, f = gates
    return chunked(functools.partial(region, eps=eps), q * scale, k, v, (i, F.logsigmoid(f)),
                   state, chunk_size)


def region(qc, kc, vc, gates, state, eps) -> tuple[Tensor, State]:
    """Whole chunks, chunk-major: qc (scaled), kc (N, B, H, c, K); vc (N, B, H, c, V); i and
    logσ(f) (N, B, H, c). Every chunk's log weights D and products q k^T at once; the
    stabiliser at each chunk's start, chunk by chunk (a scalar per sequence and head:
    m_next = max(b_C + m, max_j D_Cj)); then every chunk's weights at once, the states C and n
    carried with one elementwise step per chunk, and the outputs read at once."""
    (ic, fc), (c, n, m) = gates, state
    b = fc.cumsum(-1)  # (N, B, H, c)
    steps = segment_sums(fc) + ic.unsqueeze(-2)  # D_tj = b_t - b_j + i_j, -inf above
    largest = steps.amax(-1)  # (N, B, H, c)
    starts = []
    for j in range(qc.shape[0]):
        starts.append(m)
        m = torch.maximum(b[j, ..., -1] + m, largest[j, ..., -1])
    carried = b + torch.stack(starts).unsqueeze(-1)  # a_t = b_t + m_start
    m_t = torch.maximum(carried, largest)  # (N, B, H, c): the reference's m at every step
    weights = (steps - m_t.unsqueeze(-1)).exp() * (qc @ kc.mT)  # (N, B, H, c, c)
    old = (carried - m_t).exp().unsqueeze(-1)  # the carried state's weight: (N, B, H, c, 1)
    into = kc * (steps[..., -1, :] - m_t[..., -1:]).exp().unsqueeze(-1)  # (N, B, H, c, K)
    keep = (carried[..., -1] - m_t[..., -1]).exp()  # (N, B, H)
    added_c = into.mT @ vc  # (N, B, H, K, V)
    added_n = into.sum(-2)  # (N, B, H, K)
    start_c, start_n = [], []
    for j in range(added_c.shape[0]):
        start_c.append(c)
        start_n.append(n)
        c = torch.addcmul(added_c[j], c, keep[j][..., None, None])
        n = torch.addcmul(added_n[j], n, keep[j][..., None])
    numerator = weights @ vc + old * (qc @ torch.stack(start_c))
    normaliser = weights.sum(-1, keepdim=True) + old * (
        qc @ torch.stack(start_n).unsqueeze(-1))
    floor = (-m_t).exp().unsqueeze(-1)
    return numerator / (torch.maximum(normaliser.abs(), floor) + eps), (c, n, m)


def parallel_core(q, k, v, gates, state, scale, chunk_size, eps=EPS) -> tuple[Tensor, State]:
    return chunk_core(q, k, v, gates, state, scale, max(q.shape[1], 1), eps)


def call(core, q, k, v, i, f, *, scale=None, initial_state=None, output_final_state=False,
         cu_seqlens=None, chunk_size=None, eps=EPS):
    def with_eps(q, k, v, gates, state, scale, chunk_size):
        return core(q, k, v, gates, state, scale, chunk_size, eps)

    return run(with_eps, q, k, v, (i, f), gate_names=GATES, zero_state=zero_state, scale=scale,
               initial_state=initial_state, output_final_state=output_final_state,
               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def mlstm_recurrent(q, k, v, i, f, *, scale=None, initial_state=None, output_final_state=False,
                    cu_seqlens=None, eps=EPS):
    """The reference: the stabilised mLSTM step by step."""
    return call(recurrent_core, q, k, v, i, f, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens, eps=eps)


def mlstm_chunk(q, k, v, i, f, *, scale=None, initial_state=None, output_final_state=False,
                cu_seqlens=None, chunk_size=64, eps=EPS):
    """The chunked form: the reference's stabiliser from each chunk's log weights."""
    return call(chunk_core, q, k, v, i, f, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                chunk_size=chunk_size, eps=eps)


def mlstm_parallel(q, k, v, i, f, *, scale=None, initial_state=None, output_final_state=False,
                   cu_seqlens=None, eps=EPS):
    """The stabilised parallel form: one T x T weight matrix per sequence."""
    return call(parallel_core, q, k, v, i, f, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens, eps=eps)
