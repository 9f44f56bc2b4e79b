"""inference: how models are served and validated — call after call under torch.inference_mode,
and under torch.no_grad, each answer equal to the reference's, on a module that has also run with
autograd before (as evaluation between training steps does). An optimising runtime changes its
plan after its first calls (TorchScript's profiling executor does, from the third, for the whole
process), so each check makes two calls with autograd and then four in the mode under test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from harness.conformance.grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=65)

WARM_CALLS, CALLS = 2, 4


def grid(fam):
    return [BASE, BASE.with_(num_layers=2, bidirectional=True, with_hx=True),
            BASE.with_(lengths=(5, 3, 1))]


def repeated(subject, check, mode: Callable[[], contextlib.AbstractContextManager]) -> None:
    module = subject.build()
    inputs = subject.inputs()
    want = subject.run_reference(inputs)
    for _ in range(WARM_CALLS):  # with autograd on (an inference-only module builds no graph)
        with torch.enable_grad():
            subject.run(module, inputs)
    for _ in range(CALLS):
        with mode():
            got = subject.run(module, inputs)
        check.outputs_close(got.detach(), want)
    check.note(f"{CALLS} calls after {WARM_CALLS} with autograd, each equal to the reference")


@cases(grid)
def test_repeated_calls_under_inference_mode(subject, check):
    repeated(subject, check, torch.inference_mode)


@cases(grid)
def test_repeated_calls_under_no_grad(subject, check):
    repeated(subject, check, torch.no_grad)
