"""The step maths of the fast GRU and Elman RNN: one step forward, one step backward (the LSTM's
is in lstm_cell.py).

Each class is a loop.Run for one family: ``prepare`` packs this call's weights for the chosen GEMM
backend (rows that feed a tanh doubled when it is folded, see loop.py), ``step`` advances one
time step in place, and ``backward`` backpropagates through every step and returns the gradients.
Gate layouts and parameter roles are torch's: LSTM rows [i, f, g, o], GRU rows [r, z, n] with the
reset gate applied after the hidden matmul.

In the forward loop every elementwise operation works in place or writes into a buffer that exists
already (a slot of the (T, B, ...) buffers the backward pass reads, or a per-call temporary);
only the GEMMs return new tensors (oneDNN has no out= form).
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.impls.loop import CHUNK_ROWS, Run


class GRURun(Run):
    """GRU: r, z = sigmoid(.), n = tanh(x_n + r (W_hn h + b_hn)), h' = n + z (h - n)."""

    gates = 3

    def __init__(self, config, x, state0, w, *, keep) -> None:
        super().__init__(config, x, state0, w, keep=keep)
        if keep:  # W_hn h + b_hn per step (doubled when folded): what backward reads of hg
            self.h_n_saved = x.new_empty(x.shape[0], x.shape[1], self.hidden)

    def prepare(self) -> tuple[Tensor, Tensor | None]:
        w, hidden, batch = self.w, self.hidden, self.x.shape[1]
        n_rows = (2 * hidden, 3 * hidden)  # the n block feeds a tanh
        rows = self.tanh_rows
        self.packed_hh = self.gemm.pack(rows(w["hh"], *n_rows), batch)
        self.bias_hh = rows(w["b_hh"], *n_rows)  # inside r * (W_hn h + b_hn): stays here
        return self.ih_gemm.pack(rows(w["ih"], *n_rows), CHUNK_ROWS), rows(w["b_ih"], *n_rows)

    def step(self, t: int, gx: Tensor) -> None:
        hidden = self.hidden
        h_prev = self.h_prev(t)
        hg = self.gemm.linear(h_prev, self.packed_hh, self.bias_hh)  # (B, 3H): h W_hh^T + b_hh
        h_rz, h_n = hg.split([2 * hidden, hidden], dim=1)
        h = self.h_target(t)
        if self.native is not None:  # one call: gx becomes [r, z, n], h written (native.c)
            self.native.gru_cell(gx, hg, h_prev, h)
        else:
            x_rz, x_n = gx.split([2 * hidden, hidden], dim=1)
            rz = x_rz.add_(h_rz).sigmoid_()  # in place in the projection: (B, 2H)
            r, z = rz.chunk(2, dim=1)
            n = self.tanh_(x_n.addcmul_(r, h_n))
            torch.lerp(n, h_prev, z, out=h)  # (1 - z) * n + z * h
        self.commit_h(t, h)
        if self.keep:
            self.saved[t] = gx  # now r, z, n
            self.h_n_saved[t] = h_n

    def backward(self, d_out, d_state, need_x):
        seq_len, batch = self.x.shape[:2]
        hidden = self.hidden
        # Gradients of the input-side pre-activations [r, z, n_x] and of the hidden side's GEMM
        # output [r, z, W_hn h + b_hn]: (T, B, 3H) each.
        dzx = self.x.new_empty(seq_len, batch, 3 * hidden)
        dzh = self.x.new_empty(seq_len, batch, 3 * hidden)
        packed = self.gemm.pack(self.w["hh"].t(), batch)
        d_h = d_state[0]
        ones = self.x.new_ones(batch, hidden)
        through_tanh = self.x.new_empty(batch, hidden)
        derivative = self.x.new_empty(batch, 2 * hidden)
        for t in reversed(self.order):
            gx, h_n = self.saved[t], self.h_n_saved[t]
            rz, n = gx[:, :2 * hidden], gx[:, 2 * hidden:]
            r, z = rz.chunk(2, dim=1)
            h_prev = self.h_prev(t)
            grad_h, bypass_h = self.grad_h(t, d_h, d_out[t])
            dzx_t, dzh_t = dzx[t], dzh[t]
            d_rz, d_n = dzx_t[:, :2 * hidden], dzx_t[:, 2 * hidden:]
            d_r, d_z = d_rz.chunk(2, dim=1)
            torch.sub(h_prev, n, out=d_z).mul_(grad_h)  # dL/dz = grad_h (h - n)
            torch.addcmul(grad_h, grad_h, z, value=-1, out=d_n)  # dL/dn = grad_h (1 - z)
            d_n.mul_(torch.addcmul(ones, n, n, value=-1, out=through_tanh))
            torch.mul(d_n, h_n, out=d_r)  # dL/dr = dL/dn_pre (W_hn h + b_hn)
            if self.fold:
                d_r.mul_(0.5)
            d_rz.mul_(torch.addcmul(rz, rz, rz, value=-1, out=derivative))
            dzh_t[:, :2 * hidden].copy_(d_rz)
            torch.mul(d_n, r, out=dzh_t[:, 2 * hidden:])  # dL/d(W_hn h + b_hn)
            # dL/dh = z * grad_h (directly) + dzh_t @ W_hh (through the gates)
            d_h = self.gemm.linear_add(dzh_t, packed, torch.mul(grad_h, z))
            if bypass_h is not None:
                d_h = d_h.add_(bypass_h)
        flat_x = dzx.view(seq_len * batch, 3 * hidden)
        flat_h = dzh.view(seq_len * batch, 3 * hidden)
        dx, d_w_ih = self.input_grads(dzx, need_x)
        biased = self.w["b_ih"] is not None
        grads = {"ih": d_w_ih, "hh": self.gemm.weight_grad(flat_h, self.h_prev_all()),
                 "b_ih": flat_x.sum(0) if biased else None,
                 "b_hh": flat_h.sum(0) if biased else None}
        return dx, (d_h,), grads


