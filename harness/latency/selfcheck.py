"""Does the harness measure what a plain Timer measures? The same computation timed both ways.

``plain_callable`` is the computation written the way one would time it by hand — the module
called directly, no harness in between; ``timer_agreement`` times it and the harness' task
interleaved in one process (``seq-harness bench --selfcheck N``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.latency.timing import Task, task_callable, time_callable


def plain_callable(spec: ImplSpec, task: Task) -> Callable[[], None]:
    """The same computation as task_callable, written the way one would time it by hand:
    the module called directly, no harness in between (fixed-length input only)."""
    subject = Subject(spec, task.case)
    module = subject.build()
    x = subject.inputs().x
    if task.phase == "inference":
        module.eval()

        def call() -> None:
            with torch.inference_mode():
                module(x)

        return call
    module.train()
    if task.phase == "forward":
        return lambda: module(x)
    params = list(module.parameters())

    def forward_backward() -> None:
        for p in params:
            p.grad = None
        output, state = module(x)
        states = state if isinstance(state, tuple) else (state,)
        sum([output.sum(), *(s.sum() for s in states)]).backward()

    return forward_backward


def timer_agreement(
    spec: ImplSpec, task: Task, *, rounds: int, threads: int, min_run_time: float
) -> dict[str, list[float]]:
    """Interleaved in this process: a plain Timer on ``plain_callable`` and the harness'
    timing of the task, ``rounds`` times each (A B A B ...). Per round, each one's median and
    its IQR over median."""
    from torch.utils.benchmark import Timer

    torch.set_num_threads(threads)
    plain, harness = plain_callable(spec, task), task_callable(spec, task)
    figures: dict[str, list[float]] = {"plain_median_s": [], "harness_median_s": [],
                                       "plain_iqr_ratio": [], "harness_iqr_ratio": []}
    for _ in range(3):
        plain()
    for _ in range(rounds):
        measured = Timer(stmt="call()", globals={"call": plain},
                         num_threads=threads).blocked_autorange(min_run_time=min_run_time)
        figures["plain_median_s"].append(measured.median)
        figures["plain_iqr_ratio"].append(measured.iqr / measured.median)
        timed = time_callable(harness, threads=threads, min_run_time=min_run_time)
        median = float(np.median(timed.block_s))
        q1, q3 = np.percentile(timed.block_s, [25, 75])
        figures["harness_median_s"].append(median)
        figures["harness_iqr_ratio"].append(float(q3 - q1) / median)
    return figures
