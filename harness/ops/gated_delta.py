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
from harness.ops.sequences import State, chunks, decay_mask, run

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
    (g, beta), (s,) = gates, state
    qs, kt, vt = ((q * scale).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B,H,T,.)
    gt, bt = g.transpose(1, 2), beta.transpose(1, 2)  # (B, H, T)
    outputs = []
    for part in chunks(q.shape[1], chunk_size):
        qc, kc, vc, betas = qs[:, :, part], kt[:, :, part], vt[:, :, part], bt[:, :, part]
        b = gt[:, :, part].cumsum(-1)  # (B, H, c)
        gamma = decay_mask(gt[:, :, part])  # (B, H, c, c): e^(b_t - b_j), zero above
        kb = kc * betas.unsqueeze(-1)  # diag(β) K
        a = (kb @ kc.transpose(-1, -2) * gamma).tril(-1)  # strictly lower
        identity = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        w = torch.linalg.solve_triangular(identity + a, kb * b.exp().unsqueeze(-1), upper=False,
                                          unitriangular=True)
        u = torch.linalg.solve_triangular(identity + a, vc * betas.unsqueeze(-1), upper=False,
                                          unitriangular=True)
        u = u - w @ s  # (B, H, c, V)
        outputs.append((qc * b.exp().unsqueeze(-1)) @ s + (qc @ kc.transpose(-1, -2) * gamma) @ u)
        into = (kc * gamma[..., -1, :].unsqueeze(-1)).transpose(-1, -2)  # (B, H, K, c)
        s = s * b[..., -1:].exp().unsqueeze(-1) + into @ u
    o = torch.cat(outputs, 2).transpose(1, 2) if outputs else v.new_zeros(v.shape)
    return o, (s,)


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
