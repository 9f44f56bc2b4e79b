"""The gated delta rule (Gated DeltaNet; DeltaNet is g = 0): per head,
S' = exp(g_t) S_{t-1}, u_t = beta_t (v_t - S'^T k_t), S_t = S' + k_t u_t^T, o_t = S_t^T (scale q_t)
— the decay before the delta error, the paper's order. Keys are L2-normalised by the caller.

- ``recurrent``: the loop above (the family's reference);
- ``chunk``: the WY / UT form, per chunk of C steps with b the inclusive cumulative log decay:
  Γ_lj = e^(b_l - b_j) (l >= j, masked before the exponential), A = StrictTril(diag(β)(K K^T ⊙
  Γ)), T = (I + A)^-1 formed explicitly from batched products (16 x 16 diagonal blocks as the
  finite series of the nilpotent A, merged pairwise: [[L11, 0], [L21, L22]]^-1 =
  [[T11, 0], [-T22 L21 T11, T22]]), W = T (diag(β) K ⊙ e^b), U = T diag(β) V,
  U' = U - W S_prev, O = ((scale Q) ⊙ e^b) S_prev + ((scale Q) K^T ⊙ Γ) U',
  S_next = e^(b_C) S_prev + (K ⊙ e^(b_C - b))^T U'.
"""

from __future__ import annotations

import functools

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
    o, (s,) = chunked(functools.partial(region, scale=scale), q, k, v, gates, state, chunk_size,
                      copy=False)
    return o, (s,)


BLOCK = 16  # the diagonal blocks unit_inverse inverts directly


def nilpotent_inverse(a: Tensor) -> Tensor:
    """(I + a)^-1 for a strictly lower a (..., n, n): a^n = 0, so the inverse is the finite
    series I - a + a^2 - ... = (I - a)(I + a^2)(I + a^4)..., log2(n) squarings and products."""
    n = a.shape[-1]
    inverse = torch.eye(n, dtype=a.dtype, device=a.device) - a
    power, reached = a, 2  # the product so far is the series up to a^(reached - 1)
    while reached < n:
        power = power @ power
        inverse = inverse + inverse @ power
        reached *= 2
    return inverse


def diagonal_blocks(x: Tensor, count: int, size: int) -> Tensor:
    """The ``count`` diagonal (size, size) blocks of x (..., count size, count size), as a view
    (..., count, size, size)."""
    return x.unflatten(-1, (count, size)).unflatten(-3, (count, size)).diagonal(
        dim1=-4, dim2=-2).movedim(-1, -3)


def lower_blocks(x: Tensor, pairs: int, size: int) -> Tensor:
    """Blocks (2p + 1, 2p), p < pairs, of x (..., 2 pairs size, 2 pairs size) in (size, size)
    blocks: the lower-left block of each diagonal (2 size, 2 size) block, as a view
    (..., pairs, size, size)."""
    split = x.unflatten(-1, (pairs, 2, size)).unflatten(-4, (pairs, 2, size))
    return split[..., :, 1, :, :, 0, :].diagonal(dim1=-4, dim2=-2).movedim(-1, -3)


def unit_inverse(a: Tensor) -> Tensor:
    """(I + a)^-1 for a strictly lower a (..., c, c), by blocks: the diagonal BLOCK x BLOCK
    blocks by ``nilpotent_inverse``, then pairs of inverted diagonal blocks merged level by
    level, [[L11, 0], [L21, L22]]^-1 = [[T11, 0], [-T22 L21 T11, T22]], up to c (padded with
    zeros to BLOCK x a power of two: the padding inverts to I and is cut off). Batched
    products only: no triangular solve."""
    c = a.shape[-1]
    if c <= BLOCK:
        return nilpotent_inverse(a)
    size = BLOCK
    while size < c:
        size *= 2
    if size != c:
        a = torch.nn.functional.pad(a, (0, size - c, 0, size - c))
    count, block = size // BLOCK, BLOCK
    # Written over a itself when no gradient needs it: each block of a is read once, by the
    # step that then writes T's block in its place, and a's upper blocks are already zero.
    inverse = torch.zeros_like(a) if a.requires_grad else a
    diagonal = nilpotent_inverse(diagonal_blocks(a, count, block))  # (..., count, block, block)
    diagonal_blocks(inverse, count, block).copy_(diagonal)
    while count > 1:
        count //= 2
        merged = -(diagonal[..., 1::2, :, :] @ lower_blocks(a, count, block)
                   @ diagonal[..., 0::2, :, :])  # -T22 L21 T11 per pair
        lower_blocks(inverse, count, block).copy_(merged)
        block *= 2
        if count > 1:  # the merged blocks, copied out: inverse is written again below
            diagonal = diagonal_blocks(inverse, count, block).clone()
    return inverse[..., :c, :c] if size != c else inverse


