"""The time loop of the fast layers over one (layer, direction), with a hand-written backward.

A fast layer's forward is a GEMM per step plus a few elementwise gate operations. Recording that
loop for autograd costs a graph node per operation and step, and autograd's backward through it
runs its GEMMs through torch.mm, one step at a time. ``Recurrence`` instead runs the loop without
autograd, keeps what the backward pass needs, and backpropagates through time by hand:

- forward: the input projection x W_ih^T + b is computed in chunks of CHUNK_ROWS rows, each just
  before the steps that read it. (The whole (T, B, G*H) projection at once is written to memory
  and read back from it, 52 MB at the standard LSTM shape, and measured ~5% slower there than
  chunks that stay in cache.) Every step is one GEMM on the chosen backend (kernels.py) and
  in-place gate maths.
- backward, step by step in reverse: the gates' gradients go into a (T, B, G*H) buffer, and the
  gradient flowing back through h is one (B, G*H) x (G*H, h_out) GEMM per step. Then each weight
  gradient is ONE GEMM over all T*B rows (dW_ih = dZ^T X, dW_hh = dZ^T H_prev), the bias
  gradients are sums, and the input's gradient is one (T*B, G*H) x (G*H, in) GEMM.

tanh is evaluated as 2 sigmoid(2z) - 1. On one thread of an AVX-512 AMD EPYC core, torch's
float32 tanh costs ~2.6 ns per element and its sigmoid ~0.4; sigmoid and two cheap passes stay
well below one tanh. The factor 2 inside is folded into the weight rows that feed a tanh (an exact
scaling in floating point), so no pass is spent on it; the absolute error against tanh stays
below 2e-7 in float32. Below FOLD_MIN elements per step it is not worth it: the three passes
cost more in dispatch than one tanh does in arithmetic (measured: 6.2 us against 2.0 at 512
elements, 8.0 against 11.0 at 4096), and the doubled rows are a copy of the weights made by every
call (at T=100, B=1, H=512, two 4 MB copies made an LSTM forward 1.7x torch's instead of ~1.2x).
So small steps use the weights as they are: a GRU or an Elman RNN calls torch's tanh, an LSTM
doubles its g block in each step's GEMM output (one pass over B x H). ``Run.fold`` says which.

With compiled kernels (native.py, ``Run.native``) each step's gate maths is one call that computes
its tanh's itself (nothing is folded) and writes the same buffers, in the same representation,
as the torch operators do; the backward pass is the same either way.

Padded steps (a mask) leave the state alone and output zeros; their gradient passes the state's
gradient through unchanged. The family-specific maths lives in cells.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from harness.core.torch_inputs import State
from harness.impls.kernels import AtenGemm
from harness.impls.native import Kernels

Weights = dict[str, Tensor | None]  # roles ih, hh, b_ih, b_hh, hr of one (layer, direction)

CHUNK_ROWS = 1280  # rows of x per input-projection GEMM: 20 steps at B=64 (10 MB of LSTM gates)


FOLD_MIN = 4096  # elements of a step's tanh from which the factor 2 is folded (see above)


def tanh_(x: Tensor) -> Tensor:
    """tanh in place, for x that already holds 2 * z: 2 sigmoid(2z) - 1 (see module docstring)."""
    return x.sigmoid_().mul_(2).sub_(1)


def scale_rows(tensor: Tensor | None, start: int, stop: int) -> Tensor | None:
    """A copy of a weight or bias with rows [start, stop) doubled (the rows that feed a tanh)."""
    if tensor is None:
        return None
    scaled = tensor.clone()
    scaled[start:stop] *= 2
    return scaled


@dataclass(frozen=True)
class Config:
    """What one (layer, direction) run needs besides its tensors."""

    gemm: AtenGemm
    hidden: int
    reverse: bool
    mask: Tensor | None  # (T, B) bool: step t is inside sequence b
    nonlinearity: str = "tanh"  # Elman RNN only
    ih_gemm: AtenGemm | None = None  # the input projection's backend; None: ``gemm``
    native: Kernels | None = None  # compiled gate maths (native.py); None: torch operators


class Run:
    """One (layer, direction) over one sequence x (T, B, in).

    Buffers are indexed by slot: the state entering step t is at slot ``prev(t)``, the state it
    leaves at ``slot(t)`` (t and t+1, swapped in reverse). With ``keep`` (autograd) every slot is
    kept for the backward pass; without, h and c live in two alternating rows (slot % 2).
    """

    gates: ClassVar[int] = 1
    has_cell: ClassVar[bool] = False

    def __init__(self, config: Config, x: Tensor, state0: State, w: Weights, *, keep: bool
                 ) -> None:
        self.config, self.x, self.w, self.keep = config, x, w, keep
        self.gemm, self.hidden = config.gemm, config.hidden
        self.ih_gemm = config.ih_gemm or config.gemm  # the hoisted input projection's
        self.h_out = config.hidden if w["hr"] is None else w["hr"].shape[0]  # proj_size
        seq_len, batch = x.shape[:2]
        self.order: Sequence[int] = (
            range(seq_len - 1, -1, -1) if config.reverse else range(seq_len)
        )
        rows = seq_len + 1
        # Output and (without a mask) the h states: out[t] is out_buf[slot(t)].
        self.out_buf = x.new_empty(rows, batch, self.h_out)
        self.out = self.out_buf[:seq_len] if config.reverse else self.out_buf[1:]
        self.valid = None
        self.h_states = self.out_buf
        if config.mask is not None:
            self.valid = config.mask.unsqueeze(2)  # (T, B, 1)
            self.zero = x.new_zeros(())
            self.h_states = x.new_empty(rows if keep else 2, batch, self.h_out)
            self.h_new = x.new_empty(batch, self.h_out)  # a step's h before masking
        self.h_states[self.prev(self.order[0]) % len(self.h_states)] = state0[0]
        self.saved: list = [None] * seq_len  # per step: what the backward pass reads
        self.native = config.native  # compiled gate maths compute tanh themselves: no folding
        # tanh rows doubled in (copies of) the weights, or the weights as they are
        self.fold = batch * self.hidden >= FOLD_MIN and self.native is None

    def prev(self, t: int) -> int:
        return t + 1 if self.config.reverse else t

    def slot(self, t: int) -> int:
        return t if self.config.reverse else t + 1

    def tanh_rows(self, tensor: Tensor | None, start: int, stop: int) -> Tensor | None:
        """A weight or bias as the forward GEMMs use it: rows [start, stop) feed a tanh and are
        doubled when it is folded (a copy), else the tensor itself."""
        return scale_rows(tensor, start, stop) if self.fold else tensor

    def tanh_(self, x: Tensor) -> Tensor:
        """tanh in place of a pre-activation computed from ``tanh_rows`` weights."""
        return tanh_(x) if self.fold else x.tanh_()

    def h_prev(self, t: int) -> Tensor:
        return self.h_states[self.prev(t) % len(self.h_states)]

    def h_target(self, t: int) -> Tensor:
        """Where step t writes its new h: its output slot, or a temporary when masked."""
        if self.valid is None:
            return self.h_states[self.slot(t)]
        return self.h_new

    def commit_h(self, t: int, h: Tensor) -> None:
        """With a mask: padded rows keep their state and output zeros."""
        if self.valid is not None:
            valid = self.valid[t]
            torch.where(valid, h, self.h_prev(t),
                        out=self.h_states[self.slot(t) % len(self.h_states)])
            torch.where(valid, h, self.zero, out=self.out[t])

    # The forward loop ---------------------------------------------------------------------------

    def prepare(self) -> tuple[Tensor, Tensor | None]:
        """Pack this call's weights for the GEMM backend; return (packed W_ih, bias) of the
        hoisted input projection."""
        raise NotImplementedError

    def step(self, t: int, gx: Tensor) -> None:
        """Step t, given gx (B, G*H): x_t's projection, this run's own tensor (may be written)."""
        raise NotImplementedError

    def steps(self, block: Sequence[int], xw: Tensor, low: int) -> None:
        """Steps ``block`` (consecutive, in order), x_t's projection at xw[t - low]."""
        for t in block:
            self.step(t, xw[t - low])

    def forward(self) -> tuple[Tensor, State]:
        """Run every step: output (T, B, h_out) and the final state (fresh tensors)."""
        seq_len, batch, in_features = self.x.shape
        packed_ih, bias = self.prepare()
        chunk = max(1, CHUNK_ROWS // max(batch, 1))
        for start in range(0, seq_len, chunk):
            block = self.order[start:start + chunk]
            low, high = min(block), max(block) + 1
            rows = self.x[low:high].reshape((high - low) * batch, in_features)
            xw = self.ih_gemm.linear(rows, packed_ih, bias)  # (steps * B, G*H)
            xw = xw.view(high - low, batch, xw.shape[1])  # not -1: B may be 0
            self.steps(block, xw, low)
        return self.out, self.final_state(self.slot(self.order[-1]))

    def state_buffers(self) -> tuple[Tensor, ...]:
        """The buffers of the state (h,) or (h, c), indexed by slot."""
        return (self.h_states,)

    def final_state(self, slot: int) -> State:
        """The state after the last step (at ``slot``), as fresh tensors."""
        return tuple(s[slot % len(s)].clone() for s in self.state_buffers())

    # The backward pass --------------------------------------------------------------------------

    def backward(self, d_out: Tensor, d_state: State, need_x: bool
                 ) -> tuple[Tensor | None, State, Weights]:
        """Gradients of the input (None unless ``need_x``), the initial state and the weights
        (by role) for gradients d_out (T, B, h_out) and d_state (of the final state)."""
        raise NotImplementedError

    def grad_h(self, t: int, d_h: Tensor, d_out_t: Tensor) -> tuple[Tensor, Tensor | None]:
        """(gradient into step t's new h, the part of d_h that bypasses it: None without a mask;
        with one, d_h's rows of the sequences that step t pads)."""
        grad_h = d_out_t + d_h
        if self.valid is None:
            return grad_h, None
        valid = self.valid[t]
        return torch.where(valid, grad_h, self.zero), torch.where(valid, self.zero, d_h)

    def h_prev_all(self) -> Tensor:
        """The state entering every step, (T*B, h_out): one operand of dW_hh's GEMM."""
        seq_len, batch = self.x.shape[:2]
        states = self.h_states[1:] if self.config.reverse else self.h_states[:seq_len]
        return states.reshape(seq_len * batch, self.h_out)

    def input_grads(self, dz: Tensor, need_x: bool) -> tuple[Tensor | None, Tensor]:
        """From the gates' gradient dz (T, B, G*H): (dx or None, dW_ih), one GEMM each."""
        seq_len, batch, in_features = self.x.shape
        flat = dz.view(seq_len * batch, -1)
        d_w = self.gemm.weight_grad(flat, self.x.reshape(seq_len * batch, in_features))
        if not need_x:
            return None, d_w
        packed = self.ih_gemm.pack(self.w["ih"].t(), seq_len * batch)  # dz @ W_ih: T*B rows
        return self.ih_gemm.linear(flat, packed).view(seq_len, batch, in_features), d_w


class Recurrence(torch.autograd.Function):
    """A Run as one autograd node: forward keeps what backward needs; backward is Run.backward.

    Inputs: (run class, Config, x, h0, c0, W_ih, W_hh, b_ih, b_hh, W_hr), the absent ones None;
    outputs (output, h_n) or (output, h_n, c_n). The buffers the backward pass reads are saved with
    save_for_backward, so an in-place change of the output is caught as autograd catches it.
    """

    @staticmethod
    def forward(ctx, run_cls, config, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        weights = {"ih": w_ih, "hh": w_hh, "b_ih": b_ih, "b_hh": b_hh, "hr": w_hr}
        state0 = (h0,) if c0 is None else (h0, c0)
        run = run_cls(config, x, state0, weights, keep=True)
        output, final = run.forward()
        ctx.run = run
        ctx.save_for_backward(x, w_ih, w_hh, *run.state_buffers())
        return (output, *final)

    @staticmethod
    def backward(ctx, d_out, *d_state):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative is coming
            raise RuntimeError(
                "the fast layers' backward pass is hand-written and not differentiable: "
                "double backward (create_graph=True) is not supported; use torch's module")
        return Recurrence.first_backward(ctx, d_out, *d_state)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def first_backward(ctx, d_out, *d_state):
        """The backward pass (once_differentiable alone would not stop a second derivative
        with respect to the inputs saved in ctx: it returns zeros for those)."""
        ctx.saved_tensors  # noqa: B018 - raises if a saved tensor was modified in place
        run = ctx.run
        dx, d_state0, dw = run.backward(d_out, d_state, need_x=ctx.needs_input_grad[2])
        d_c0 = d_state0[1] if run.has_cell else None
        return (None, None, dx, d_state0[0], d_c0, dw["ih"], dw["hh"], dw["b_ih"], dw["b_hh"],
                dw.get("hr"))
