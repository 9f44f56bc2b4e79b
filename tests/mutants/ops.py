"""Matrix-state ops with one bug each, the bugs their users report (fla, mamba, mlstm_kernels
issues): each the built-in form with one thing done the wrong way. tests/test_mutants.py proves
the check written for each catches it, and the built-in forms pass the same checks."""

from __future__ import annotations

import functools
import itertools
from unittest import mock

import torch

from harness.ops import gated_delta, mlstm, scalar_decay, sequences
from harness.ops.sequences import as_tuple, chunked, chunks, decay_mask


def scalar_chunk(name: str, doc: str, **bug):
    """An op with scalar_decay_chunk's signature around scalar_chunk_core with ``bug`` on."""
    core = functools.partial(scalar_chunk_core, **bug)

    def op(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False,
           cu_seqlens=None, chunk_size=64):
        return scalar_decay.call(core, q, k, v, g, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                 chunk_size=chunk_size)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


def scalar_chunk_core(q, k, v, gates, state, scale, chunk_size, *, mask_after=False,
                      carry_lag=0, pad=False, empty_tail=False, zero_is_reset=False):
    """scalar_decay.chunk_core with the bugs below switched on one at a time."""
    (g,), (s,) = gates, state
    if zero_is_reset:  # a "safe" exp: log decay 0 taken as "no decay term", i.e. decay 0
        g = torch.where(g == 0, torch.full_like(g, -1e4), g)
    steps = q.shape[1]
    if pad and steps % chunk_size:  # padded to a multiple of the chunk, decay kept non-zero
        extra = chunk_size - steps % chunk_size
        q, k, v = (torch.cat([t, t.new_zeros(t.shape[0], extra, *t.shape[2:])], 1)
                   for t in (q, k, v))
        g = torch.cat([g, g[:, -1:].expand(-1, extra, -1)], 1)
    qs, kt, vt, gt = ((q * scale).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                      g.transpose(1, 2))
    outputs = torch.empty(q.shape[0], q.shape[2], q.shape[1], v.shape[-1], dtype=v.dtype)
    for part in chunks(q.shape[1], chunk_size):
        if empty_tail and part.stop - part.start < chunk_size:
            break  # the tail chunk never computed: its outputs stay what empty() held
        qc, kc, vc = qs[:, :, part], kt[:, :, part], vt[:, :, part]
        b = gt[:, :, part].cumsum(-1)
        if mask_after:  # exponentiate every b_t - b_j, then mask by multiplying: inf * 0
            lower = torch.ones(b.shape[-1], b.shape[-1], dtype=b.dtype).tril()
            gamma = (b.unsqueeze(-1) - b.unsqueeze(-2)).exp() * lower
        else:
            gamma = decay_mask(gt[:, :, part])
        outputs[:, :, part] = ((qc @ kc.transpose(-1, -2) * gamma) @ vc
                               + (qc * b.exp().unsqueeze(-1)) @ s)
        last = b[..., -1 - carry_lag:b.shape[-1] - carry_lag]  # the carry's decay
        into = (kc * (b[..., -1:] - b).exp().unsqueeze(-1)).transpose(-1, -2)
        s = s * last.exp().unsqueeze(-1) + into @ vc
    o = outputs.transpose(1, 2)[:, :steps]
    return o, (s,)


MaskAfterExpScalarDecay = scalar_chunk(
    "MaskAfterExpScalarDecay", "The causal mask applied after the exponential, by a product: "
    "e^(b_t - b_j) overflows above the diagonal, inf x 0 = NaN.", mask_after=True)
CarryOffByOneScalarDecay = scalar_chunk(
    "CarryOffByOneScalarDecay", "The state carried to the next chunk one step of decay short.",
    carry_lag=1)
PaddedChunkScalarDecay = scalar_chunk(
    "PaddedChunkScalarDecay", "T padded to a multiple of the chunk with the last decay kept: "
    "the final state decays through the padding.", pad=True)
EmptyTailScalarDecay = scalar_chunk(
    "EmptyTailScalarDecay", "The output written chunk by chunk into torch.empty, the tail "
    "chunk skipped when T is no multiple: it returns whatever the memory held.", empty_tail=True)
ZeroDecayIsResetScalarDecay = scalar_chunk(
    "ZeroDecayIsResetScalarDecay", "An exact-zero log decay taken as 'no decay term', i.e. "
    "decay 0: the state is reset where it should be kept.", zero_is_reset=True)


def IgnoresInitialStateScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                   output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The initial state accepted and dropped: every sequence starts from zero."""
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=None,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def HardcodedScaleGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The scale keyword accepted and ignored: q always times K^-1/2, as a kernel written for one
    model does (wrong for Mamba-2's SSD mapping, which takes scale 1)."""
    return gated_delta.gated_delta_chunk(q, k, v, g, beta, initial_state=initial_state,
                                         output_final_state=output_final_state,
                                         cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def VarlenScaleDroppedMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                            output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Its variable-length path (in real code a launch of its own) does not pass scale on:
    every call with cu_seqlens scales q by K^-1/2. mLSTM's output moves with the scale only
    through its floor e^-m and eps, so values at the default scale hide it."""
    return mlstm.mlstm_chunk(q, k, v, i, f, scale=None if cu_seqlens is not None else scale,
                             initial_state=initial_state, output_final_state=output_final_state,
                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def InPlaceScaledQueryScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                  output_final_state=False, cu_seqlens=None, chunk_size=64):
    """q scaled in place (``q.mul_(scale)``) to save a copy: the caller's q changes."""
    q.mul_(q.shape[-1] ** -0.5 if scale is None else scale)
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=1.0, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


BUFFERS: dict[tuple, torch.Tensor] = {}  # ReusedBufferMLSTM's output buffers, by shape


def ReusedBufferMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                      output_final_state=False, cu_seqlens=None, chunk_size=64):
    """o copied into one buffer per shape, kept between calls to save allocations: the next
    call of that shape overwrites what the previous caller holds."""
    o, state = mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state,
                                 cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    key = (tuple(o.shape), o.dtype)
    if key not in BUFFERS:
        BUFFERS[key] = torch.empty_like(o)
    return BUFFERS[key].copy_(o.detach()), state