def region(qc, kc, vc, gates, state, scale) -> tuple[Tensor, State]:
    """Whole chunks as chunk-major views (``chunk_view``): qc (unscaled), kc (N, B, H, c, K);
    vc (N, B, H, c, V); g and β (N, B, H, c). Every chunk's WY factors at once (T by
    ``unit_inverse``, W = T diag(β)(K ⊙ e^b), U = T diag(β) V); then the state carried one
    chunk at a time, U'_n = U_n - W_n S_n and S_(n+1) = e^(b_C) S_n + X_n U'_n
    (X_n = (K ⊙ e^(b_C - b))^T); then every output at once, O_n = R_n S_n + M_n U'_n
    (R = (scale Q) ⊙ e^b, M the masked scores)."""
    (gc, betas), (s,) = gates, state
    gc, betas = gc.contiguous(), betas.contiguous()  # so that every factor below is contiguous
    b = gc.cumsum(-1)  # (N, B, H, c)
    growth = b.exp()  # e^b
    # each product below has its contiguous factor first: its result is laid out chunk-major
    kbg = (betas * growth).unsqueeze(-1) * kc  # diag(β)(K ⊙ e^b): (N, B, H, c, K)
    reads = (growth * scale).unsqueeze(-1) * qc  # R
    if factored_decays(b):  # e^(b_t - b_j) as e^(b_t) e^(-b_j): no (c, c) exponential
        keys = (-b).exp().unsqueeze(-1) * kc
        unit = (kbg @ keys.mT).tril_(-1)  # A, strictly lower: (N, B, H, c, c)
        scores = (reads @ keys.mT).tril_()  # M
        writes = ((b[..., -1:] - b).exp().unsqueeze(-1) * kc).mT  # X: (N, B, H, K, c)
    else:  # strong decays: the masked exponential of segment sums (every exponent <= 0)
        gamma = decay_mask(gc)  # (N, B, H, c, c): e^(b_t - b_j), zero above
        kc = kc.contiguous()
        unit = ((betas.unsqueeze(-1) * kc) @ kc.mT * gamma).tril_(-1)
        scores = (scale * qc) @ kc.mT * gamma
        writes = (gamma[..., -1, :].unsqueeze(-1) * kc).mT
    inverse = unit_inverse(unit)  # T = (I + A)^-1
    w = inverse @ kbg  # W (N, B, H, c, K)
    u = inverse @ (betas.unsqueeze(-1) * vc)  # U (N, B, H, c, V)
    chunks, (batch, heads, key_dim, value_dim), size = w.shape[0], s.shape, w.shape[-2]
    rows = batch * heads
    carry = b[..., -1].exp().reshape(chunks, rows, 1, 1)  # e^(b_C)
    w, writes = w.view(chunks, rows, size, key_dim), writes.reshape(chunks, rows, key_dim, size)
    u = u.view(chunks, rows, size, value_dim)
    if torch.is_grad_enabled() and any(
            t.requires_grad for t in (qc, kc, vc, gc, betas, s)):  # for autograd: no in-place
        state, starts, fresh = s.reshape(rows, key_dim, value_dim), [], []
        for u_n, w_n, x_n, c_n in zip(u.unbind(), w.unbind(), writes.unbind(), carry.unbind()):
            starts.append(state)
            fresh.append(torch.baddbmm(u_n, w_n, state, alpha=-1))  # U'_n
            state = torch.baddbmm(state * c_n, x_n, fresh[-1])
        starts.append(state)
        starts, u = torch.stack(starts), torch.stack(fresh)
    else:  # U' over U in place; the states S_0 .. S_N written into one buffer
        starts = s.new_empty(chunks + 1, rows, key_dim, value_dim)
        starts[0] = s.reshape(rows, key_dim, value_dim)
        # every chunk's views made at once (indexing in the loop cost a fifth of it)
        fresh, ws, xs, cs, ss = (t.unbind() for t in (u, w, writes, carry, starts))
        for n in range(chunks):
            fresh[n].baddbmm_(ws[n], ss[n], alpha=-1)
            torch.mul(ss[n], cs[n], out=ss[n + 1]).baddbmm_(xs[n], fresh[n])
    o = reads @ starts[:-1].view(chunks, *s.shape)  # (N, B, H, c, V)
    o += scores @ u.view(chunks, batch, heads, size, value_dim)
    return o, (starts[-1].view_as(s),)


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
                      output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The chunked WY / UT form: each chunk's (I + A)^-1 by blocks of batched products, the
    state carried between chunks. Chunks of 32 by default: the intra-chunk products grow with
    the chunk and the state products per step do not, so at K = V = 64 on a CPU 32 beats 64
    (docs/ops.md, Speed)."""
    return call(chunk_core, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                chunk_size=chunk_size)
