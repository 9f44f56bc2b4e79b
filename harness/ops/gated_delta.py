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
    blocks,
    decay_mask,
    factored_decays,
    in_chunks,
    regions,
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
    (g, beta), (s,) = gates, state
    # (B, H, T, .), laid out once: elementwise products keep their operands' strides, and
    # every batched product over chunks of a transposed view would copy it again
    qs, kt, vt = ((q * scale).transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(),
                  v.transpose(1, 2).contiguous())
    gt, bt = g.transpose(1, 2), beta.transpose(1, 2)  # (B, H, T)
    outputs = []
    for part, size in regions(q.shape[1], chunk_size):
        o, s = region(qs[:, :, part], kt[:, :, part], vt[:, :, part], gt[:, :, part],
                      bt[:, :, part], s, size)
        outputs.append(o)
    o = torch.cat(outputs, 2).transpose(1, 2) if outputs else v.new_zeros(v.shape)
    return o, (s,)


def region(qs, kt, vt, gt, bt, s, size) -> tuple[Tensor, Tensor]:
    """Chunks of ``size`` steps. Every chunk's WY factors at once (one batched triangular
    solve); with them each chunk is an affine map of its incoming state,
    S_(n+1) = (e^(b_C) I - X_n W_n) S_n + X_n U_n (X_n = (K ⊙ e^(b_C - b))^T), and its output
    O_n = (R_n - M_n W_n) S_n + M_n U_n (R = (scale Q) ⊙ e^b, M the masked scores): the maps are
    built at once, the states carried one product per chunk, the outputs read at once."""
    qc, kc, vc, gc, betas = (in_chunks(t, size) for t in (qs, kt, vt, gt, bt))
    b = gc.cumsum(-1)  # (B, H, N, c)
    kb = kc * betas.unsqueeze(-1)  # diag(β) K
    reads = qc * b.exp().unsqueeze(-1)
    if factored_decays(b):  # e^(b_t - b_j) as e^(b_t) e^(-b_j): no (c, c) exponential
        keys = kc * (-b).exp().unsqueeze(-1)
        a = ((kb * b.exp().unsqueeze(-1)) @ keys.transpose(-1, -2)).tril_(-1)  # strictly lower
        scores = (reads @ keys.transpose(-1, -2)).tril_()  # (B, H, N, c, c)
        writes = (keys * b[..., -1:].exp().unsqueeze(-1)).transpose(-1, -2)  # (B, H, N, K, c)
    else:  # strong decays: the masked exponential of segment sums (every exponent <= 0)
        gamma = decay_mask(gc)  # (B, H, N, c, c): e^(b_t - b_j), zero above
        a = (kb @ kc.transpose(-1, -2) * gamma).tril(-1)
        scores = qc @ kc.transpose(-1, -2) * gamma
        writes = (kc * gamma[..., -1, :].unsqueeze(-1)).transpose(-1, -2)
    unit = a + torch.eye(size, dtype=a.dtype, device=a.device)
    # T = (I + A)^-1 applied to both right-hand sides in one solve: W = T diag(β)(K ⊙ e^b),
    # U = T diag(β) V
    both = torch.linalg.solve_triangular(
        unit, torch.cat([kb * b.exp().unsqueeze(-1), vc * betas.unsqueeze(-1)], -1),
        upper=False, unitriangular=True)
    w, u = both[..., :kc.shape[-1]], both[..., kc.shape[-1]:]  # (B, H, N, c, K), (.., V)
    reads = reads - scores @ w  # (B, H, N, c, K)
    o = scores @ u  # (B, H, N, c, V)
    carry = b[..., -1].exp()[..., None, None]
    identity = torch.eye(s.shape[-2], dtype=s.dtype, device=s.device)
    batch, heads = s.shape[:2]
    for part in blocks(qc.shape[2], s[0].numel()):
        # each chunk's map, chunk-major and contiguous: one baddbmm per chunk, no copies
        maps = (carry[:, :, part] * identity - writes[:, :, part] @ w[:, :, part])
        maps = maps.permute(2, 0, 1, 3, 4).reshape(-1, batch * heads, *maps.shape[-2:])
        added = (writes[:, :, part] @ u[:, :, part]).permute(2, 0, 1, 3, 4)
        added = added.reshape(-1, batch * heads, *added.shape[-2:])  # (n, B * H, K, V)
        state, starts = s.reshape(batch * heads, *s.shape[2:]), []
        for n in range(added.shape[0]):
            starts.append(state)
            state = torch.baddbmm(added[n], maps[n], state)
        s = state.view_as(s)
        o[:, :, part] += reads[:, :, part] @ torch.stack(starts, 1).view(
            batch, heads, -1, *s.shape[2:])
    return o.reshape(*o.shape[:2], -1, o.shape[-1]), s


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