CACHE: dict[tuple, tuple] = {}  # CachedStateGatedDelta's last final state, by shape


def CachedStateGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                          output_final_state=False, cu_seqlens=None, chunk_size=32):
    """A generation cache kept inside the kernel's wrapper (by shape) and never reset: a call
    without initial_state continues from the state the last call of that shape ended in."""
    key = (tuple(q.shape), tuple(v.shape), q.dtype,
           None if cu_seqlens is None else tuple(cu_seqlens.tolist()))
    if initial_state is None and key in CACHE:
        initial_state = CACHE[key]
    o, state = gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=True, cu_seqlens=cu_seqlens,
                                             chunk_size=chunk_size)
    CACHE[key] = state.detach()
    return o, state if output_final_state else None


class _GradientTimes(torch.autograd.Function):
    """The identity forward; the gradient multiplied by ``factor`` on its way back."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def ScaleMissingInDqScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                output_final_state=False, cu_seqlens=None, chunk_size=64):
    """A hand-written backward that forgets the scale in dq (the forward applies it): right
    values, dq K^(1/2) times too large at the default scale."""
    factor = 1.0 / (q.shape[-1] ** -0.5 if scale is None else scale)
    return scalar_decay.scalar_decay_chunk(_GradientTimes.apply(q, factor), k, v, g,
                                           scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def DetachedFinalStateGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                                 output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The final state returned detached (a kernel whose backward takes no dht): right values,
    and the gradient a loss sends through the final state never reaches q, k, v or the gates."""
    o, state = gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return o, None if state is None else state.detach()


def TwoPathsGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                       output_final_state=False, cu_seqlens=None, chunk_size=32):
    """A kernel specialised on its state I/O whose variant without a final state output also
    drops the initial state: right whenever the final state is asked for, wrong in the call a
    model makes in training (output_final_state=False) with a cache's state."""
    return gated_delta.gated_delta_chunk(
        q, k, v, g, beta, scale=scale,
        initial_state=initial_state if output_final_state else None,
        output_final_state=output_final_state, cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def as_if_contiguous(t: torch.Tensor) -> torch.Tensor:
    """t's memory read with the strides of a contiguous tensor of its shape, as a kernel that
    computes offsets from the shape alone does (same storage: valid, scrambled)."""
    return torch.as_strided(t, t.shape, torch.empty(t.shape, device="meta").stride(),
                            t.storage_offset())


def StridesIgnoredScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                              output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Indexes q, k, v and g as if contiguous, whatever their strides (a kernel launched on
    data_ptr() without its strides): right on contiguous inputs only."""
    q, k, v, g = (as_if_contiguous(t) for t in (q, k, v, g))
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def UncheckedScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                         output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Takes every size from q and reads the other tensors only that far, as a kernel launched
    on q's shape with raw pointers does: extra features, steps or state rows are never read,
    a batch of two rows with cu_seqlens is read as its first — and nothing is refused."""
    batch, steps, _, key_dim = q.shape
    if cu_seqlens is not None:
        q, batch = q[:1], 1
    k, v, g = k[:batch, :steps, :, :key_dim], v[:batch, :steps], g[:batch, :steps]
    if initial_state is not None:
        initial_state = initial_state[:batch if cu_seqlens is None else len(cu_seqlens) - 1]
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def DetachedInitialStateScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                    output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The initial state used but detached: no gradient reaches it (fla #285, #494)."""
    if initial_state is not None:
        initial_state = initial_state.detach()
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def LeakyVarlenScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Variable-length sequences run one after the other, each starting from the state the
    previous one ended in: state leaks across the boundary."""
    if cu_seqlens is None:
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               chunk_size=chunk_size)
    bounds = cu_seqlens.tolist()
    state, pieces, finals = None, [], []
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        mine = None if initial_state is None else initial_state[n:n + 1]
        start_state = mine if state is None else state
        o, state = scalar_decay.scalar_decay_chunk(
            q[:, start:end], k[:, start:end], v[:, start:end], g[:, start:end], scale=scale,
            initial_state=start_state, output_final_state=True, chunk_size=chunk_size)
        pieces.append(o)
        finals.append(state)
    return torch.cat(pieces, 1), torch.cat(finals) if output_final_state else None


def decay_after_core(q, k, v, gates, state, scale, chunk_size):
    """The gated delta rule with the decay after the delta error: u = beta (v - S^T k) on the
    undecayed S, then S = e^g (S + k u^T)."""
    (g, beta), (s,) = gates, state
    outputs = []
    for t in range(q.shape[1]):
        error = v[:, t] - torch.einsum("bhkv,bhk->bhv", s, k[:, t])
        s = (s + k[:, t, :, :, None] * (beta[:, t, :, None] * error)[..., None, :]) * \
            g[:, t].exp()[..., None, None]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
    return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (s,)


def DecayAfterDeltaGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                              output_final_state=False, cu_seqlens=None):
    """The decay applied after the delta error (fla #885's question), not before."""
    return gated_delta.call(decay_after_core, q, k, v, g, beta, scale=scale,
                            initial_state=initial_state, output_final_state=output_final_state,
                            cu_seqlens=cu_seqlens)


def DiagonalKeptGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The WY form with A's diagonal kept (tril instead of strict tril) and inverted as a plain
    triangular matrix: T = (I + A)^-1 counts each step's own update twice."""
    def inverse(a):  # a strictly lower; the kept diagonal makes I + A's diagonal 2
        kept = a + torch.diag_embed(torch.ones(a.shape[:-1], dtype=a.dtype)) * 2
        eye = torch.eye(a.shape[-1], dtype=a.dtype).expand(a.shape)
        return torch.linalg.solve_triangular(kept, eye, upper=False)

    with mock.patch.object(gated_delta, "unit_inverse", inverse):
        return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def normaliser_core(q, k, v, gates, state, scale, chunk_size, eps=mlstm.EPS, *, bound="one"):
    """mlstm.recurrent_core with the normaliser's denominator written another way: ``"one"``
    max(|n q|, 1) + eps; ``"signed"`` max(n q, e^-m) + eps; ``"eps-inside"``
    max(|n q| + eps, e^-m) (the reference: max(|n q|, e^-m) + eps)."""
    (i, f), (c, n, m) = gates, state
    outputs = []
    for t in range(q.shape[1]):
        log_f = torch.nn.functional.logsigmoid(f[:, t])
        m_new = torch.maximum(log_f + m, i[:, t])
        forget, write = (log_f + m - m_new).exp(), (i[:, t] - m_new).exp()
        c = forget[..., None, None] * c + write[..., None, None] * (
            k[:, t, :, :, None] * v[:, t, :, None, :])
        n = forget[..., None] * n + write[..., None] * k[:, t]
        q_hat = q[:, t] * scale
        dot = torch.einsum("bhk,bhk->bh", n, q_hat)
        if bound == "one":
            denominator = dot.abs().clamp(min=1.0) + eps
        elif bound == "signed":
            denominator = torch.maximum(dot, (-m_new).exp()) + eps
        else:
            denominator = torch.maximum(dot.abs() + eps, (-m_new).exp())
        outputs.append(torch.einsum("bhk,bhkv->bhv", q_hat, c) / denominator[..., None])
        m = m_new
    return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (c, n, m)


def normaliser_mutant(name: str, doc: str, bound: str):
    """An op with mlstm_recurrent's signature around normaliser_core with ``bound``."""
    core = functools.partial(normaliser_core, bound=bound)

    def op(q, k, v, i, f, *, scale=None, initial_state=None, output_final_state=False,
           cu_seqlens=None):
        return mlstm.call(core, q, k, v, i, f, scale=scale, initial_state=initial_state,
                          output_final_state=output_final_state, cu_seqlens=cu_seqlens)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


LowerBoundOneMLSTM = normaliser_mutant(
    "LowerBoundOneMLSTM", "The normaliser's lower bound taken as 1 (the unstabilised "
    "formula's) instead of e^-m.", "one")
NoAbsNormaliserMLSTM = normaliser_mutant(
    "NoAbsNormaliserMLSTM", "The normaliser's |n . q| written without its absolute value: "
    "max(n . q, e^-m) picks e^-m where n . q is large and negative.", "signed")
EpsInsideMaxMLSTM = normaliser_mutant(
    "EpsInsideMaxMLSTM", "eps added inside the normaliser's max, max(|n . q| + eps, e^-m), "
    "instead of after it: a relative 1e-6 wherever e^-m is the larger.", "eps-inside")


def DroppedStabiliserMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The final state returned without its stabiliser: m comes back as zeros, so C and n read
    in the wrong units by whoever continues from them."""
    o, state = mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                 chunk_size=chunk_size)
    if state is None:
        return o, None
    c, n, m = as_tuple(state)
    return o, (c, n, torch.zeros_like(m))



def MinusInfStartMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                       output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Without an initial state, the stabiliser starts at m_0 = -inf (the parallel form's
    max over the steps' log weights alone) instead of the definition's 0: C and n carry the
    same meaning, but every output's eps weighs e^m differently."""
    if initial_state is None:
        rows = q.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1
        c, n, m = mlstm.zero_state(rows, q.shape[2], k.shape[-1], v.shape[-1], torch.float32
                                   if q.dtype != torch.float64 else torch.float64)
        initial_state = (c, n, torch.full_like(m, -torch.inf))
    return mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                             chunk_size=chunk_size)


def ChunkDetachedGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                            output_final_state=False, cu_seqlens=None, chunk_size=32):
    """A chunked loop that detaches the state it carries to the next chunk (a memory saving
    copied from truncated backpropagation): right values, and every gradient stops at a chunk
    boundary."""
    if cu_seqlens is not None:
        return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    pieces, state = [], initial_state
    for start in range(0, q.shape[1], chunk_size):
        part = slice(start, start + chunk_size)
        o, state = gated_delta.gated_delta_chunk(
            q[:, part], k[:, part], v[:, part], g[:, part], beta[:, part], scale=scale,
            initial_state=state if start == 0 else state.detach(), output_final_state=True,
            chunk_size=chunk_size)
        pieces.append(o)
    o = torch.cat(pieces, 1) if pieces else gated_delta.gated_delta_chunk(
        q, k, v, g, beta, scale=scale, chunk_size=chunk_size)[0]
    return o, state if output_final_state else None


def WidenedOutputScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=64):
    """o returned in the kernel's accumulation dtype, not the inputs' (float64 for float32
    inputs here; float32 for bfloat16 inputs on a GPU): right values, and the next layer's
    float32 weights meet a float64 input."""
    o, state = scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return o.double(), state


def NarrowedStateMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                       output_final_state=False, cu_seqlens=None, chunk_size=64, eps=1e-6):
    """The final state returned in the inputs' dtype (bfloat16 on a GPU; float32 for float64
    inputs here) instead of the float32 (float64) it is computed in: a cache that loses
    precision with every chunk it carries."""
    o, state = mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                 chunk_size=chunk_size, eps=eps)
    if state is None or q.dtype != torch.float64:
        return o, state
    return o, tuple(s.float() for s in state)


def ScaleOnKeysScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The scale folded into k instead of q (one multiply fewer in a fused kernel): every
    output right, the state it returns scale times too large."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return scalar_decay.scalar_decay_chunk(q, k * scale, v, g, scale=1.0,
                                           initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def ValueDimScaleScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=64):
    """The default scale taken from v's last dimension (V^-1/2, not K^-1/2): right wherever
    K == V, as in most models' configurations."""
    scale = v.shape[-1] ** -0.5 if scale is None else scale
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def TransposedStateGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                              output_final_state=False, cu_seqlens=None, chunk_size=32):
    """A kernel that keeps its state [N, H, V, K] (Mamba-2's ssm_state layout) handed to callers
    of the [N, H, K, V] convention as it is: the initial state read transposed, the final state
    returned transposed (the shapes agree only where K == V)."""
    start = None if initial_state is None else initial_state.mT
    o, state = gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale, initial_state=start,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return o, None if state is None else state.mT


def FirstStateForAllScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Variable-length sequences each started from the initial state's row 0 (indexed by the
    batch row, which is 0 for all of them with cu_seqlens)."""
    if initial_state is not None and cu_seqlens is not None:
        initial_state = initial_state[:1].expand_as(initial_state)
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def EmptySequenceZeroStateScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                      output_final_state=False, cu_seqlens=None, chunk_size=64):
    """A varlen kernel that skips empty sequences and leaves their final state rows as the
    zeros it allocated, instead of their initial state."""
    o, state = scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    if state is None or cu_seqlens is None:
        return o, state
    empty = (cu_seqlens.diff() == 0)[:, None, None, None]
    return o, torch.where(empty, torch.zeros_like(state), state)


def BetaOnValueOnlyGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                              output_final_state=False, cu_seqlens=None):
    """beta applied to v_t alone: u_t = beta_t v_t - S'^T k_t, not beta_t (v_t - S'^T k_t)."""
    def core(q, k, v, gates, state, scale, chunk_size):
        (g, beta), (s,) = gates, state
        outputs = []
        for t in range(q.shape[1]):
            s = s * g[:, t].exp()[..., None, None]
            error = beta[:, t, :, None] * v[:, t] - torch.einsum("bhkv,bhk->bhv", s, k[:, t])
            s = s + k[:, t, :, :, None] * error[..., None, :]
            outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
        return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (s,)

    return gated_delta.call(core, q, k, v, g, beta, scale=scale, initial_state=initial_state,
                            output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def FactoredDecaysGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The chunked WY form with the decays always factored, e^(b_t - b_j) as e^(b_t) e^(-b_j):
    exact for mild decays, e^(-b_j) overflows to inf once a chunk's cumulative log decay
    passes 88 (float32), and the chunk turns NaN."""
    with mock.patch.object(gated_delta, "factored_decays", lambda b: True):
        return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def Float32InsideGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                            output_final_state=False, cu_seqlens=None, chunk_size=32):
    """A kernel whose accumulators are float32 whatever the inputs: a float64 call is computed
    in float32 and cast back (right to float32's 1e-7, not to float64's)."""
    def narrow(t):
        return None if t is None else t.float()

    o, state = gated_delta.gated_delta_chunk(
        narrow(q), narrow(k), narrow(v), narrow(g), narrow(beta), scale=scale,
        initial_state=narrow(initial_state), output_final_state=output_final_state,
        cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return o.to(q.dtype), None if state is None else state.to(q.dtype)


def log_of_sigmoid_core(q, k, v, gates, state, scale, chunk_size, eps=mlstm.EPS):
    i, f = gates
    return chunked(functools.partial(mlstm.region, eps=eps), q * scale, k, v,
                   (i, torch.log(torch.sigmoid(f))), state, chunk_size)


def LogOfSigmoidMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                      output_final_state=False, cu_seqlens=None, chunk_size=64):
    """log σ(f) as log(sigmoid(f)) instead of F.logsigmoid(f): where σ(f) underflows to 0 (f
    below about -88 in float32) it is -inf, which the stabilised forward survives (the state
    forgets, as it should) and the backward does not (1 / 0 times 0: NaN in df)."""
    return mlstm.call(log_of_sigmoid_core, q, k, v, i, f, scale=scale,
                      initial_state=initial_state, output_final_state=output_final_state,
                      cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def IgnoredChunkSizeScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Takes chunk_size and ignores it: every call runs in chunks of 64 (a length fixed inside
    the kernel). Right at every size, so chunk_size_invariance compares one computation."""
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=64)


def InitialStabiliserIgnoredMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                                  output_final_state=False, cu_seqlens=None, chunk_size=64):
    """An initial state's stabiliser dropped: (C, n) taken as they come and m_0 = 0, as for no
    initial state, so a state handed over from a previous call is read in the wrong units."""
    if initial_state is not None:
        c, n, m = as_tuple(initial_state)
        initial_state = (c, n, torch.zeros_like(m))
    return mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                             chunk_size=chunk_size)


def InputDtypeScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                          output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Computes in the inputs' dtype: for bfloat16 inputs the state is summed in bfloat16 (8
    bits of mantissa), then returned as float32 as fla's convention asks, where fla's kernels
    accumulate it in float32. Exact for float32 and float64 inputs."""
    with mock.patch("harness.ops.sequences.compute_dtype", lambda dtype: dtype):
        o, state = scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                                   initial_state=initial_state,
                                                   output_final_state=output_final_state,
                                                   cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    widened = torch.float64 if q.dtype == torch.float64 else torch.float32
    return o, None if state is None else state.to(widened)


InputDtypeScalarDecay.harness_capabilities = {"dtypes": ["float32", "float64", "bfloat16"]}


def WidenedBfloat16OutputGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                                    output_final_state=False, cu_seqlens=None, chunk_size=64):
    """For bfloat16 inputs, computed in float32 and o returned so (the accumulator's dtype,
    never cast back): a bfloat16 model's next layer meets a float32 input."""
    half = q.dtype in (torch.bfloat16, torch.float16)
    if half:
        q, k, v, g, beta = (t.float() for t in (q, k, v, g, beta))
    return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                         initial_state=initial_state,
                                         output_final_state=output_final_state,
                                         cu_seqlens=cu_seqlens, chunk_size=chunk_size)


