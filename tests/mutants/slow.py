"""Correct implementations that are slower by a known amount: what the gate must catch."""

from __future__ import annotations

import time

import torch


class SlowerGRU(torch.nn.GRU):
    """torch.nn.GRU doing 10% more work: after each call it keeps the CPU busy for a tenth of
    the time the call took."""

    extra = 0.10

    def forward(self, *args, **kwargs):
        started = time.perf_counter()
        result = super().forward(*args, **kwargs)
        until = started + (time.perf_counter() - started) * (1 + self.extra)
        while time.perf_counter() < until:
            pass
        return result


class TenTimesSlowerGRU(SlowerGRU):
    """torch.nn.GRU doing ten times the work: a slowdown no noise of a shared CI machine can
    hide, for the gate's end-to-end test. The gate's rates on small slowdowns, and its false
    alarms on identical sides, are measured figures (``seq-harness calibrate``), not unit
    tests."""

    extra = 9.0