class RNNRun(Run):
    """Elman RNN: h' = act(x_t W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu."""

    def rows(self, tensor: Tensor | None) -> Tensor | None:
        """The weight or bias as the forward GEMMs use it: doubled under a folded tanh."""
        if self.config.nonlinearity != "tanh":
            return tensor
        return self.tanh_rows(tensor, 0, self.hidden)

    def prepare(self) -> tuple[Tensor, Tensor | None]:
        w = self.w
        self.packed_hh = self.gemm.pack(self.rows(w["hh"]), self.x.shape[1])
        bias = None if w["b_ih"] is None else self.rows(w["b_ih"] + w["b_hh"])
        return self.ih_gemm.pack(self.rows(w["ih"]), CHUNK_ROWS), bias

    def step(self, t: int, gx: Tensor) -> None:
        pre = self.gemm.linear_add(self.h_prev(t), self.packed_hh, gx)  # (B, H)
        target = h = self.h_target(t)
        if self.native is not None:  # one call (native.c)
            self.native.rnn_act(pre, target, relu=self.config.nonlinearity == "relu")
        elif self.config.nonlinearity == "tanh" and self.fold:
            h = torch.sigmoid(pre, out=target).mul_(2).sub_(1)  # pre holds 2z: tanh(z)
        elif self.config.nonlinearity == "tanh":
            h = torch.tanh(pre, out=target)
        else:
            h = torch.clamp_min(pre, 0, out=target)
        self.commit_h(t, h)

    def backward(self, d_out, d_state, need_x):
        seq_len, batch = self.x.shape[:2]
        dz = self.x.new_empty(seq_len, batch, self.hidden)
        packed = self.gemm.pack(self.w["hh"].t(), batch)
        d_h = d_state[0]
        ones = self.x.new_ones(batch, self.hidden)
        for t in reversed(self.order):
            h = self.h_states[self.slot(t)]  # the step's new h (its state, where masked)
            grad_h, bypass_h = self.grad_h(t, d_h, d_out[t])
            if self.config.nonlinearity == "tanh":
                torch.addcmul(ones, h, h, value=-1, out=dz[t]).mul_(grad_h)  # 1 - tanh^2
            else:
                torch.mul(grad_h, h > 0, out=dz[t])
            d_h = self.gemm.linear(dz[t], packed)
            if bypass_h is not None:
                d_h = d_h.add_(bypass_h)
        flat = dz.view(seq_len * batch, self.hidden)
        dx, d_w_ih = self.input_grads(dz, need_x)
        d_b = None if self.w["b_ih"] is None else flat.sum(0)
        grads = {"ih": d_w_ih, "hh": self.gemm.weight_grad(flat, self.h_prev_all()),
                 "b_ih": d_b, "b_hh": None if d_b is None else d_b.clone()}
        return dx, (d_h,), grads
