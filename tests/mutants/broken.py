"""Implementations that break outright rather than compute wrongly: they raise, return the
wrong type, or return NaN. A run must record each as failed checks and carry on."""

from __future__ import annotations

from typing import ClassVar

import torch

from harness.impls.compiled import CompiledGRU
from harness.impls.scratch import ScratchGRU


class RaisingGRU(ScratchGRU):
    """Builds fine, raises on every call."""

    def forward(self, input, hx=None, **kwargs):
        raise RuntimeError("kernel launch failed | code 7\nsecond line")


class WrongTypeGRU(ScratchGRU):
    """Returns the output alone instead of (output, h_n)."""

    def forward(self, input, hx=None, **kwargs):
        return super().forward(input, hx, **kwargs)[0]


class NanGRU(ScratchGRU):
    """Returns NaN everywhere, with the right shapes."""

    def forward(self, input, hx=None, **kwargs):
        output, h_n = super().forward(input, hx, **kwargs)
        if isinstance(output, torch.Tensor):
            output = torch.full_like(output, float("nan"))
        return output, torch.full_like(h_n, float("nan"))


class UnbuildableGRU(torch.nn.Module):
    """Does not accept torch's constructor arguments."""

    def __init__(self, width):
        super().__init__()


class CrashingGRU(ScratchGRU):
    """Takes its interpreter down (as a fault in a C extension would)."""

    def forward(self, input, hx=None, **kwargs):
        import os

        os._exit(3)


class HangingGRU(ScratchGRU):
    """Never returns."""

    def forward(self, input, hx=None, **kwargs):
        import time

        time.sleep(3600)


class GlobalStateGRU(ScratchGRU):
    """Changes torch's process-wide settings on every call and never puts them back."""

    def forward(self, input, hx=None, **kwargs):
        result = super().forward(input, hx, **kwargs)
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(1234)
        return result


class WornOutGRU(ScratchGRU):
    """Right until it has run 20 times in one process, then off by 1e-3: a process-wide cache
    filling up (TorchScript's compile cache, a global buffer). Alone, any one check passes."""

    # class-level on purpose: the state that leaks between checks
    calls_in_this_process: ClassVar[list[int]] = [0]

    def forward(self, input, hx=None, **kwargs):
        output, h_n = super().forward(input, hx, **kwargs)
        self.calls_in_this_process[0] += 1
        if self.calls_in_this_process[0] > 20:
            return output + 1e-3, h_n
        return output, h_n


class CrashingCompiledGRU(CompiledGRU):
    """A torch.compile'd GRU that takes its interpreter down (a fault in generated code): its
    checks all run on one worker (harness.conformance.scheduling), crash after crash."""

    def forward(self, input, hx=None, **kwargs):
        import os

        os._exit(3)
