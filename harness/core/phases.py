"""The phase step: one call of an implementation in one phase, built once.

What the latency benchmarks time, what the profiler traces and what a user reads in a report
must be the same computation, so it is built in one place:

- ``inference``: eval mode under torch.inference_mode;
- ``forward``: train mode with autograd recording (the graph is built, then dropped);
- ``forward_backward``: train mode: gradients cleared, forward, the sum of every output (output,
  h_n and c_n, as a model that uses the output and the final state), backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from harness.core.contract import Outputs

PHASES = ("inference", "forward", "forward_backward")
PHASE_TEXT = {
    "inference": "eval mode under torch.inference_mode",
    "forward": "train mode, autograd recording (the graph is built, then dropped)",
    "forward_backward": "train mode: gradients cleared, forward, the sum of every output, backward",
}


def check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r} is invalid; valid: {', '.join(PHASES)}")
    return phase


def phase_step(
    run: Callable[[], Outputs], module: nn.Module, phase: str, *, annotate: str | None = None,
    synchronize: bool = False,
) -> Callable[[], None]:
    """One step of ``phase``: ``run`` calls ``module`` on its inputs through the forward
    contract. ``annotate``: a prefix under which each part is marked as a torch.profiler range;
    ``synchronize``: wait for CUDA at the end of the step (so a trace keeps each step's kernels
    inside it)."""
    check_phase(phase)

    def mark(name: str):
        if annotate is None:
            return contextlib.nullcontext()
        return torch.profiler.record_function(annotate + name)

    def finish() -> None:
        if synchronize:
            torch.cuda.synchronize()

    if phase == "inference":
        module.eval()

        def inference() -> None:
            with torch.inference_mode(), mark("inference"):
                run()
            finish()

        return inference

    module.train()
    if phase == "forward":

        def forward() -> None:
            with torch.enable_grad(), mark("forward"):
                run()
            finish()

        return forward

    params = list(module.parameters())

    def forward_backward() -> None:
        with torch.enable_grad():
            for p in params:
                p.grad = None
            with mark("forward"):
                outputs = run()
                loss = torch.stack([t.sum() for t in outputs.named().values()]).sum()
            with mark("backward"):
                loss.backward()
        finish()

    return forward_backward


def op_phase_step(run: Callable[..., object], leaves: list[torch.Tensor], phase: str,
                  *, synchronize: bool = False) -> Callable[[], None]:
    """One step of ``phase`` for an op (no module, no modes): ``run(tensors)`` calls it on the
    given input tensors and returns its outputs (``named()``). inference: under inference_mode on
    inputs that need no gradient; forward: the graph built on inputs that require grad;
    forward_backward: their gradients cleared, forward, the sum of every output (o and the final
    state), backward."""
    check_phase(phase)
    plain = [t.detach() for t in leaves]
    tracked = [t.detach().clone().requires_grad_(True) for t in leaves]

    def finish() -> None:
        if synchronize:
            torch.cuda.synchronize()

    if phase == "inference":
        def inference() -> None:
            with torch.inference_mode():
                run(plain)
            finish()

        return inference
    if phase == "forward":
        def forward() -> None:
            with torch.enable_grad():
                run(tracked)
            finish()

        return forward

    def forward_backward() -> None:
        with torch.enable_grad():
            for t in tracked:
                t.grad = None
            outputs = run(tracked).named().values()
            torch.stack([t.sum() for t in outputs if t.requires_grad]).sum().backward()
        finish()

    return forward_backward
