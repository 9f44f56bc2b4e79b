"""Fast from-scratch recurrent layers: the same maths as scratch.py, written the way a fast
recurrent loop is written.

scratch.py spells torch's recurrence out one step at a time, as it is taught: every step projects
its own input, adds (or concatenates) the two halves, and the step outputs are stacked at the
end. That is easy to read, and slower than torch.nn. This module exists to show, on the same
contract and against the same checks, what it takes to match torch.nn in plain Python:

1. Hoist the input projection out of the time loop. x_t @ W_ih^T does not depend on the state,
   so all T of them are one (T*B, in) x (in, G*H) GEMM, with every bias that can move out of the
   loop folded in. Only h_{t-1} @ W_hh^T is left inside the loop: one addmm per step, adding
   into that step's precomputed slice of the projection.
2. Walk the steps with views. ``xw.unbind(0)`` hands out T views under a single autograd node,
   so the backward pass assembles the projection's gradient in one piece. Indexing xw[t] in the
   loop instead creates T nodes, each allocating and filling a full (T, B, G*H) gradient.
3. Allocate only what must be allocated. Under autograd every step's activations are saved for
   the backward pass, so they are new tensors by necessity; the step outputs are stacked once at
   the end. (Writing them into a preallocated output instead makes autograd copy the whole
   output's gradient once per step in the backward pass.) Without autograd (inference,
   torch.no_grad) nothing is saved: the (T, B, H) output is allocated once with torch.empty and
   every step writes into its own slice, the gates are computed in place in the projection
   (this call's own temporary), and the state lives in buffers reused across steps. The output
   is allocated per call, so a returned tensor never changes under a later call.
4. Mask padded steps with torch.where on the state, so variable-length batches stay exact: a
   padded step leaves the state alone and outputs zeros, as scratch.py and torch's packed path
   do.

Everything else — input layouts, PackedSequence, lengths=, unbatched input, batch_first,
directions, layers, dropout, hx validation, torch's parameter names — is scratch.py's shared
machinery: these classes only replace ``run_direction``, the loop over one (layer, direction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.impls.scratch import (
    ScratchGRU,
    ScratchLSTM,
    State,
    TorchNamedParameters,
)

Weights = dict[str, Tensor | None]  # roles ih, hh, b_ih, b_hh, hr of one (layer, direction)
Activation = Callable[[Tensor], Tensor]

# nonlinearity -> (out of place for autograd, in place for inference)
ACTIVATIONS: dict[str, tuple[Activation, Activation]] = {
    "tanh": (torch.tanh, torch.tanh_),
    "relu": (torch.relu, torch.relu_),
}


class FastRecurrent(TorchNamedParameters):
    """run_direction with the input projection hoisted out of the loop.

    A subclass gives two versions of one step, both taking that step's slice of the projection:
    ``step`` for autograd (out of place: returns the new state), and ``step_inplace`` for
    inference (writes the new h into a given output slice, updates what it may in place).
    """

    def projection_bias(self, w: Weights) -> Tensor | None:
        """The bias added once per step outside the recurrent matmul: b_ih + b_hh by default."""
        if w["b_ih"] is None:
            return None
        return w["b_ih"] + w["b_hh"]

    def project_inputs(self, x: Tensor, w: Weights) -> Tensor:
        """x (T, B, in) -> x @ W_ih^T + bias for every step at once: (T, B, G*H), one GEMM."""
        seq_len, batch, in_features = x.shape
        flat = x.reshape(seq_len * batch, in_features)  # (T*B, in); a view when x is contiguous
        xw = F.linear(flat, w["ih"], self.projection_bias(w))  # (T*B, G*H): addmm, one GEMM
        return xw.view(seq_len, batch, xw.shape[1])  # not -1: B may be 0

    def run_direction(
        self, slot: int, x: Tensor, state: State, mask: Tensor | None, reverse: bool
    ) -> tuple[Tensor, State]:
        """Run one (layer, direction) over x (T, B, in): outputs (T, B, h_out), final state."""
        w = self.weights(slot)
        xw = self.project_inputs(x, w)  # (T, B, G*H), this call's own tensor
        order = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        tracked = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (xw, *state)
        )
        if tracked:
            return self.run_autograd(w, xw, state, mask, order)
        with torch.no_grad():
            return self.run_inplace(w, xw, state, mask, order)

    def run_autograd(
        self, w: Weights, xw: Tensor, state: State, mask: Tensor | None, order: Sequence[int]
    ) -> tuple[Tensor, State]:
        """The loop under autograd: out-of-place steps, outputs stacked once at the end."""
        gates_x = xw.unbind(0)  # T views (B, G*H), one autograd node for all of them
        hh = w["hh"].t()  # (h_out, G*H): a transposed view, no copy
        outputs: list[Tensor] = [xw] * len(gates_x)  # placeholders, every slot is overwritten
        if mask is None:
            for t in order:
                state = self.step(gates_x[t], state, w, hh)
                outputs[t] = state[0]
        else:
            valid = mask.unsqueeze(2).unbind(0)  # T tensors (B, 1): step t inside sequence b
            for t in order:
                new = self.step(gates_x[t], state, w, hh)
                # A padded step leaves the state alone and outputs zeros.
                state = tuple(torch.where(valid[t], n, s) for n, s in zip(new, state))
                outputs[t] = torch.where(valid[t], new[0], 0.0)
        return torch.stack(outputs), state  # (T, B, h_out): the only copy of the outputs

    def run_inplace(
        self, w: Weights, xw: Tensor, state: State, mask: Tensor | None, order: Sequence[int]
    ) -> tuple[Tensor, State]:
        """The loop without autograd: one output buffer, state buffers reused across steps."""
        seq_len, batch = xw.shape[:2]
        output = xw.new_empty(seq_len, batch, self.h_out)  # (T, B, h_out), new for every call
        hh = w["hh"].t()  # (h_out, G*H)
        scratch = self.scratch_buffers(xw)
        # The state is updated in our own copies, never in the caller's hx. Without a mask, h
        # needs no copy (it is the previous step's output slice) and c is updated in place;
        # with a mask, every new state goes to a spare buffer first, so that padded rows can
        # keep the old one.
        state = (state[0], *(s.clone() for s in state[1:]))
        spare = state[1:]
        if mask is not None:
            state = (state[0].clone(), *state[1:])
            spare = tuple(torch.empty_like(s) for s in state[1:])
            valid = mask.unsqueeze(2).unbind(0)  # T tensors (B, 1)
            invalid = (~mask).unsqueeze(2).unbind(0)
        for t in order:
            new = self.step_inplace(xw[t], state, w, hh, (output[t], *spare), scratch)
            if mask is None:
                state = new
            else:
                # Padded rows keep their state and output zeros.
                for n, s in zip(new, state):
                    torch.where(valid[t], n, s, out=s)
                output[t].masked_fill_(invalid[t], 0.0)
        return output, state

    def scratch_buffers(self, xw: Tensor) -> dict[str, Tensor]:
        """Per-call temporaries that every step reuses."""
        return {}

    def step(self, gates_x: Tensor, state: State, w: Weights, hh: Tensor) -> State:
        """One step under autograd: gates_x (B, G*H) is x_t's projection; returns the new state."""
        raise NotImplementedError

    def step_inplace(
        self, gates_x: Tensor, state: State, w: Weights, hh: Tensor, into: State,
        scratch: dict[str, Tensor],
    ) -> State:
        """One step without autograd: writes the new state into the buffers ``into`` (h first,
        into its output slice) and returns them. gates_x may be overwritten: it is this call's
        projection. A buffer of ``into`` may be the state tensor itself (updated in place)."""
        raise NotImplementedError


