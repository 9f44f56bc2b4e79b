"""The first call in a fresh process: what a deployment pays before its first answer.

Steady-state timings leave out the warm-up on purpose; a deployment does not: building the
module, loading its weights, then compiling (torch.compile), exporting (ONNX), scripting and
profiling (TorchScript) or packing int8 weights, and running once. ``first_call`` times exactly
that, once, in a worker process that has run nothing else (harness.latency.run starts one per
implementation and shape, with an empty inductor cache, so a compile is as cold as on a machine
that never compiled this model). The weights and inputs are drawn before the clock starts (the
harness's own work, not the deployment's). Next to the time: the graphs torch.compile captured
(0 for an implementation that does not compile, or whose compile fell back to eager) and the
growth of the process's peak RSS, which includes memory another runtime keeps (harness.latency
.rss).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from harness.core.case import Case
from harness.core.dynamo import during
from harness.core.phases import phase_step
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.latency.rss import peak_growth

PHASE = "inference"  # the first call a deployment makes: eval mode, torch.inference_mode


@dataclass(frozen=True)
class FirstCall:
    """seconds: construction + weights + compile/export/script + one call in a fresh process.
    graphs, graph_breaks: what torch.compile captured during it. rss_bytes: peak RSS growth
    (None where the OS does not tell)."""

    seconds: float
    graphs: int
    graph_breaks: int
    rss_bytes: int | None


def first_call(spec: ImplSpec, case: Case, *, threads: int) -> FirstCall:
    """Build, load and call the implementation once, timing all of it (see the docstring)."""
    torch.set_num_threads(threads)
    subject = Subject(spec, case)
    weights, inputs = subject.weights(), subject.inputs()

    def deploy_and_call() -> None:
        module = subject.build(weights)
        phase_step(lambda: subject.run(module, inputs), module, PHASE)()

    started = time.perf_counter()
    (_, counts), rss = peak_growth(lambda: during(deploy_and_call))
    seconds = time.perf_counter() - started
    return FirstCall(seconds, counts.graphs, counts.breaks, rss)
