"""latency: the timing of every implementation as a pytest-benchmark suite.

Opt-in (``--suite latency`` or ``--benchmark-only``): timings must not share the machine with the
conformance checks. The harness' timing (torch.utils.benchmark's blocked_autorange, threads set
explicitly) decides how many iterations make a round; pytest-benchmark's ``benchmark`` fixture then
times the rounds in pedantic mode, synchronising CUDA after each call, so
``--benchmark-autosave``, ``--benchmark-compare`` and ``pytest-benchmark compare`` work as usual.
The harness' own samples go into the check's record.
"""

from __future__ import annotations

import torch

from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.case import Case
from harness.latency.timing import Task, task_callable, time_callable

SUITE = SuiteInfo(order=200, opt_in=True, measured=True)

SMOKE = Case(seq_len=10, batch=4, input_size=32, hidden_size=32)
STANDARD = Case(seq_len=100, batch=64, input_size=512, hidden_size=512)
MIN_RUN_TIME = {SMOKE: 0.05, STANDARD: 1.0}


def timed_benchmark(subject, check, benchmark, phase):
    case = subject.case
    call = task_callable(subject.spec, Task(subject.spec.name, case, phase))
    if case.device == "cuda":
        unsynced = call

        def call():
            unsynced()
            torch.cuda.synchronize()

    timed = time_callable(call, threads=torch.get_num_threads(),
                          min_run_time=MIN_RUN_TIME.get(case.with_(device="cpu"), 0.2))
    benchmark.extra_info.update(impl=subject.spec.name, family=subject.spec.family,
                                case=case.id, phase=phase)
    benchmark.pedantic(call, iterations=timed.number_per_run,
                       rounds=max(5, len(timed.block_s)), warmup_rounds=1)
    check.metrics.update(samples_s=list(timed.block_s), number_per_run=timed.number_per_run,
                         threads=torch.get_num_threads(), worker=0)


@cases([SMOKE], full=[SMOKE, STANDARD])
def test_inference(subject, check, benchmark):
    timed_benchmark(subject, check, benchmark, "inference")


@cases([SMOKE], full=[SMOKE, STANDARD])
def test_forward(subject, check, benchmark):
    timed_benchmark(subject, check, benchmark, "forward")


@cases([SMOKE], full=[SMOKE, STANDARD])
def test_forward_backward(subject, check, benchmark):
    timed_benchmark(subject, check, benchmark, "forward_backward")
