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


class TwiceAsSlowGRU(SlowerGRU):
    """torch.nn.GRU doing twice the work: a slowdown no noise of a shared machine can hide, for
    the gate's end-to-end test (the gate's rates on small slowdowns are calibration figures,
    measured by ``seq-harness calibrate``, not unit tests)."""

    extra = 1.0
