"""Mutants of the families torch does not have: one realistic bug each, in the places parallel
and from-scratch implementations of linear recurrences get them wrong. tests/test_mutants.py
proves the suite written for each bug catches it; the Chunked* classes are the correct
implementations the mutants are derived from (the control)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.families.indrnn import IndRNNLoop
from harness.families.minimal import MinGRULoop, MinLSTMLoop, g, log_g, normalised_gates
from harness.families.rglru import RGLRULoop, input_scale, log_decay
from harness.impls.diagonal import RGLRUScan
from harness.impls.minimal_scan import MinGRUScan, MinLSTMScan
from harness.impls.scan import chunked_affine, doubling_scan, masked, masked_affine


class ChunkedMinGRU(MinGRUScan):
    def __init__(self, *args, chunk_size=16, **kwargs):
        super().__init__(*args, chunk_size=chunk_size, **kwargs)


class ChunkedMinLSTM(MinLSTMScan):
    def __init__(self, *args, chunk_size=16, **kwargs):
        super().__init__(*args, chunk_size=chunk_size, **kwargs)


class ChunkedRGLRU(RGLRUScan):
    def __init__(self, *args, chunk_size=16, **kwargs):
        super().__init__(*args, chunk_size=chunk_size, **kwargs)


class ScanIgnoresH0MinGRU(ChunkedMinGRU):
    """The scan starts every sequence from zero: the given h_0 is dropped (minGRU-pytorch #9)."""

    def run_direction(self, slot, x, state, mask, reverse):
        return super().run_direction(slot, x, tuple(torch.zeros_like(s) for s in state), mask,
                                     reverse)


class GTwiceMinGRU(MinGRULoop):
    """The candidate goes through g twice: h̃ = g(g(W_h x + b_h))."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        z_pre, h_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
        z = torch.sigmoid(z_pre)
        return ((1 - z) * h + z * g(g(h_pre)),)


class WhereOverflowMinGRU(MinGRULoop):
    """g(a) with the sigmoid branch written e^a / (1 + e^a) inside torch.where: the forward picks
    a + 0.5 where e^a overflows, but the branch not taken is inf / inf, and its zero gradient
    times NaN is NaN (the torch.where gradient trap)."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        z_pre, h_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
        z = torch.sigmoid(z_pre)
        candidate = torch.where(h_pre >= 0, h_pre + 0.5, h_pre.exp() / (1 + h_pre.exp()))
        return ((1 - z) * h + z * candidate,)


class SwappedBlocksMinLSTM(ChunkedMinLSTM):
    """Reads weight_ih's blocks as [i; f; h̃] instead of [f; i; h̃]."""

    def decay_and_input(self, proj):
        f_pre, i_pre, h_pre = proj.chunk(3, dim=-1)
        return super().decay_and_input(torch.cat([i_pre, f_pre, h_pre], dim=-1))


class ChunkOffByOneMinGRU(ChunkedMinGRU):
    """Each chunk after the first starts from the state one step before the previous chunk's
    end: the boundary is off by one."""

    def run_direction(self, slot, x, state, mask, reverse):
        w = self.weights(slot)
        if reverse:
            x, mask = x.flip(0), None if mask is None else mask.flip(0)
        log_a, log_b = self.log_decay_and_input(F.linear(x, w["ih"], w["b_ih"]))
        log_a, b, _ = masked(log_a, log_b.exp(), mask, log_b)
        pieces, carried = [], state[0]
        for start in range(0, x.shape[0], self.chunk_size):
            part = slice(start, start + self.chunk_size)
            out = doubling_scan(log_a[part].exp(), b[part], carried)
            pieces.append(out)
            carried = out[-2] if out.shape[0] > 1 else out[-1]
        h = torch.cat(pieces)
        out = h if mask is None else h * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (h[-1],)


class ExpSpaceScanMinGRU(ChunkedMinGRU):
    """The closed form evaluated outside log space, h_t = e^{A_t} (h_0 + Σ b_k e^{-A_k}): right
    on short, gentle sequences; e^{-A} overflows once the decays add up (inf · 0 = NaN)."""

    def run_direction(self, slot, x, state, mask, reverse):
        w = self.weights(slot)
        if reverse:
            x, mask = x.flip(0), None if mask is None else mask.flip(0)
        z_pre, h_pre = F.linear(x, w["ih"], w["b_ih"]).chunk(2, dim=-1)
        log_a, log_b = -F.softplus(z_pre), -F.softplus(-z_pre) + log_g(h_pre)
        log_a, b, _ = masked(log_a, log_b.exp(), mask, log_b)
        decay = torch.cumsum(log_a, dim=0)  # A_t
        h = decay.exp() * (state[0].unsqueeze(0) + torch.cumsum(b * (-decay).exp(), dim=0))
        out = h if mask is None else h * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (h[-1],)


# --- precision: right formulas that lose what float32 could keep ---------------------------------


class LogSpaceScanMinGRU(MinGRUScan):
    """The whole sequence in one log-space scan (Heinsen's cumsum + logcumsumexp, the minGRU
    paper's own recipe): exact in exact arithmetic, |log a| units of rounding per step in
    float32 — 1e-4 off after 2000 steps where the loop is 1e-7 off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, chunk_size=None, **kwargs)


class CancellingRGLRU(RGLRULoop):
    """sqrt(1 - a²) written as it reads: 1 - a² cancels as a approaches 1 (long memory), where
    the input scale should be sqrt(2 (1 - a)) and float32 gives 0 or a multiple of 1e-4."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        r_pre, i_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
        a = log_decay(r_pre, w["hh"]).exp()
        return (a * h + torch.sqrt(1 - a * a) * (torch.sigmoid(i_pre) * x_t),)


class RatioMinLSTM(MinLSTMLoop):
    """f' = f / (f + i) and i' = i / (f + i) as written: 0 / 0 = NaN once both gates underflow
    (pre-activations below about -104 in float32)."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        f_pre, i_pre, h_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(3, dim=1)
        f, i = torch.sigmoid(f_pre), torch.sigmoid(i_pre)
        return (f / (f + i) * h + i / (f + i) * g(h_pre),)


class SigmoidCandidateMinGRU(ChunkedMinGRU):
    """The candidate through a plain sigmoid, h̃ = σ(W_h x + b_h), where minGRU takes g (an
    earlier draft's activation): the state stays below 1."""

    def decay_and_input(self, proj):
        z_pre, h_pre = proj.chunk(2, dim=-1)
        return torch.sigmoid(-z_pre), torch.sigmoid(z_pre) * torch.sigmoid(h_pre)


class NoActivationMinLSTM(ChunkedMinLSTM):
    """The candidate left linear, h̃ = W_h x + b_h (g dropped, as in the paper's pseudocode
    for its log-free form)."""

    def decay_and_input(self, proj):
        f_pre, i_pre, h_pre = proj.chunk(3, dim=-1)
        f_norm, i_norm = normalised_gates(f_pre, i_pre)
        return f_norm, i_norm * h_pre


def rglru_cell(self, slot, x_t, state, *, constant=8.0, scaled=True):
    """RGLRULoop's step with its decay constant c or its input scale sqrt(1 - a²) changed."""
    w = self.weights(slot)
    (h,) = state
    r_pre, i_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
    log_a = -constant * torch.sigmoid(r_pre) * F.softplus(-w["hh"])
    scale = input_scale(log_a) if scaled else 1.0
    return (log_a.exp() * h + scale * (torch.sigmoid(i_pre) * x_t),)


class UnscaledInputRGLRU(RGLRULoop):
    """The input written without sqrt(1 - a²): h' = a h + i x (the normalisation that keeps
    the state's scale left out)."""

    def cell(self, slot, x_t, state):
        return rglru_cell(self, slot, x_t, state, scaled=False)


class NoDecayConstantRGLRU(RGLRULoop):
    """log a = -σ(r) softplus(-Λ): Griffin's constant c = 8 left out (decays far too slow)."""

    def cell(self, slot, x_t, state):
        return rglru_cell(self, slot, x_t, state, constant=1.0)


class TanhIndRNN(IndRNNLoop):
    """tanh where IndRNN takes relu (the Elman habit)."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        return (torch.tanh(F.linear(x_t, w["ih"], w["b_ih"]) + w["hh"] * h),)


class ReluBeforeRecurrenceIndRNN(IndRNNLoop):
    """relu applied to the input drive alone, u ⊙ h added after it: h' = relu(W x + b) + u h."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        return (torch.relu(F.linear(x_t, w["ih"], w["b_ih"])) + w["hh"] * h,)


class SoftplusAsWrittenRGLRU(RGLRULoop):
    """softplus(-Λ) summed as written, log(1 + e^-Λ): where Griffin initialises Λ (e^-Λ near
    1e-4) 1 + e^-Λ keeps four digits of e^-Λ in float32, so every decay rate is off by a
    relative 1e-4 (F.softplus uses log1p)."""

    def cell(self, slot, x_t, state):
        w = self.weights(slot)
        (h,) = state
        r_pre, i_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
        log_a = -8.0 * torch.sigmoid(r_pre) * torch.log(1 + torch.exp(-w["hh"]))
        return (log_a.exp() * h + input_scale(log_a) * (torch.sigmoid(i_pre) * x_t),)


class StepPathMinLSTM(MinLSTMScan):
    """A decoding fast path: one step (T=1, as generation calls it) skips the scan and takes
    the gates as they come, σ(f) h + σ(i) g(h̃), without normalising them to sum to one."""

    def run_direction(self, slot, x, state, mask, reverse):
        if x.shape[0] != 1:
            return super().run_direction(slot, x, state, mask, reverse)
        w = self.weights(slot)
        f_pre, i_pre, h_pre = F.linear(x[0], w["ih"], w["b_ih"]).chunk(3, dim=1)  # (B, H) each
        h = torch.sigmoid(f_pre) * state[0] + torch.sigmoid(i_pre) * g(h_pre)
        if mask is not None:
            h = torch.where(mask[0].unsqueeze(1), h, state[0])
        out = h if mask is None else h * mask[0].unsqueeze(1)
        return out.unsqueeze(0), (h,)


class ProjectionCacheMinGRU(ChunkedMinGRU):
    """A serving cache: without autograd, the input projection is kept per input tensor, keyed
    by its data pointer and shape (the weights compared by value, so writes through .data are
    seen). A caller that refills one preallocated input buffer in place gets the projection
    of its old contents."""

    def run_direction(self, slot, x, state, mask, reverse):
        if torch.is_grad_enabled():
            return super().run_direction(slot, x, state, mask, reverse)
        w, cache = self.weights(slot), self.__dict__.setdefault("_projections", {})
        key, hit = (x.data_ptr(), tuple(x.shape), slot), None
        if key in cache and torch.equal(cache[key][1], w["ih"]):
            hit = cache[key][0]
        if hit is None:
            hit = F.linear(x, w["ih"], w["b_ih"])
            cache[key] = (hit, w["ih"].clone())
        proj, mask = (hit.flip(0), None if mask is None else mask.flip(0)) if reverse else (
            hit, mask)
        a, b = masked_affine(*self.decay_and_input(proj), mask)
        h = chunked_affine(a, b, state[0], chunk_size=self.chunk_size)
        out = h if mask is None else h * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (h[-1],)


class LogOfH0MinLSTM(ChunkedMinLSTM):
    """Heinsen's log-space scan over blocks of 8 steps, each block's incoming state entering as
    torch.log(h), as the paper's pseudocode writes it: the forward is right (log 0 = -inf is a
    valid logcumsumexp term), the gradient into an h_0 of zeros (a learned initial state
    initialised to zeros) is NaN."""

    def run_direction(self, slot, x, state, mask, reverse):
        w = self.weights(slot)
        if reverse:
            x, mask = x.flip(0), None if mask is None else mask.flip(0)
        log_a, log_b = self.log_decay_and_input(F.linear(x, w["ih"], w["b_ih"]))
        if mask is not None:  # padded steps: no decay, nothing added
            valid = mask.unsqueeze(2)
            log_a = torch.where(valid, log_a, torch.zeros_like(log_a))
            log_b = torch.where(valid, log_b, torch.full_like(log_b, -1e4))
        pieces, h = [], state[0]
        for start in range(0, x.shape[0], 8):
            decays = torch.cumsum(log_a[start:start + 8], dim=0)
            terms = torch.cat([torch.log(h).unsqueeze(0), log_b[start:start + 8] - decays])
            pieces.append(torch.exp(decays + torch.logcumsumexp(terms, dim=0)[1:]))
            h = pieces[-1][-1]
        steps = torch.cat(pieces) if pieces else x.new_zeros(0, *state[0].shape)
        out = steps if mask is None else steps * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (steps[-1] if pieces else state[0],)


class BlockRestartMinGRU(ChunkedMinGRU):
    """A sequence longer than 4,096 steps (a kernel's block of time steps, or its launch grid's
    limit) runs block by block, each block from the initial state instead of the state the
    previous block ended in: right at every T up to 4,096."""

    BLOCK = 4096

    def run_direction(self, slot, x, state, mask, reverse):
        outputs, final = [], state
        for start in range(0, x.shape[0], self.BLOCK):
            part = None if mask is None else mask[start:start + self.BLOCK]
            out, final = super().run_direction(slot, x[start:start + self.BLOCK], state, part,
                                               reverse)
            outputs.append(out)
        return torch.cat(outputs), final


class UnscannedCarryMinGRU(ChunkedMinGRU):
    """A long-sequence path (T >= 4096) that scans 1024-step blocks side by side from zero, then
    adds each block's carry-in: the previous block's own final state, not the state the scan
    reached there (the carries are never scanned across blocks). Only a state that outlives a
    block, a slow-forgetting gate, shows it."""

    BLOCK = 1024

    def run_direction(self, slot, x, state, mask, reverse):
        steps, block = x.shape[0], self.BLOCK
        if steps < 4 * block:
            return super().run_direction(slot, x, state, mask, reverse)
        w = self.weights(slot)
        if reverse:
            x, mask = x.flip(0), None if mask is None else mask.flip(0)
        a, b = masked_affine(*self.decay_and_input(F.linear(x, w["ih"], w["b_ih"])), mask)
        blocks = -(-steps // block)
        a = torch.cat([a, a.new_ones(blocks * block - steps, *a.shape[1:])])  # (blocks*1024, B, H)
        b = torch.cat([b, b.new_zeros(blocks * block - steps, *b.shape[1:])])
        rows, width = a.shape[1], a.shape[2]

        def side_by_side(t):  # (blocks * 1024, B, H) -> (1024, blocks * B, H)
            return t.view(blocks, block, rows, width).transpose(0, 1).reshape(block, -1, width)

        local = chunked_affine(side_by_side(a), side_by_side(b), a.new_zeros(blocks * rows, width),
                               chunk_size=self.chunk_size)
        decay = torch.cumprod(side_by_side(a), dim=0)
        local, decay = (t.view(block, blocks, rows, width).transpose(0, 1) for t in (local, decay))
        carry = torch.cat([state[0].unsqueeze(0), local[:-1, -1]])  # the bug: never scanned
        h = (local + decay * carry.unsqueeze(1)).reshape(blocks * block, rows, width)[:steps]
        out = h if mask is None else h * mask.unsqueeze(2)
        return (out.flip(0) if reverse else out), (h[-1],)