class FastRNN(FastRecurrent):
    """Elman RNN, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), with the input
    projection hoisted out of the loop; torch's parameter names."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device=device, dtype=dtype,
        )
        self.nonlinearity = nonlinearity

    def step(self, gates_x: Tensor, state: State, w: Weights, hh: Tensor) -> State:
        (h,) = state
        activation, _ = ACTIVATIONS[self.nonlinearity]
        return (activation(torch.addmm(gates_x, h, hh)),)  # (B, H)

    def step_inplace(self, gates_x, state, w, hh, into, scratch) -> State:
        (h,), (h_out,) = state, into
        _, activation_ = ACTIVATIONS[self.nonlinearity]
        torch.addmm(gates_x, h, hh, out=h_out)  # x_t's projection + h W_hh^T, into the output
        return (activation_(h_out),)


class FastLSTM(FastRecurrent, ScratchLSTM):
    """LSTM with the input projection hoisted out of the loop: torch's [i, f, g, o] layout and
    parameter names, proj_size included."""

    def scratch_buffers(self, xw: Tensor) -> dict[str, Tensor]:
        if not self.proj_size:
            return {}
        return {"h_full": xw.new_empty(xw.shape[1], self.hidden_size)}  # (B, H), pre-projection

    def step(self, gates_x: Tensor, state: State, w: Weights, hh: Tensor) -> State:
        h, c = state
        gates = torch.addmm(gates_x, h, hh)  # (B, 4H) = x_t W_ih^T + b + h W_hh^T
        i, f, g, o = gates.chunk(4, dim=1)  # views, one autograd node
        c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))  # (B, H)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w["hr"] is not None:
            h = torch.mm(h, w["hr"].t())  # (B, proj_size)
        return h, c

    def step_inplace(self, gates_x, state, w, hh, into, scratch) -> State:
        (h, c), (h_out, c_new) = state, into
        gates = gates_x.addmm_(h, hh)  # (B, 4H), in place in the projection
        i, f, g, o = gates.chunk(4, dim=1)
        i.sigmoid_()
        f.sigmoid_()
        g.tanh_()
        o.sigmoid_()
        torch.mul(f, c, out=c_new).addcmul_(i, g)  # c' = f * c + i * g (c_new may be c)
        h_full = scratch["h_full"] if w["hr"] is not None else h_out  # (B, H)
        torch.tanh(c_new, out=h_full).mul_(o)  # h' = o * tanh(c')
        if w["hr"] is not None:
            torch.mm(h_full, w["hr"].t(), out=h_out)  # (B, proj_size)
        return h_out, c_new


class FastGRU(FastRecurrent, ScratchGRU):
    """GRU with the input projection hoisted out of the loop: torch's [r, z, n] layout and
    parameter names, the reset gate applied after the hidden matmul."""

    def projection_bias(self, w: Weights) -> Tensor | None:
        # b_hn sits inside r * (W_hn h + b_hn), so only b_ih can move out of the loop.
        return w["b_ih"]

    def scratch_buffers(self, xw: Tensor) -> dict[str, Tensor]:
        return {"gates_h": torch.empty_like(xw[0])}  # (B, 3H)

    def step(self, gates_x: Tensor, state: State, w: Weights, hh: Tensor) -> State:
        (h,) = state
        hidden = self.hidden_size
        # h W_hh^T + b_hh: (B, 3H)
        gates_h = torch.mm(h, hh) if w["b_hh"] is None else torch.addmm(w["b_hh"], h, hh)
        x_rz, x_n = gates_x.split([2 * hidden, hidden], dim=1)
        h_rz, h_n = gates_h.split([2 * hidden, hidden], dim=1)
        r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=1)  # (B, H) each
        n = torch.tanh(torch.addcmul(x_n, r, h_n))  # tanh(W_in x + b_in + r * (W_hn h + b_hn))
        return (torch.lerp(n, h, z),)  # (1 - z) * n + z * h, one op

    def step_inplace(self, gates_x, state, w, hh, into, scratch) -> State:
        (h,), (h_out,) = state, into
        hidden = self.hidden_size
        gates_h = scratch["gates_h"]  # (B, 3H), reused every step
        if w["b_hh"] is None:
            torch.mm(h, hh, out=gates_h)
        else:
            torch.addmm(w["b_hh"], h, hh, out=gates_h)
        x_rz, x_n = gates_x.split([2 * hidden, hidden], dim=1)
        h_rz, h_n = gates_h.split([2 * hidden, hidden], dim=1)
        r, z = x_rz.add_(h_rz).sigmoid_().chunk(2, dim=1)  # in place in the projection
        n = x_n.addcmul_(r, h_n).tanh_()
        return (torch.lerp(n, h, z, out=h_out),)
