"""The gated delta rule (Gated DeltaNet; DeltaNet is g = 0): per head,
S' = exp(g_t) S_{t-1}, u_t = beta_t (v_t - S'^T k_t), S_t = S' + k_t u_t^T, o_t = S_t^T (scale q_t)
— the decay before the delta error, the paper's order. Keys are L2-normalised by the caller.

- ``recurrent``: the loop above (the family's reference);
- ``chunk``: the WY / UT form, per chunk of C steps with b the inclusive cumulative log decay:
  Γ_lj = e^(b_l - b_j) (l >= j, masked before the exponential), A = StrictTril(diag(β)(K K^T ⊙
  Γ)), T = (I + A)^-1 by a unit-triangular solve, W = T (diag(β) K ⊙ e^b), U = T diag(β) V,
  U' = U - W S_prev, O = ((scale Q) ⊙ e^b) S_prev + ((scale Q) K^T ⊙ Γ) U',
  S_next = e^(b_C) S_prev + (K ⊙ e^(b_C - b))^T U'.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.ops.scalar_decay import zero_state
from harness.ops.sequences import (
    State,
    chunked,
    decay_mask,
    factored_decays,
    run,
)

GATES = ("g", "beta")


def recurrent_core(q, k, v, gates, state, scale, chunk_size) -> tuple[Tensor, State]:
    (g, beta), (s,) = gates, state  # g, beta (B, T, H); s (B, H, K, V)
    outputs = []
    for t in range(q.shape[1]):
        s = s * g[:, t].exp()[..., None, None]  # decay first
        error = v[:, t] - torch.einsum("bhkv,bhk->bhv", s, k[:, t])  # (B, H, V)
        s = s + k[:, t, :, :, None] * (beta[:, t, :, None] * error)[..., None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
    o = torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)
    return o, (s,)


def chunk_core(q, k, v, gates, state, scale, chunk_size) -> tuple[Tensor, State]:
    o, (s,) = chunked(region, q * scale, k, v, gates, state, chunk_size)
    return o, (s,)


def region(qc, kc, vc, gates, state) -> tuple[Tensor, State]:
    """Whole chunks, chunk-major: qc (scaled), kc (N, B, H, c, K); vc (N, B, H, c, V); g and
    β (N, B, H, c). Every chunk's WY factors at once (one batched triangular solve); with them
    each chunk is an affine map of its incoming state,
    S_(n+1) = (e^(b_C) I - X_n W_n) S_n + X_n U_n (X_n = (K ⊙ e^(b_C - b))^T), and its output
    O_n = (R_n - M_n W_n) S_n + M_n U_n (R = (scale Q) ⊙ e^b, M the masked scores): the maps are
    built at once, the states carried one product per chunk, the outputs read at once."""
    (gc, betas), (s,) = gates, state
    key_dim = kc.shape[-1]
    b = gc.cumsum(-1)  # (N, B, H, c)
    growth = b.exp().unsqueeze(-1)  # e^b: (N, B, H, c, 1)
    kb = kc * betas.unsqueeze(-1)  # diag(β) K
    kbg = kb * growth  # diag(β)(K ⊙ e^b)
    reads = qc * growth
    if factored_decays(b):  # e^(b_t - b_j) as e^(b_t) e^(-b_j): no (c, c) exponential
        keys = kc * (-b).exp().unsqueeze(-1)
        unit = (kbg @ keys.mT).tril_(-1)  # A, strictly lower
        scores = (reads @ keys.mT).tril_()  # (N, B, H, c, c)
        writes = (keys * b[..., -1:].exp().unsqueeze(-1)).mT  # (N, B, H, K, c)
    else:  # strong decays: the masked exponential of segment sums (every exponent <= 0)
        gamma = decay_mask(gc)  # (N, B, H, c, c): e^(b_t - b_j), zero above
        unit = (kb @ kc.mT * gamma).tril_(-1)
        scores = qc @ kc.mT * gamma
        writes = (kc * gamma[..., -1, :].unsqueeze(-1)).mT
    unit.diagonal(dim1=-2, dim2=-1).fill_(1.0)  # I + A
    # T = (I + A)^-1 on both right-hand sides at once: diag(β)(K ⊙ e^b) and diag(β) V
    both = torch.linalg.solve_triangular(
        unit, torch.cat([kbg, vc * betas.unsqueeze(-1)], -1), upper=False, unitriangular=True)
    w, u = both[..., :key_dim], both[..., key_dim:]  # W (N, B, H, c, K), U (.., V)
    reads = reads - scores @ w  # (N, B, H, c, K)
    o = scores @ u  # (N, B, H, c, V)
    carry = b[..., -1].exp()[..., None, None]  # (N, B, H, 1, 1)
    identity = torch.eye(key_dim, dtype=s.dtype, device=s.device)
    batch, heads = s.shape[:2]
    maps = carry * identity - writes @ w  # (N, B, H, K, K), contiguous
    added = writes @ u  # (N, B, H, K, V)
    state, starts = s.reshape(batch * heads, *s.shape[2:]), []
    for n in range(added.shape[0]):
        starts.append(state)
        state = torch.baddbmm(added[n].view_as(state), maps[n].view(
            batch * heads, key_dim, key_dim), state)
    o += reads @ torch.stack(starts).view(-1, *s.shape)
    return o, (state.view_as(s),)


def call(core, q, k, v, g, beta, *, scale=None, initial_state=None, output_final_state=False,
         cu_seqlens=None, chunk_size=None):
    return run(core, q, k, v, (g, beta), gate_names=GATES, zero_state=zero_state, scale=scale,
               initial_state=initial_state, output_final_state=output_final_state,
               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def gated_delta_recurrent(q, k, v, g, beta, *, scale=None, initial_state=None,
                          output_final_state=False, cu_seqlens=None):
    """The reference: the gated delta rule step by step."""
    return call(recurrent_core, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def gated_delta_chunk(q, k, v, g, beta, *, scale=None, initial_state=None,
                      output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The chunked WY / UT form: a unit-triangular solve per chunk, the state carried between
    chunks."""
    return call(chunk_core, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                chunk_size=chunk_size)
