"""torch.compile'd LSTM and GRU whose recurrence really compiles (compiled-lstm, compiled-gru).

``torch.compile(nn.LSTM(...))`` compiles nothing: dynamo does not trace torch's RNN modules
(unless ``torch._dynamo.config.allow_rnn``), so it runs the module eagerly behind a compile
wrapper and reports zero graphs. A recurrence compiles when its step is plain tensor code. These
layers are the from-scratch layers of scratch.py (torch's parameter names; layouts, packing,
directions, layers, dropout and hx validation shared) with each (layer, direction) run as:

1. the input projection x W_ih^T + b_ih for every step at once: one GEMM, eager;
2. one compiled step per time step: h W_hh^T + b_hh, the gate maths and, with lengths, the
   masking of padded steps, fused by inductor into one GEMM and one generated kernel.

The step is compiled once per process (``torch.compile(..., dynamic=True)``: one graph serves
every batch and hidden size; dtype, autograd, masking, bias and projection each give their own
graph; batches of 1 and 0 are specialised), so building a module costs nothing and the first
call of each variant pays the compile — seconds, the first call of a fresh process the most
(inductor's own imports). Every step gets the same kinds of arguments (an all-true mask without
lengths, zero biases without bias, plain tensors rather than Parameters, a contiguous state
whatever hx's strides) so that few variants exist: the quick job's checks of compiled-lstm
compile 16 graphs (dtype, autograd, batches of 0 and 1, projection). Calls run with two dynamo
settings patched for the call only: parameters' shapes dynamic like every other tensor's
(``force_parameter_static_shapes``; by default dynamo compiles every hidden size anew), and a
raised recompile limit (``recompile_limit``), so the conformance suites' variants (dtype,
autograd, batch of 1 or 0) keep compiling instead of silently falling back to eager once
dynamo's default limit of 8 is reached.

One setting cannot be scoped to a call: with donated buffers (a memory optimisation of compiled
backward passes, ``torch._functorch.config.donated_buffer``) a compiled backward refuses to run
twice through the same graph (``retain_graph=True``, as torch.autograd.gradcheck and any
double backward do), and torch 2.13 reads the setting when the backward runs, outside any call
of these modules. The first compile in a process therefore turns it off for the process; it
changes memory use only, never a result. The compile suite and ``bench``'s first-call record
show the graph count.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.impls.scratch import ScratchGRU, ScratchLSTM, State

RECOMPILE_LIMIT = 64  # graph variants of one step function per process


def lstm_step(gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor,
              w_hr: Tensor | None, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM step from x_t's projection gx (B, 4H): (output, h, c), each (B, features);
    where ``valid`` (B, 1) is False the state is kept and the output is zero."""
    i, f, g, o = (gx + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    if w_hr is not None:
        h_new = F.linear(h_new, w_hr)  # (B, proj_size)
    return (torch.where(valid, h_new, torch.zeros_like(h_new)), torch.where(valid, h_new, h),
            torch.where(valid, c_new, c))


def gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor, valid: Tensor
             ) -> tuple[Tensor, Tensor]:
    """One GRU step from gx (B, 3H): (output, h); the reset gate applies after the matmul."""
    x_r, x_z, x_n = gx.chunk(3, dim=1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    h_new = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
    return torch.where(valid, h_new, torch.zeros_like(h_new)), torch.where(valid, h_new, h)


@functools.cache  # per process: one compiled step per function, shared by every module
def compiled(step: Callable) -> Callable:
    import torch._functorch.config

    torch._functorch.config.donated_buffer = False  # see the module docstring
    with warnings.catch_warnings():  # inductor's own imports use deprecated TorchScript APIs
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                                category=DeprecationWarning)
        return torch.compile(step, dynamic=True)


class CompiledRecurrent:
    """run_direction with the input projection hoisted and the step compiled."""

    step: ClassVar[Callable]
    # torch.compile's aot_autograd does not differentiate its backward graphs (it raises)
    harness_capabilities: ClassVar = {"compiled": True, "devices": {"cpu"},
                                      "double_backward": False}
    harness_check_timeout = 600  # a check that compiles a new variant in a fresh process

    def run_direction(self, slot: int, x: Tensor, state: State, mask: Tensor | None,
                      reverse: bool) -> tuple[Tensor, State]:
        """One (layer, direction) over x (T, B, in): outputs (T, B, h_out), final state."""
        import torch._dynamo

        # Plain tensors, not Parameters (a type of its own to dynamo's guards: a zero bias
        # made for bias=False and a bias Parameter would be two graphs)
        w = {role: None if p is None else p.view_as(p) for role, p in self.weights(slot).items()}
        if w["b_hh"] is None:  # bias=False: zeros, so one graph serves both
            w["b_hh"] = x.new_zeros(w["hh"].shape[0])
        gx = F.linear(x, w["ih"], w["b_ih"])  # (T, B, G*H): every step's input projection
        seq_len, batch = x.shape[:2]
        if mask is None:  # every step valid: the same graph as variable lengths
            mask = torch.ones(seq_len, batch, dtype=torch.bool, device=x.device)
        if torch.is_grad_enabled() and gx.requires_grad:
            # Every later step's state requires grad; a first state that does not (zeros, or
            # an hx without grad) would be a graph variant of its own. A new leaf instead:
            # nothing upstream of it wanted a gradient, so nothing changes for the caller.
            state = tuple(s if s.requires_grad else s.detach().requires_grad_() for s in state)
        # Contiguous like every later step's state: a transposed hx's strides would be a graph
        state = tuple(s.contiguous() for s in state)
        step = compiled(type(self).step)
        outputs: list[Tensor] = [x.new_empty(0)] * seq_len
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT,
                                        force_parameter_static_shapes=False):
            for t in range(seq_len - 1, -1, -1) if reverse else range(seq_len):
                # Fresh tensors, not views of gx and mask: a view makes dynamo guard on its
                # base's sizes and recompile for every shape.
                gx_t, valid = gx[t].clone(), mask[t].unsqueeze(1).clone()  # (B, G*H), (B, 1)
                outputs[t], *state = step(gx_t, *state, *self.step_weights(w), valid)
        return torch.stack(outputs), tuple(state)

    def step_weights(self, w: dict) -> tuple:
        raise NotImplementedError


class CompiledLSTM(CompiledRecurrent, ScratchLSTM):
    """LSTM whose step (recurrent GEMM, gates, masking) runs as one torch.compile'd graph."""

    harness_family = "lstm"
    step = staticmethod(lstm_step)

    def step_weights(self, w: dict) -> tuple:
        return w["hh"], w["b_hh"], w["hr"]


class CompiledGRU(CompiledRecurrent, ScratchGRU):
    """GRU whose step (recurrent GEMM, gates, masking) runs as one torch.compile'd graph."""

    harness_family = "gru"
    step = staticmethod(gru_step)

    def step_weights(self, w: dict) -> tuple:
        return w["hh"], w["b_hh"]