WidenedBfloat16OutputGatedDelta.harness_capabilities = {
    "dtypes": ["float32", "float64", "bfloat16"]}


def MeanDecayFactoredScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                 output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Decides whether to factor e^(b_t - b_j) as e^(b_t) e^(-b_j) from the mean cumulative
    log decay over the batch and heads, not the strongest: one head decaying much faster than
    the others (Mamba-2's per-head A) overflows e^(-b) there, NaN."""
    mean_decides = lambda b: bool(b[..., -1].mean() >= -sequences.FACTORED_DECAY)  # noqa: E731
    with mock.patch("harness.ops.scalar_decay.factored_decays", mean_decides):
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def detached_mask(g):
    return decay_mask(g).detach()


def DetachedMaskGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The strong-decay path's decay mask detached ("it is just a mask"): right outputs, and
    no gradient through the mask into g whenever a call takes that path."""
    with mock.patch("harness.ops.gated_delta.decay_mask", detached_mask):
        return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def DecodeScaleDroppedScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                  output_final_state=False, cu_seqlens=None, chunk_size=64):
    """A one-token (decode) fast path that calls the recurrent form without passing scale on:
    K^-1/2 used whatever the caller asked, at T = 1 only."""
    if q.shape[1] == 1 and cu_seqlens is None:
        return scalar_decay.scalar_decay_recurrent(q, k, v, g, initial_state=initial_state,
                                                   output_final_state=output_final_state)
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def TrailingEmptyDroppedScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                    output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Counts the sequences of cu_seqlens from the tokens' sequence ids (a bincount without
    minlength): empty sequences at the end vanish, and the final state has too few rows."""
    if cu_seqlens is not None:
        ids = torch.repeat_interleave(torch.arange(cu_seqlens.numel() - 1), cu_seqlens.diff())
        kept = torch.bincount(ids).numel()
        cu_seqlens = cu_seqlens[:kept + 1]
        if initial_state is not None:
            initial_state = initial_state[:kept]
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def Float32ScaleGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The default scale computed as a float32 tensor (torch.tensor(K) ** -0.5): exact for K =
    16 or 64, a relative 3e-8 off for K = 100, which a float64 call keeps."""
    if scale is None:
        scale = float(torch.tensor(float(k.shape[-1]), dtype=torch.float32) ** -0.5)
    return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                         initial_state=initial_state,
                                         output_final_state=output_final_state,
                                         cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def BucketedVarlenMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                        output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Variable-length sequences of equal length run as one batch (fewer, larger calls): the
    outputs go back to each sequence's steps, the final states come back bucket by bucket, in
    the order of the lengths, not of the sequences."""
    if cu_seqlens is None:
        return mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state, chunk_size=chunk_size)
    bounds = cu_seqlens.tolist()
    spans = list(itertools.pairwise(bounds))
    states = None if initial_state is None else as_tuple(initial_state)
    o, finals = torch.zeros_like(v), []
    for length in dict.fromkeys(end - start for start, end in spans):
        rows = [n for n, (start, end) in enumerate(spans) if end - start == length]
        pick = [torch.cat([t[:, spans[n][0]:spans[n][1]] for n in rows]) for t in (q, k, v, i, f)]
        start = None if states is None else tuple(s[rows] for s in states)
        out, last = mlstm.mlstm_chunk(*pick, scale=scale, initial_state=start,
                                      output_final_state=True, chunk_size=chunk_size)
        for r, n in enumerate(rows):
            o[:, spans[n][0]:spans[n][1]] = out[r:r + 1]
        finals.append(last)
    final = tuple(torch.cat(parts) for parts in zip(*finals))
    return o, final if output_final_state else None


def TwoLevelInverseGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                              output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The chunked WY form whose (I + A)^-1 merges 16 x 16 blocks for at most two levels (enough
    for chunks of 64): a chunk of 128 gets its two 64 x 64 diagonal blocks inverted and the
    block below them left zero."""
    inverse = gated_delta.unit_inverse

    def two_levels(a):
        c = a.shape[-1]
        if c <= 64:
            return inverse(a)
        out = torch.zeros_like(a)
        for start in range(0, c, 64):
            end = min(start + 64, c)
            out[..., start:end, start:end] = inverse(a[..., start:end, start:end].clone())
        return out

    with mock.patch.object(gated_delta, "unit_inverse", two_levels):
        return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)


@functools.lru_cache(maxsize=16)
def remembered_offsets(cu_seqlens, batch: int, seq_len: int) -> list[int]:
    """sequences.offsets memoised by its arguments: a tensor hashes by identity."""
    return sequences.offsets(cu_seqlens, batch, seq_len)


def RememberedOffsetsScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                 output_final_state=False, cu_seqlens=None, chunk_size=64):
    """cu_seqlens turned into offsets once per tensor (functools.lru_cache, to save the host
    sync of .tolist() on every call): a caller refilling its cu_seqlens buffer in place gets
    the old offsets."""
    with mock.patch.object(sequences, "offsets", remembered_offsets):
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def Float32MaskGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                          output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The strong-decay path's masked exponential built in float32 whatever the inputs (a
    buffer made with torch.zeros(...) and no dtype): a float64 call is right to 1e-8 there."""
    with mock.patch.object(gated_delta, "decay_mask",
                           lambda gc: decay_mask(gc.float()).to(gc.dtype)):
        return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                             initial_state=initial_state,
                                             output_final_state=output_final_state,
                                             cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def UncheckedOffsetsScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                output_final_state=False, cu_seqlens=None, chunk_size=64):
    """cu_seqlens taken as given (no check that it runs from 0 to T without going back), o
    preallocated with zeros and written sequence by sequence: steps no sequence covers stay
    zero, and nothing is refused."""
    if cu_seqlens is None:
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               chunk_size=chunk_size)
    o, finals = torch.zeros_like(v), []
    for n, (start, end) in enumerate(itertools.pairwise(cu_seqlens.tolist())):
        start, end = min(start, end), max(start, end)
        mine = None if initial_state is None else initial_state[n:n + 1]
        out, last = scalar_decay.scalar_decay_chunk(
            q[:, start:end], k[:, start:end], v[:, start:end], g[:, start:end], scale=scale,
            initial_state=mine, output_final_state=True, chunk_size=chunk_size)
        o[:, start:end] = out
        finals.append(last)
    return o, torch.cat(finals) if output_final_state else None


def restarting_chunked(region, q, k, v, gates, state, chunk_size, *, copy=True):
    """sequences.chunked with every group of a region's whole chunks started from the state the
    region began with: the state reached at the end of a group is not handed to the next."""
    outputs = []
    lay_out = sequences.chunk_major if copy else sequences.chunk_view
    for part, size in sequences.regions(q.shape[1], chunk_size):
        pieces = [lay_out(t[:, part], size) for t in (q, k, v, *gates)]
        parts, begin = [], state
        for group in sequences.groups(pieces[0].shape[0], pieces[0][0].numel()):
            qc, kc, vc, *gc = (p[group] for p in pieces)
            o, state = region(qc, kc, vc, tuple(gc), begin)
            parts.append(o)
        outputs.append(sequences.from_chunk_major(parts))
    if not outputs:
        return v.new_zeros(v.shape), state
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)), state


def GroupsRestartScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Chunks processed in groups that fit the caches, each group started from the initial
    state instead of the state the previous group reached: right until a call is large enough
    for a second group (2^18 values of q per group)."""
    with mock.patch.object(scalar_decay, "chunked", restarting_chunked):
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


# --- round 7: corners the grids did not build ----------------------------------------------------


def decode_step(q, k, v, g, scale, initial_state):
    """One scalar-decay step for a decode fast path: o (B, 1, H, V) and the new state."""
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = (q.new_zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[3], dtype=dtype)
         if initial_state is None else initial_state.to(dtype))
    qt, kt, vt, gt = (x[:, 0].to(dtype) for x in (q, k, v, g))
    s = s * gt.exp()[..., None, None] + kt[..., None] * vt[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", qt * scale, s)[:, None].to(v.dtype), s


def DecodeAlwaysStateScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                 output_final_state=False, cu_seqlens=None, chunk_size=64):
    """A one-token (decode) fast path that hands back the updated cache whether it was asked
    for or not."""
    if q.shape[1] == 1 and cu_seqlens is None:
        return decode_step(q, k, v, g, scale, initial_state)
    return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale, initial_state=initial_state,
                                           output_final_state=output_final_state,
                                           cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def DecodeNeedsStateGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                               output_final_state=False, cu_seqlens=None, chunk_size=32):
    """A decode fast path written for generation, where a cache always exists: at T = 1 it
    reads initial_state unconditionally, and a first token without a cache raises."""
    if q.shape[1] == 1 and cu_seqlens is None:
        dtype = initial_state.dtype  # the cache's
        s = initial_state * g[:, 0].to(dtype).exp()[..., None, None]
        kt, vt, bt = k[:, 0].to(dtype), v[:, 0].to(dtype), beta[:, 0].to(dtype)
        error = vt - torch.einsum("bhkv,bhk->bhv", s, kt)
        s = s + kt[..., None] * (bt[..., None] * error)[..., None, :]
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        o = torch.einsum("bhk,bhkv->bhv", q[:, 0].to(dtype) * scale, s)[:, None].to(v.dtype)
        return o, s if output_final_state else None
    return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                         initial_state=initial_state,
                                         output_final_state=output_final_state,
                                         cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def DecodeBfloat16StateMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=64):
    """A one-token call returns its cache in the inputs' dtype ("the cache is bf16 like the
    model"): C, n and m rounded to 8 bits."""
    o, state = mlstm.mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                 chunk_size=chunk_size)
    if q.shape[1] == 1 and state is not None:
        state = tuple(part.to(q.dtype) for part in state)
    return o, state


