"""Deployment variants with one realistic mistake each: a tolerance declared tighter than the
real error, an inference-only runtime that claims autograd, a torch.compile that silently runs
eagerly, PyTorch's own custom_lstms.py cell under TorchScript's autodiff, a TorchScript module
served under torch.inference_mode, and exact-property bugs hidden behind a loose declared
tolerance (which must not hide them).

tests/test_mutants.py runs the suite written for each and asserts that its check fails, with
the message the bug deserves; the built-in entries these derive from pass the same checks.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from harness.impls.int8 import Int8GRU, Int8LSTM
from harness.impls.script_lstm import LSTMCell, ScriptLSTM
from tests.mutants.bugs import (
    BatchFirstStateGRU,
    CarriedPaddingGRU,
    InPlaceHxGRU,
    ValueErrorLSTM,
)

LOOSE = {"float32": {"atol": 10.0}, "float64": {"atol": 10.0}}


class TightInt8LSTM(Int8LSTM):
    """The int8 LSTM declaring float-like accuracy: 1e-4, where its real error is ~1e-2."""

    harness_tolerance = {"float32": {"atol": 1e-4}}  # noqa: RUF012


class AutogradClaimingInt8GRU(Int8GRU):
    """The int8 GRU without ``autograd: False``: it claims gradients it cannot give."""

    harness_capabilities = {**Int8GRU.harness_capabilities, "autograd": True}  # noqa: RUF012


class EagerCompiledGRU(nn.GRU):
    """``torch.compile(nn.GRU)``, claimed as compiled: dynamo does not trace torch's RNN
    modules, so every call runs eagerly behind the compile wrapper."""

    harness_family = "gru"
    harness_capabilities = {"compiled": True}  # noqa: RUF012

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        with warnings.catch_warnings():  # inductor's imports use deprecated TorchScript APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            self.compiled_forward = torch.compile(super().forward)

    def forward(self, *args):
        return self.compiled_forward(*args)


class ChunkingLSTMCell(LSTMCell):
    """custom_lstms.py's cell as written: ``gates.chunk(4, 1)``. TorchScript's backward of chunk
    (torch 2.13) fails when one chunk gets no gradient (a loss on c_n alone)."""

    def forward(self, input: Tensor, state: tuple[Tensor, Tensor]
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        hx, cx = state
        gates = (torch.mm(input, self.weight_ih.t()) + self.bias_ih
                 + torch.mm(hx, self.weight_hh.t()) + self.bias_hh)
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        cy = torch.sigmoid(forgetgate) * cx + torch.sigmoid(ingate) * torch.tanh(cellgate)
        hy = torch.sigmoid(outgate) * torch.tanh(cy)
        return hy, (hy, cy)


class ChunkedScriptLSTM(ScriptLSTM):
    """The scripted LSTM with custom_lstms.py's chunk."""

    cell_class = ChunkingLSTMCell


class InferenceModeScriptLSTM(ScriptLSTM):
    """The scripted LSTM called as it is under torch.inference_mode: TorchScript's optimised
    plan (torch 2.13) fails from the third call on."""

    def run_stack(self, x, states):
        return self.stack(x, states)


# Exact-property bugs behind a tolerance of 10: the exact checks must still catch them.


class LooseCarriedPaddingGRU(CarriedPaddingGRU):
    """Outputs non-zero values at padded steps; declares atol 10."""

    harness_tolerance = LOOSE


class LooseInPlaceHxGRU(InPlaceHxGRU):
    """Updates the caller's hx in place; declares atol 10."""

    harness_tolerance = LOOSE


class LooseBatchFirstStateGRU(BatchFirstStateGRU):
    """Returns h_n batch-first; declares atol 10."""

    harness_tolerance = LOOSE


class LooseValueErrorLSTM(ValueErrorLSTM):
    """Raises ValueError where torch raises RuntimeError; declares atol 10."""

    harness_tolerance = LOOSE
