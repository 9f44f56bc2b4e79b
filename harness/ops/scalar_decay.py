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

import functools

import torch
from torch import Tensor

from harness.ops.sequences import State, chunked, decay_mask, factored_decays, run

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
    return chunked(functools.partial(region, scale=scale), q, k, v, gates, state, chunk_size,
                   copy=False)


def region(qc, kc, vc, gates, state, scale) -> tuple[Tensor, State]:
    """Whole chunks as chunk-major views (``chunk_view``): qc (unscaled), kc (N, B, H, c, K);
    vc (N, B, H, c, V); g (N, B, H, c). Every chunk's products at once — its intra-chunk
    outputs, what it adds to the state (U_n) and how it decays it (e^(b_C)) — then the states
    themselves, S_(n+1) = e^(b_C) S_n + U_n, one elementwise step per chunk into one buffer,
    and every chunk's read of its incoming state at once. q and k are laid out chunk-major by
    the first product that scales them (no copy of their own); v once."""
    (gc,), (s,) = gates, state
    gc, vc = gc.contiguous(), vc.contiguous()
    b = gc.cumsum(-1)  # (N, B, H, c): log decay from each chunk's start
    reads = (b.exp() * scale).unsqueeze(-1) * qc  # how each step reads the incoming state
    if factored_decays(b):  # e^(b_t - b_j) as e^(b_t) e^(-b_j): no (c, c) exponential
        keys = (-b).exp().unsqueeze(-1) * kc
        o = (reads @ keys.mT).tril_() @ vc  # intra-chunk: (N, B, H, c, V)
        writes = (keys * b[..., -1:].exp().unsqueeze(-1)).mT  # (N, B, H, K, c)
    else:  # strong decays: the masked exponential of segment sums (every exponent <= 0)
        gamma = decay_mask(gc)  # (N, B, H, c, c): e^(b_t - b_j), j <= t
        kc = kc.contiguous()
        o = ((scale * qc) @ kc.mT * gamma) @ vc
        writes = (gamma[..., -1, :].unsqueeze(-1) * kc).mT
    carry = b[..., -1].exp()[..., None, None]  # (N, B, H, 1, 1)
    added = writes @ vc  # U_n: (N, B, H, K, V)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (qc, kc, vc, gc, s)):
        states = [s]  # for autograd: no writes into a buffer
        for n in range(added.shape[0]):
            states.append(torch.addcmul(added[n], states[-1], carry[n]))
        starts = torch.stack(states)
    else:  # S_0 .. S_N written into one buffer
        starts = s.new_empty(added.shape[0] + 1, *s.shape)
        starts[0] = s
        for n in range(added.shape[0]):
            torch.addcmul(added[n], starts[n], carry[n], out=starts[n + 1])
    o += reads @ starts[:-1]
    return o, (starts[-1],)


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
