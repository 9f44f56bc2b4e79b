"""The step maths of the fast LSTM: one step forward, one step backward, and with the compiled
kernels (native.c) a block of steps forward, and each step's gate gradients backward, in one call.

Like cells.py (the GRU and Elman RNN): ``prepare`` packs this call's weights for the chosen GEMM
backend, ``step`` advances one time step in place, ``backward`` backpropagates through every
step. Gate layout and parameter roles are torch's: rows [i, f, g, o], proj_size's W_hr.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.impls.loop import CHUNK_ROWS, Run


class LSTMRun(Run):
    """LSTM: c' = f c + i g, h' = o tanh(c'), then h' W_hr^T with proj_size.

    The cell state is carried as C = -2c and the saved g gate as s_g = sigmoid(2 g_pre), the
    representation the backward pass reads (tanh(c') = 1 - 2 sigmoid(C'), tanh' = 4 s (1 - s)).
    The forward computes both tanh's as tanh itself: C' = f C - 2 i tanh(g), h' = o tanh(-C'/2)
    (1 - 2 sigmoid(2x) would keep only the absolute precision of 1 near 0, not the value's;
    numerics::precision_like_the_reference holds the layer to that). Scaling by -2 is exact; c_0
    and c_n are converted once per call.
    """

    gates = 4
    has_cell = True

    def __init__(self, config, x, state0, w, *, keep) -> None:
        super().__init__(config, x, state0, w, keep=keep)
        seq_len, batch = x.shape[:2]
        self.c_states = x.new_empty(seq_len + 1 if keep else 2, batch, self.hidden)  # C = -2c
        first = self.prev(self.order[0]) % len(self.c_states)
        torch.mul(state0[1], -2, out=self.c_states[first])
        self.sig_c = x.new_empty(batch, self.hidden)  # scratch: tanh(g) forward, sigmoid(C) back
        self.blocks: list[tuple[int, Tensor]] = []  # (first step, gates (steps, B, 4H)) of blocks
        if w["hr"] is not None:  # o * tanh(c) before the projection, kept for dW_hr
            self.h_full = x.new_empty(seq_len if keep else 1, batch, self.hidden)

    def state_buffers(self) -> tuple[Tensor, ...]:
        return (self.h_states, self.c_states)

    def final_state(self, slot: int) -> tuple[Tensor, ...]:
        h, c = (s[slot % len(s)] for s in self.state_buffers())
        return h.clone(), c * -0.5

    def prepare(self) -> tuple[Tensor, Tensor | None]:
        w, hidden = self.w, self.hidden
        g_rows = (2 * hidden, 3 * hidden)  # the g block feeds a tanh
        rows = self.tanh_rows
        self.packed_hh = self.gemm.pack(rows(w["hh"], *g_rows), self.x.shape[1])
        if w["hr"] is not None:
            self.packed_hr = self.gemm.pack(w["hr"], self.x.shape[1])
        bias = None if w["b_ih"] is None else rows(w["b_ih"] + w["b_hh"], *g_rows)
        return self.ih_gemm.pack(rows(w["ih"], *g_rows), CHUNK_ROWS), bias

    def steps(self, block, xw, low) -> None:
        """All of a block in one compiled call where nothing needs Python between steps: the
        compiled product and gate maths, no mask, no projection (at B=1 the loop's dispatch was
        ~10 us of a ~85 us step)."""
        if (self.native is None or self.gemm.name != "native" or self.valid is not None
                or self.w["hr"] is not None or not self.packed_hh.is_contiguous()):
            return super().steps(block, xw, low)
        self.native.lstm_steps(self.packed_hh, xw, low, self.h_states, self.c_states, block[0],
                               len(block), self.config.reverse)
        if self.keep:  # step t's gates are xw[t - low]: see gates_at (a view per step: ~1 us)
            self.blocks.append((low, xw))

    def gates_at(self, t: int) -> Tensor:
        """Step t's gates after its forward (B, 4H): saved by its step, or inside a block."""
        if self.saved[t] is not None:
            return self.saved[t]
        return next(xw[t - low] for low, xw in self.blocks if low <= t < low + len(xw))

    def step(self, t: int, gx: Tensor) -> None:
        c_states = self.c_states
        c_prev = c_states[self.prev(t) % len(c_states)]
        # sigmoid of the (i, f, 2g, o) pre-activations x_t W_ih^T + b + h W_hh^T: (B, 4H)
        gates = self.gemm.linear_add(self.h_prev(t), self.packed_hh, gx)
        c = c_states[self.slot(t) % len(c_states)]
        projected = self.w["hr"] is not None
        # o tanh(c'): the output, or before the projection the (B, H) that feeds it
        h_full = self.h_full[t % len(self.h_full)] if projected else self.h_target(t)
        if self.native is not None:  # one call: gates, c and o tanh(c') (native.c)
            self.native.lstm_cell(gates, c_prev, c, h_full)
        else:
            g_block = gates[:, 2 * self.hidden:3 * self.hidden]
            if self.fold:  # the g rows were doubled: g_block holds 2g
                g_block.mul_(0.5)
            t_g = torch.tanh(g_block, out=self.sig_c)  # tanh itself: precise near 0
            g_block.copy_(t_g).add_(1).mul_(0.5)  # sigmoid(2g) = (1 + tanh g) / 2, for backward
            gates[:, :2 * self.hidden].sigmoid_()
            gates[:, 3 * self.hidden:].sigmoid_()
            i, f, _, o = gates.chunk(4, dim=1)
            torch.mul(f, c_prev, out=c)
            c.addcmul_(i, t_g, value=-2)  # C' = f C - 2 i tanh(g)
            torch.mul(c, -0.5, out=h_full)
            h_full.tanh_().mul_(o)  # o tanh(c')
        h = h_full
        if projected:
            h = self.h_target(t).copy_(self.gemm.linear(h_full, self.packed_hr))  # (B, proj)
        if self.valid is not None:
            torch.where(self.valid[t], c, c_prev, out=c)
            self.commit_h(t, h)
        if self.keep:
            self.saved[t] = gates

    def backward(self, d_out, d_state, need_x):
        seq_len, batch = self.x.shape[:2]
        dz = self.x.new_empty(seq_len, batch, 4 * self.hidden)  # gradient of pre-activations
        packed = self.gemm.pack(self.w["hh"].t(), batch)  # dz_t @ W_hh: (B, 4H) -> (B, h_out)
        projected = self.w["hr"] is not None
        if self.native is not None and self.valid is None and not projected:
            d_h, d_c = self.backward_compiled(d_out, d_state, dz, packed)
        else:
            d_h, d_c, d_proj = self.backward_steps(d_out, d_state, dz, packed)
        flat = dz.view(seq_len * batch, 4 * self.hidden)
        dx, d_w_ih = self.input_grads(dz, need_x)
        d_b = None if self.w["b_ih"] is None else flat.sum(0)
        grads = {"ih": d_w_ih, "hh": self.gemm.weight_grad(flat, self.h_prev_all()),
                 "b_ih": d_b, "b_hh": None if d_b is None else d_b.clone()}
        if projected:
            grads["hr"] = self.gemm.weight_grad(d_proj.view(seq_len * batch, -1),
                                                self.h_full.view(seq_len * batch, -1))
        return dx, (d_h, d_c), grads

    def backward_compiled(self, d_out: Tensor, d_state, dz: Tensor, packed: Tensor
                          ) -> tuple[Tensor, Tensor]:
        """The loop through time, unmasked and unprojected, each step's gate gradients in one
        compiled call (native.c): fills dz (T, B, 4H); returns the initial state's gradients."""
        d_out = d_out.contiguous()  # autograd may hand over an expanded tensor
        d_h = d_state[0].contiguous()
        d_c = d_state[1].clone(memory_format=torch.contiguous_format)  # updated in place
        for t in reversed(self.order):
            self.native.lstm_cell_backward(self.gates_at(t), self.c_states[self.prev(t)],
                                           self.c_states[self.slot(t)], d_out[t], d_h, d_c,
                                           dz[t])
            d_h = self.gemm.linear(dz[t], packed)
        return d_h, d_c

    def backward_steps(self, d_out: Tensor, d_state, dz: Tensor, packed: Tensor
                       ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The loop through time in torch operators, masks and the projection included: fills
        dz (T, B, 4H); returns the initial state's gradients and dL/dh per step (T, B, proj)
        when projected (for dW_hr), else None."""
        seq_len, batch = self.x.shape[:2]
        hidden = self.hidden
        projected = self.w["hr"] is not None
        d_proj = None
        if projected:
            packed_hr = self.gemm.pack(self.w["hr"].t(), batch)  # (B, proj) -> (B, H)
            d_proj = self.x.new_empty(seq_len, batch, self.h_out)
        d_h, d_c = d_state[0], d_state[1].clone()
        through_tanh = self.x.new_empty(batch, hidden)
        derivative = self.x.new_empty(batch, 4 * hidden)
        # Per gate block, what turns s (1 - s) into the derivative the block needs: dz_f is
        # computed against C = -2c, and tanh'(g) = 1 - g^2 = 4 s_g (1 - s_g).
        block_scale = torch.tensor([1.0, -0.5, 4.0, 1.0], dtype=dz.dtype, device=dz.device)
        block_scale = block_scale.repeat_interleave(hidden)  # (4H,)
        for t in reversed(self.order):
            gates = self.gates_at(t)
            i, f, s_g, o = gates.chunk(4, dim=1)
            c_prev = self.c_states[self.prev(t)]
            s_c = torch.sigmoid(self.c_states[self.slot(t)], out=self.sig_c)
            grad_h, bypass_h = self.grad_h(t, d_h, d_out[t])
            if projected:  # back through h = h_full W_hr^T
                d_proj[t] = grad_h
                grad_h = self.gemm.linear(grad_h, packed_hr)
            # dL/dc' = d_c + grad_h o (1 - tanh(c')^2), and 1 - tanh^2 = 4 s_c (1 - s_c)
            torch.addcmul(s_c, s_c, s_c, value=-1, out=through_tanh).mul_(o)
            grad_c = d_c.addcmul_(grad_h, through_tanh, value=4)
            if self.valid is not None:
                valid = self.valid[t]
                d_c = torch.where(valid, grad_c * f, grad_c)  # padded rows pass d_c through
                grad_c = torch.where(valid, grad_c, self.zero)
            dz_t = dz[t]
            dz_i, dz_f, dz_g, dz_o = dz_t.chunk(4, dim=1)
            torch.mul(s_g, 2, out=dz_i).sub_(1).mul_(grad_c)  # grad_c g
            torch.mul(grad_c, c_prev, out=dz_f)  # grad_c C: -2 grad_c c
            torch.mul(grad_c, i, out=dz_g)
            torch.addcmul(grad_h, grad_h, s_c, value=-2, out=dz_o)  # grad_h tanh(c')
            torch.addcmul(gates, gates, gates, value=-1, out=derivative).mul_(block_scale)
            dz_t.mul_(derivative)
            if self.valid is None:
                d_c = grad_c.mul_(f)
            d_h = self.gemm.linear(dz_t, packed)
            if bypass_h is not None:
                d_h = d_h.add_(bypass_h)
        return d_h, d_c, d_proj