DecodeBfloat16StateMLSTM.harness_capabilities = {"dtypes": ["float32", "float64", "bfloat16"]}


def SegmentsRestartScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                               output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Sequences longer than 2048 steps run segment by segment to cap memory, each segment
    started from the caller's initial_state instead of the state the last one reached."""
    if cu_seqlens is not None or q.shape[1] <= 2048:
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    outputs, state = [], None
    for start in range(0, q.shape[1], 2048):
        part = slice(start, start + 2048)
        o, state = scalar_decay.scalar_decay_chunk(
            q[:, part], k[:, part], v[:, part], g[:, part], scale=scale,
            initial_state=initial_state, output_final_state=True, chunk_size=chunk_size)
        outputs.append(o)
    return torch.cat(outputs, 1), state if output_final_state else None


def TokenPerSequenceGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                               output_final_state=False, cu_seqlens=None, chunk_size=32):
    """Continuous batching's decode path: as many tokens as sequences is taken to mean one
    token each, run as a batch of one-step sequences — lengths (2, 0, 1) have it too."""
    if cu_seqlens is not None and q.shape[1] == cu_seqlens.numel() - 1:
        o, s = gated_delta.gated_delta_recurrent(
            *(x.transpose(0, 1) for x in (q, k, v, g, beta)), scale=scale,
            initial_state=initial_state, output_final_state=True)
        return o.transpose(0, 1), s if output_final_state else None
    return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                         initial_state=initial_state,
                                         output_final_state=output_final_state,
                                         cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def multiple_of_16_inverse(a):
    """gated_delta.unit_inverse with the chunk padded to a multiple of 16 instead of 16 x a
    power of two: three 16-blocks (chunk 48) cannot be merged pairwise."""
    c = a.shape[-1]
    if c <= gated_delta.BLOCK:
        return gated_delta.nilpotent_inverse(a)
    size = -(-c // gated_delta.BLOCK) * gated_delta.BLOCK
    a = torch.nn.functional.pad(a, (0, size - c, 0, size - c))
    count, block = size // gated_delta.BLOCK, gated_delta.BLOCK
    inverse = torch.zeros_like(a)
    diagonal = gated_delta.nilpotent_inverse(gated_delta.diagonal_blocks(a, count, block))
    gated_delta.diagonal_blocks(inverse, count, block).copy_(diagonal)
    while count > 1:
        count //= 2
        merged = -(diagonal[..., 1::2, :, :] @ gated_delta.lower_blocks(a, count, block)
                   @ diagonal[..., 0::2, :, :])
        gated_delta.lower_blocks(inverse, count, block).copy_(merged)
        block *= 2
        if count > 1:
            diagonal = gated_delta.diagonal_blocks(inverse, count, block).clone()
    return inverse[..., :c, :c]


def MultipleOf16InverseGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                                  output_final_state=False, cu_seqlens=None, chunk_size=32):
    """Takes any chunk size, pads T to whole chunks with inert steps (g = 0, beta = 0: the
    state passes unchanged), as a kernel whose blocks are whole chunks does, but its blocked
    inverse only merges powers of two of 16-blocks: right at 16, 32, 64 or 128, not at 48."""
    steps = q.shape[1]
    pad = 0 if cu_seqlens is not None else -steps % chunk_size
    if pad:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
        g, beta = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (g, beta))
    with mock.patch.object(gated_delta, "unit_inverse", multiple_of_16_inverse):
        o, state = gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                                 initial_state=initial_state,
                                                 output_final_state=output_final_state,
                                                 cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return o[:, :steps], state


def FirstChunkDecidesScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                                 output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Whether to factor e^(b_t - b_j) into e^(b_t) e^(-b_j) decided on the first chunk's
    decays alone ("decays are stationary"): where they strengthen later, e^(-b) overflows."""
    first = functools.partial(lambda b, decide: decide(b[:1]), decide=sequences.factored_decays)
    with mock.patch.object(scalar_decay, "factored_decays", first):
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def decay_steps(q, k, v, g, s0, scale):
    """Scalar decay step by step: o (B, T, H, V) and the final state; q, k (B, T, H, K)."""
    s, outputs = s0, []
    for t in range(q.shape[1]):
        s = s * g[:, t].exp()[..., None, None] + k[:, t, :, :, None] * v[:, t, :, None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
    return torch.stack(outputs, 1), s


def decay_steps_backward(q, k, v, g, s0, scale, do, ds):
    """decay_steps' gradients by hand, the states recomputed from s0 (none saved per step, as
    fla's kernels): dq, dk, dv, dg and d s0."""
    states = [s0]
    for t in range(q.shape[1]):
        states.append(states[-1] * g[:, t].exp()[..., None, None]
                      + k[:, t, :, :, None] * v[:, t, :, None, :])
    dq, dk, dv, dg = (torch.zeros_like(x) for x in (q, k, v, g))
    for t in reversed(range(q.shape[1])):
        decay = g[:, t].exp()[..., None, None]
        ds = ds + (scale * q[:, t])[..., None] * do[:, t, :, None, :]
        dq[:, t] = scale * torch.einsum("bhkv,bhv->bhk", states[t + 1], do[:, t])
        dk[:, t] = torch.einsum("bhkv,bhv->bhk", ds, v[:, t])
        dv[:, t] = torch.einsum("bhkv,bhk->bhv", ds, k[:, t])
        dg[:, t] = (decay * ds * states[t]).sum((-1, -2))
        ds = ds * decay
    return dq, dk, dv, dg, ds


