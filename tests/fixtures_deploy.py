"""User classes that describe themselves as deployment variants do: their family, their
tolerance, inference only, a long first call. Loaded by path in tests/test_deploy.py."""

from __future__ import annotations

import time

import torch
from torch import nn


class InferenceOnlyGRU(nn.GRU):
    """torch's GRU served without autograd, declaring its family and a tolerance."""

    harness_family = "gru"
    harness_tolerance = {"float32": {"atol": 2e-5}}  # noqa: RUF012
    harness_capabilities = {"autograd": False}  # noqa: RUF012

    def forward(self, input, hx=None):
        with torch.no_grad():
            return super().forward(input, hx)


class DeclaredLSTM(nn.LSTM):
    """torch's LSTM, declaring its family."""

    harness_family = "lstm"


class SlowToBuildGRU(nn.GRU):
    """Takes 0.6 s to construct (as a compile would), and says so."""

    harness_family = "gru"
    harness_check_timeout = 30

    def __init__(self, *args, **kwargs) -> None:
        time.sleep(0.6)
        super().__init__(*args, **kwargs)


class UndeclaredSlowToBuildGRU(SlowToBuildGRU):
    """The same without the declaration."""

    harness_check_timeout = None
