"""Linear recurrences computed by a parallel scan instead of a loop over time.

minGRU, minLSTM and RG-LRU are linear in the state: h_t = a_t ⊙ h_{t-1} + b_t, with a_t in
(0, 1] and b_t computed from the input alone. The whole sequence then has a closed form. In log
space (Heinsen 2023, "Efficient Parallelization of a Ubiquitous Sequential Computation"), with
A_t = Σ_{k<=t} log a_k,

    h_t = exp(A_t) ⊙ (h_0 + Σ_{k<=t} exp(log b_k - A_k))
        = exp(A_t + logcumsumexp_k(log b_k - A_k))           (h_0 as the term k = 0),

one cumsum and one logcumsumexp over time, both parallel. A b_t of either sign (RG-LRU) is
split into its positive and negative parts, each scanned on its own (the recurrence is linear).
A padded step of a variable-length batch has a = 1 and b = 0, so the state passes through it
unchanged; the output there is zero.

The log-space form loses precision where it cancels: A_t and log b_k - A_k grow with the
sequence and with saturated gates, and exp(A_t + ...) keeps only about |A_t| * eps of relative
precision (worse in the gradients, and worse still where b is split by sign). ``chunk_size``
scans in chunks instead, each by a parallel prefix scan of the affine maps h -> a h + b
(Hillis and Steele): only products of decays in [0, 1] and sums of b are formed, so nothing
cancels, and the state is carried from one chunk to the next. Any chunk size gives the same
result up to rounding; the suites hold an implementation to that.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Stands for log 0. Finite on purpose: -inf would make logcumsumexp's backward compute
# exp(-inf - -inf) = NaN wherever a prefix holds only zeros; exp(LOG_ZERO + anything a scan adds)
# underflows to exactly 0 in float32 and float64 alike.
LOG_ZERO = -1e4


def safe_log(values: Tensor) -> Tensor:
    """log of a tensor >= 0, LOG_ZERO where it is 0 (no inf, no NaN, in value or gradient)."""
    tiny = torch.finfo(values.dtype).tiny
    return torch.where(values > 0, values.clamp_min(tiny).log(),
                       torch.full_like(values, LOG_ZERO))


def log_parts(b: Tensor) -> tuple[Tensor, Tensor | None]:
    """log of b's positive part and of its negative part (None when b has no negative entry);
    LOG_ZERO where a part is 0."""
    positive = safe_log(b.clamp_min(0))
    if not bool((b < 0).any()):
        return positive, None
    return positive, safe_log((-b).clamp_min(0))


def scan_positive(log_a: Tensor, log_b: Tensor, log_h0: Tensor) -> Tensor:
    """h_t for t = 1..T of h_t = a_t h_{t-1} + b_t with every term positive, in log space.

    log_a, log_b: (T, B, H); log_h0: (B, H) (LOG_ZERO for a zero state). Returns (T, B, H)."""
    decay = torch.cumsum(log_a, dim=0)  # A_t, (T, B, H)
    terms = torch.cat([log_h0.unsqueeze(0), log_b - decay], dim=0)  # (T + 1, B, H)
    return torch.exp(decay + torch.logcumsumexp(terms, dim=0)[1:])


def scan(log_a: Tensor, b: Tensor, h0: Tensor, *, b_log: Tensor | None = None) -> Tensor:
    """h_t (T, B, H) of h_t = a_t h_{t-1} + b_t, from log a (T, B, H), b (T, B, H) and h_0
    (B, H) of any sign. ``b_log``: log b when b is known positive (skips the split)."""
    if b_log is not None and not bool((h0 < 0).any()):
        return scan_positive(log_a, b_log, log_parts(h0)[0])
    b_pos, b_neg = log_parts(b)
    h_pos, h_neg = log_parts(h0)
    out = scan_positive(log_a, b_pos, h_pos)
    if b_neg is not None or h_neg is not None:
        neg_b = b_neg if b_neg is not None else torch.full_like(b_pos, LOG_ZERO)
        neg_h = h_neg if h_neg is not None else torch.full_like(h_pos, LOG_ZERO)
        out = out - scan_positive(log_a, neg_b, neg_h)
    return out


def doubling_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t for t = 1..C of h_t = a_t h_{t-1} + b_t, b of any sign, by a parallel prefix scan of
    the affine maps h -> a h + b (Hillis and Steele): after the level of distance d, element t
    holds the composition of steps t-2d+1 .. t; log2(C) levels of elementwise products and sums
    over the whole (C, B, H) block. Only products of decays in [0, 1] and sums of b are formed —
    nothing cancels, so it is as exact as the loop.

    a, b: (C, B, H); h0: (B, H). Returns (C, B, H)."""
    steps, distance = a.shape[0], 1
    while distance < steps:
        # compose step t with the map ending at t - distance (identity before the start)
        b = torch.cat([b[:distance], torch.addcmul(b[distance:], a[distance:], b[:-distance])])
        a = torch.cat([a[:distance], a[distance:] * a[:-distance]])
        distance *= 2
    return torch.addcmul(b, a, h0.unsqueeze(0))


def chunked(log_a: Tensor, b: Tensor, h0: Tensor, *, chunk_size: int | None,
            b_log: Tensor | None = None) -> Tensor:
    """h_t (T, B, H) of h_t = a_t h_{t-1} + b_t.

    chunk_size None: the whole sequence in one log-space scan (``scan``: Heinsen's
    logcumsumexp, b split by sign when it has both). A chunk size: ``chunked_affine`` with
    a = exp(log a)."""
    if chunk_size is None:
        return scan(log_a, b, h0, b_log=b_log)
    return chunked_affine(log_a.exp(), b, h0, chunk_size=chunk_size)


def chunked_affine(a: Tensor, b: Tensor, h0: Tensor, *, chunk_size: int) -> Tensor:
    """h_t (T, B, H) of h_t = a_t h_{t-1} + b_t from the decays themselves: ``doubling_scan``
    over chunks of ``chunk_size`` steps, the last state of each chunk the initial state of the
    next; as accurate as the loop (nothing cancels)."""
    pieces, state = [], h0
    for start in range(0, a.shape[0], chunk_size):
        part = slice(start, min(start + chunk_size, a.shape[0]))
        out = doubling_scan(a[part], b[part], state)
        pieces.append(out)
        state = out[-1]
    return torch.cat(pieces, dim=0)


def masked(log_a: Tensor, b: Tensor, mask: Tensor | None,
           b_log: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Padded steps (mask (T, B) False) get a = 1 and b = 0: the state passes through."""
    if mask is None:
        return log_a, b, b_log
    valid = mask.unsqueeze(2)  # (T, B, 1)
    log_a = torch.where(valid, log_a, torch.zeros_like(log_a))
    b = torch.where(valid, b, torch.zeros_like(b))
    if b_log is not None:
        b_log = torch.where(valid, b_log, torch.full_like(b_log, LOG_ZERO))
    return log_a, b, b_log


def masked_affine(a: Tensor, b: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Padded steps (mask (T, B) False) get a = 1 and b = 0: the state passes through."""
    if mask is None:
        return a, b
    valid = mask.unsqueeze(2)  # (T, B, 1)
    return torch.where(valid, a, torch.ones_like(a)), torch.where(valid, b, torch.zeros_like(b))
