"""Fast from-scratch recurrent layers: the same maths as scratch.py, written the way a fast
recurrent loop is written.

scratch.py spells torch's recurrence out one step at a time, as it is taught: every step projects
its own input, adds (or concatenates) the two halves, and the step outputs are stacked at the
end. That is easy to read, and slower than torch.nn. This module exists to show, on the same
contract and against the same checks, what it takes to match torch.nn from Python, with a
little compiled C where Python's per-operation dispatch is the cost:

1. Hoist the input projection out of the time loop. x_t @ W_ih^T does not depend on the state,
   so it is one GEMM over many steps at once, with every bias that can move out of the loop
   folded in. Only h_{t-1} @ W_hh^T is left inside the loop: one GEMM per step.
2. Run the GEMMs on the library that is fastest on this machine: aten's BLAS (MKL, OpenBLAS),
   oneDNN or, for a step of a few rows, the compiled product of native.c, chosen by a short
   measurement the first time a shape class is seen (kernels.py), for the step's product and
   for the input projection apart (at B=1 a step is a matrix-vector product and the projection
   a 100-row GEMM: not the same winner), and reported by
   ``harness.impls.kernels.kernel_path(module)``.
3. Run each step's gate maths as one compiled call (native.c, built with the machine's C
   compiler at first use; native.py), and where nothing else happens between steps, a block of
   LSTM steps as one call; without a compiler, as torch operators in place.
4. Do not record the loop for autograd. Without autograd the loop runs in place in buffers of
   this call; with it, one autograd node per (layer, direction) keeps what the backward pass
   needs, and the backward pass through time is written by hand: the weight gradients are one
   GEMM each over all steps (loop.py, the per-family maths in cells.py and lstm_cell.py).
5. Mask padded steps, so variable-length batches stay exact: a padded step leaves the state
   alone and outputs zeros, as scratch.py and torch's packed path do.

Everything else — input layouts, PackedSequence, lengths=, unbatched input, batch_first,
directions, layers, dropout, hx validation, torch's parameter names — is scratch.py's shared
machinery: these classes only replace ``run_direction``, the loop over one (layer, direction).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from harness.impls import native
from harness.impls.cells import GRURun, RNNRun
from harness.impls.kernels import GEMMS, Decision, decide, kernel_path
from harness.impls.loop import CHUNK_ROWS, Config, Recurrence, Run
from harness.impls.lstm_cell import LSTMRun
from harness.impls.scratch import (
    NamedParameters,
    ScratchGRU,
    ScratchLSTM,
    State,
)


class FastRecurrent(NamedParameters):
    """run_direction as a fast loop (see the module docstring). A subclass names its Run.

    ``gemm_backend`` picks the GEMM library: "auto" (the default: $SEQ_HARNESS_GEMM if set, else
    measured, see kernels.py), "aten" or "onednn"; set it on an instance to force one.
    ``last_gemm`` is the decision the last forward's step GEMMs used, ``last_projection_gemm``
    its input projection's (a GEMM of T*B rows, in chunks: a shape class of its own).
    ``gate_kernel`` picks what runs the gate maths: "auto" (the compiled kernels of native.py
    where they can run, else torch operators), "native" or "torch"; ``last_gate_kernel`` says
    which the last forward used.
    """

    run_class: ClassVar[type[Run]]

    def harness_kernel_path(self) -> dict:
        """The GEMM library the last forward used, and why (for latency records)."""
        path = kernel_path(self)
        return {"gemm_backend": path.get("gemm_backend"), "gemm_reason": path.get("reason"),
                "projection_backend": path.get("projection_backend"),
                "projection_reason": path.get("projection_reason"),
                "gate_kernel": path.get("gate_kernel")}

    nonlinearity: str = "tanh"
    gemm_backend: str = "auto"
    last_gemm: Decision | None = None
    last_projection_gemm: Decision | None = None  # the hoisted input projection's
    gate_kernel: str = "auto"
    last_gate_kernel: str | None = None

    def gate_kernels(self, like: Tensor) -> native.Kernels | None:
        """The compiled gate maths for tensors like ``like``, or None for torch operators; the
        choice and its reason go to ``last_gate_kernel``."""
        if self.gate_kernel not in ("auto", "native", "torch"):
            raise ValueError(f"unknown gate_kernel {self.gate_kernel!r}; valid: auto, native, "
                             "torch")
        found, why = (None, "requested") if self.gate_kernel == "torch" else native.kernels(like)
        if found is None and self.gate_kernel == "native":
            raise ValueError(f"gate_kernel 'native' was requested but cannot run: {why}")
        threads, elements = torch.get_num_threads(), like.shape[1] * self.gates * self.hidden_size
        if (found is not None and self.gate_kernel == "auto" and threads > 1
                and elements > native.SERIAL_MAX):  # torch's operators run on every thread
            found, why = None, (f"{threads} threads and {elements} gate elements a step: "
                                "torch's operators run in parallel, the compiled loop on one")
        self.last_gate_kernel = why if found is not None else f"torch operators ({why})"
        return found

    def run_direction(
        self, slot: int, x: Tensor, state: State, mask: Tensor | None, reverse: bool
    ) -> tuple[Tensor, State]:
        """Run one (layer, direction) over x (T, B, in): outputs (T, B, h_out), final state."""
        w = self.weights(slot)
        decision = decide(x, x.shape[1], self.h_out, self.gates * self.hidden_size, uses=len(x),
                          want=self.gemm_backend)
        self.last_gemm = decision
        # The input projection: chunks of up to CHUNK_ROWS rows, a GEMM of its own shape class
        rows = min(x.shape[0] * x.shape[1], CHUNK_ROWS)
        projection = decide(x, rows, x.shape[2], self.gates * self.hidden_size,
                            uses=-(-len(x) * x.shape[1] // CHUNK_ROWS),
                            want=self.gemm_backend)
        self.last_projection_gemm = projection
        config = Config(GEMMS[decision.backend], self.hidden_size, reverse, mask,
                        self.nonlinearity, GEMMS[projection.backend], self.gate_kernels(x))
        tracked = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, *state, *w.values())
        )
        if not tracked:
            with torch.no_grad():
                run = self.run_class(config, x, state, w, keep=False)
                return run.forward()
        c0 = state[1] if len(state) > 1 else None
        output, *final = Recurrence.apply(
            self.run_class, config, x, state[0], c0, w["ih"], w["hh"], w["b_ih"], w["b_hh"],
            w["hr"],
        )
        return output, tuple(final)


class FastRNN(FastRecurrent):
    """Elman RNN, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), with the input
    projection hoisted out of the loop; torch's parameter names."""

    gates = 1
    run_class = RNNRun

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
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device=device, dtype=dtype,
        )
        self.nonlinearity = nonlinearity


class FastLSTM(FastRecurrent, ScratchLSTM):
    """LSTM with the input projection hoisted out of the loop: torch's [i, f, g, o] layout and
    parameter names, proj_size included."""

    run_class = LSTMRun


class FastGRU(FastRecurrent, ScratchGRU):
    """GRU with the input projection hoisted out of the loop: torch's [r, z, n] layout and
    parameter names, the reset gate applied after the hidden matmul."""

    run_class = GRURun