class RecomputedStates(torch.autograd.Function):
    """decay_steps with a hand-written backward that keeps the initial state only when it
    needs a gradient of its own, and otherwise recomputes the states from zeros (to save
    its memory)."""

    @staticmethod
    def forward(ctx, q, k, v, g, s0, scale):
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, g, s0 if ctx.needs_input_grad[4] else torch.zeros_like(s0))
        return decay_steps(q, k, v, g, s0, scale)

    @staticmethod
    def backward(ctx, do, ds):
        return (*decay_steps_backward(*ctx.saved_tensors, ctx.scale, do, ds), None)


class FlattenedInputsStates(torch.autograd.Function):
    """decay_steps with a hand-written backward that flattens the saved q and k with .view for
    its launch grid: right from contiguous inputs, an error from q and k that are views of
    head-first tensors (the forward takes them)."""

    @staticmethod
    def forward(ctx, q, k, v, g, s0, scale):
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, g, s0)
        return decay_steps(q, k, v, g, s0, scale)

    @staticmethod
    def backward(ctx, do, ds):
        q, k, v, g, s0 = ctx.saved_tensors
        q, k = (t.view(-1, *t.shape[2:]).view(t.shape) for t in (q, k))
        return (*decay_steps_backward(q, k, v, g, s0, ctx.scale, do, ds), None)


def by_hand(function):
    """A scalar-decay core (harness.ops.sequences.run's) through the autograd.Function."""
    def core(q, k, v, gates, state, scale, chunk_size):
        if q.shape[1] == 0:
            return v.new_zeros(v.shape), state
        o, final = function.apply(q, k, v, gates[0], state[0], scale)
        return o, (final,)
    return core


def StatesFromZerosScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                               output_final_state=False, cu_seqlens=None):
    """Its hand-written backward recomputes the states from zeros when the initial state needs
    no gradient (a decode cache, truncated backpropagation): dq and dg wrong there alone."""
    return scalar_decay.call(by_hand(RecomputedStates), q, k, v, g, scale=scale,
                             initial_state=initial_state, output_final_state=output_final_state,
                             cu_seqlens=cu_seqlens)


def FlattenedInputsScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                               output_final_state=False, cu_seqlens=None):
    """Its hand-written backward flattens q and k with .view: the forward takes them as views
    of head-first tensors, the backward raises."""
    return scalar_decay.call(by_hand(FlattenedInputsStates), q, k, v, g, scale=scale,
                             initial_state=initial_state, output_final_state=output_final_state,
                             cu_seqlens=cu_seqlens)


@functools.cache
def cached_scale(key_dim: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(key_dim ** -0.5, dtype=dtype)


def CachedScaleTensorGatedDelta(q, k, v, g, beta, *, scale=None, initial_state=None,
                                output_final_state=False, cu_seqlens=None, chunk_size=32):
    """The default scale kept as a cached tensor per (K, dtype) (no host copy per call): made
    by a first call under torch.inference_mode, it is an inference tensor, and every later
    training call raises."""
    if scale is None:
        q, scale = q * cached_scale(q.shape[-1], q.dtype), 1.0
    return gated_delta.gated_delta_chunk(q, k, v, g, beta, scale=scale,
                                         initial_state=initial_state,
                                         output_final_state=output_final_state,
                                         cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def Float16NativeScalarDecay(q, k, v, g, *, scale=None, initial_state=None,
                             output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Widens bfloat16 to float32 (its mantissa is short) but computes float16 as it comes
    ("fast enough natively"): a chunk's factored decays e^(-b) overflow float16's 65504."""
    def narrow(dtype):
        return torch.float32 if dtype == torch.bfloat16 else dtype

    with mock.patch.object(sequences, "compute_dtype", narrow):
        return scalar_decay.scalar_decay_chunk(q, k, v, g, scale=scale,
                                               initial_state=initial_state,
                                               output_final_state=output_final_state,
                                               cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def Bfloat16OnlyOutputMLSTM(q, k, v, i, f, *, scale=None, initial_state=None,
                            output_final_state=False, cu_seqlens=None, chunk_size=64):
    """Half inputs widened to float32, o cast back only for bfloat16 ("the half type we train
    in"): float16 inputs get a float32 o."""
    half = q.dtype in (torch.float16, torch.bfloat16)
    o, state = mlstm.mlstm_chunk(*(x.float() if half else x for x in (q, k, v, i, f)),
                                 scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                                 chunk_size=chunk_size)
    return (o.to(q.dtype) if q.dtype == torch.bfloat16 else o), state


HALF_TYPES = {"dtypes": ["float32", "float64", "bfloat16", "float16"]}
Float16NativeScalarDecay.harness_capabilities = HALF_TYPES
Bfloat16OnlyOutputMLSTM.harness_capabilities = HALF_TYPES
