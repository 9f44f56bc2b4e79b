"""The calling convention every matrix-state op shares (flash-linear-attention's), in one place.

``op(q, k, v, *gates, scale=None, initial_state=None, output_final_state=False,
cu_seqlens=None, chunk_size=...) -> (o, final_state)``: q and k (B, T, H, K), v (B, T, H, V),
each gate (B, T, H); ``scale`` multiplies q (default K^-1/2); ``cu_seqlens`` (N + 1 offsets into
T, with B == 1) makes the batch N sequences of their own lengths, empty ones included, each with
its own initial state row; the state is a tensor (N, H, K, V), or a tuple of tensors whose first
dimension is N (mLSTM's (C, n, m)); ``final_state`` is None unless asked for.

``run`` checks the arguments (one ValueError naming the bad value), computes in float32 (float64
for float64 inputs), splits variable-length batches, and calls a family's *core* on batches of
sequences of one length: ``core(q, k, v, gates, state, scale, chunk_size) -> (o, state)`` with
q, k, v, gates in the same layout and the state as a tuple, its first dimension the batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

State = tuple[Tensor, ...]
Core = Callable[..., tuple[Tensor, State]]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_inputs(q: Tensor, k: Tensor, v: Tensor, gates: Sequence[Tensor],
                 gate_names: Sequence[str]) -> None:
    if q.dim() != 4:
        raise ValueError(f"q has shape {tuple(q.shape)}; expected (B, T, H, K)")
    if k.shape != q.shape:
        raise ValueError(f"k has shape {tuple(k.shape)}; expected q's {tuple(q.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v has shape {tuple(v.shape)}; expected (B, T, H, V) with (B, T, H) "
                         f"= {tuple(q.shape[:3])}")
    for name, gate in zip(gate_names, gates):
        if gate.shape != q.shape[:3]:
            raise ValueError(f"{name} has shape {tuple(gate.shape)}; expected (B, T, H) = "
                             f"{tuple(q.shape[:3])}")


def offsets(cu_seqlens: Tensor, batch: int, seq_len: int) -> list[int]:
    """cu_seqlens as a list of N + 1 offsets, checked."""
    if batch != 1:
        raise ValueError(f"cu_seqlens needs a batch of 1 (the sequences concatenated in T); "
                         f"got B={batch}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.is_floating_point():
        raise ValueError(f"cu_seqlens has shape {tuple(cu_seqlens.shape)} and dtype "
                         f"{cu_seqlens.dtype}; expected N + 1 integer offsets")
    found = [int(x) for x in cu_seqlens.tolist()]
    if found[0] != 0 or found[-1] != seq_len or any(b < a for a, b in itertools.pairwise(found)):
        raise ValueError(f"cu_seqlens {found} is invalid; expected non-decreasing offsets from "
                         f"0 to T={seq_len}")
    return found


def as_tuple(state) -> State:
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def run(core: Core, q: Tensor, k: Tensor, v: Tensor, gates: Sequence[Tensor], *,
        gate_names: Sequence[str], zero_state: Callable[[int, int, int, int, torch.dtype],
                                                       State],
        scale: float | None, initial_state, output_final_state: bool,
        cu_seqlens: Tensor | None, chunk_size: int | None):
    """The op's result (see the module docstring) from ``core``; ``zero_state(rows, H, K, V,
    dtype)`` is the state of no history."""
    check_inputs(q, k, v, gates, gate_names)
    batch, seq_len, heads, key_dim = q.shape
    value_dim, out_dtype = v.shape[-1], v.dtype
    scale = key_dim ** -0.5 if scale is None else scale
    dtype = compute_dtype(q.dtype)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    gates = tuple(g.to(dtype) for g in gates)
    bounds = None if cu_seqlens is None else offsets(cu_seqlens, batch, seq_len)
    rows = batch if bounds is None else len(bounds) - 1
    if initial_state is None:
        state = zero_state(rows, heads, key_dim, value_dim, dtype)
    else:
        state = tuple(s.to(dtype) for s in as_tuple(initial_state))
        expected = zero_state(rows, heads, key_dim, value_dim, dtype)
        for got, want in zip(state, expected):
            if got.shape != want.shape:
                raise ValueError(f"initial_state has a part of shape {tuple(got.shape)}; "
                                 f"expected {tuple(want.shape)} ({rows} sequences)")
        if len(state) != len(expected):
            raise ValueError(f"initial_state has {len(state)} parts; expected {len(expected)}")
    if bounds is None:
        o, final = core(q, k, v, gates, state, scale, chunk_size)
    else:
        pieces, finals = [], []
        for n, (start, end) in enumerate(itertools.pairwise(bounds)):
            part = slice(start, end)
            out, last = core(q[:, part], k[:, part], v[:, part], tuple(g[:, part] for g in gates),
                             tuple(s[n:n + 1] for s in state), scale, chunk_size)
            pieces.append(out)
            finals.append(last)
        o = torch.cat(pieces, dim=1)
        final = tuple(torch.cat(parts, dim=0) for parts in zip(*finals))
    result = None
    if output_final_state:
        result = final if len(final) > 1 else final[0]
    return o.to(out_dtype), result


def segment_sums(g: Tensor) -> Tensor:
    """(..., C) log decays -> (..., C, C) with [t, j] = g_(j+1) + ... + g_t for j <= t, -inf
    above the diagonal (masked *before* any exponential: every exponent taken is <= 0).

    Summed segment by segment, not as the difference b_t - b_j of cumulative sums: over T steps
    b reaches |Σ g| and the difference of two such sums keeps only its absolute precision
    (|b| x 6e-8 in float32: 1e-5 of relative error in e^(b_t - b_j) once |b| is 150)."""
    steps = g.shape[-1]
    after = torch.ones(steps, steps, dtype=torch.bool, device=g.device).tril(-1)  # s > j
    terms = g.unsqueeze(-1).expand(*g.shape, steps).masked_fill(~after, 0.0)  # [s, j] = g_s
    sums = terms.cumsum(-2)  # [t, j] = Σ_{j < s <= t} g_s
    return sums.masked_fill(after.transpose(0, 1), float("-inf"))


def decay_mask(g: Tensor) -> Tensor:
    """exp(g_(j+1) + ... + g_t) for j <= t, 0 above the diagonal, from the log decays g (..., C)
    (``segment_sums``)."""
    return segment_sums(g).exp()


def chunks(seq_len: int, chunk_size: int | None) -> list[slice]:
    """The chunks of a sequence: chunk_size steps each, the last one shorter when T is not a
    multiple (never padded)."""
    check_chunk(chunk_size)
    return [slice(s, min(s + chunk_size, seq_len)) for s in range(0, seq_len, chunk_size)]


def check_chunk(chunk_size: int | None) -> None:
    if chunk_size is None or isinstance(chunk_size, bool) or not isinstance(chunk_size, int) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size!r} is invalid; expected a positive integer")


def regions(seq_len: int, chunk_size: int) -> list[tuple[slice, int]]:
    """The sequence as at most two regions of equal chunks, (steps, chunk size): the whole
    chunks, computed as one batch of chunks, and the tail shorter than a chunk (never padded)."""
    check_chunk(chunk_size)
    whole = seq_len // chunk_size * chunk_size
    found = [(slice(0, whole), chunk_size)] if whole else []
    if whole < seq_len:
        found.append((slice(whole, seq_len), seq_len - whole))
    return found


FACTORED_DECAY = 20.0  # |log decay| over a chunk below which e^(b_t - b_j) = e^(b_t) e^(-b_j)


def factored_decays(b: Tensor) -> bool:
    """Whether every chunk's cumulative log decay b (..., c) stays within FACTORED_DECAY: then
    e^(b_t - b_j) may be formed as e^(b_t) x e^(-b_j) — both factors in range, the product off
    by at most 20 x 6e-8 relative in float32 — instead of a masked (c, c) exponential."""
    return bool((b >= -FACTORED_DECAY).all())


GROUP_ELEMENTS = 2 ** 18  # elements of one chunk-major input per group of chunks


def groups(chunk_count: int, chunk_elements: int) -> list[slice]:
    """Consecutive groups of chunks whose inputs hold about GROUP_ELEMENTS elements each
    (``chunk_elements`` per chunk; at least one chunk): a group's intermediates stay in the
    caches (1.7x faster than all chunks at once at T=4096, H=4, K=V=64 on a 2-vCPU EPYC),
    and memory stays bounded at any T, B and H."""
    size = max(1, GROUP_ELEMENTS // max(chunk_elements, 1))
    return [slice(i, min(i + size, chunk_count)) for i in range(0, chunk_count, size)]


Region = Callable[..., tuple[Tensor, State]]


def chunked(region: Region, q: Tensor, k: Tensor, v: Tensor, gates: Sequence[Tensor],
            state: State, chunk_size: int, *, copy: bool = True) -> tuple[Tensor, State]:
    """A chunked form's core from its ``region(q, k, v, gates, state) -> (o, state)``, which
    takes whole chunks, chunk-major (``chunk_major``: q, k (N, B, H, c, K), v (N, B, H, c, V),
    gates (N, B, H, c)) and returns o (N, B, H, c, V): the sequence's whole chunks group by
    group, then its tail (one shorter chunk, never padded), the state carried through.
    ``copy=False`` hands the region strided views in that shape instead of contiguous copies
    (``chunk_view``), for a region that first scales each input elementwise and so writes the
    chunk-major layout itself."""
    outputs = []
    lay_out = chunk_major if copy else chunk_view
    for part, size in regions(q.shape[1], chunk_size):
        pieces = [lay_out(t[:, part], size) for t in (q, k, v, *gates)]
        parts = []
        for group in groups(pieces[0].shape[0], pieces[0][0].numel()):
            qc, kc, vc, *gc = (p[group] for p in pieces)
            o, state = region(qc, kc, vc, tuple(gc), state)
            parts.append(o)
        outputs.append(from_chunk_major(parts))
    if not outputs:
        return v.new_zeros(v.shape), state
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)), state


def chunk_major(x: Tensor, size: int) -> Tensor:
    """(B, L, H, ...) -> (L / size, B, H, size, ...), contiguous: chunk-major, so that one
    chunk's slice of anything computed from it is contiguous for the step-per-chunk loop."""
    batch, steps = x.shape[:2]
    return x.reshape(batch, steps // size, size, *x.shape[2:]).movedim(1, 0).transpose(
        2, 3).contiguous()


def chunk_view(x: Tensor, size: int) -> Tensor:
    """(B, L, H, ...) -> (L / size, B, H, size, ...) as a view of x (``chunk_major`` without the
    copy)."""
    batch, steps = x.shape[:2]
    return x.reshape(batch, steps // size, size, *x.shape[2:]).movedim(1, 0).transpose(2, 3)


def from_chunk_major(parts: Sequence[Tensor]) -> Tensor:
    """Consecutive groups of chunks (N_i, B, H, c, V) -> (B, Σ N_i c, H, V), written once:
    ``chunk_major``'s inverse for outputs."""
    laid = [o.permute(1, 0, 3, 2, 4) for o in parts]  # (B, N_i, c, H, V) views
    whole = laid[0] if len(laid) == 1 else torch.cat(laid, 1)
    batch, chunks, size, heads, width = whole.shape
    return whole.reshape(batch, chunks * size, heads, width)
