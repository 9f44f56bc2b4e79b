"""adding: the adding problem (Hochreiter & Schmidhuber 1997) as a measurement — best test MSE
and steps to solve, for every implementation with the same seeds and step budget. T=50 and 300
steps by default; T=50, 100 and 200 at ``--scale full``, 600 steps at T=50 and 1500 beyond. The
check fails only if training breaks (an error or a non-finite loss); what is learned is
reported, whatever it is."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from harness.conformance.adding import adding_case, budget_for, train
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=100, quick=False, autograd=True)


def work(case, quick: bool) -> float:
    """Training steps x T x B x H² (the collection starts the longest first)."""
    steps = budget_for(case.seq_len, quick=quick).max_steps
    return steps * case.seq_len * case.batch * case.hidden_size ** 2


@pytest.mark.time_limit(10)
@cases(lambda fam: [adding_case(50)],
       full=lambda fam: [adding_case(50), adding_case(100), adding_case(200)], work=work)
def test_adding_problem(subject, check, request):
    case = subject.case
    budget = budget_for(case.seq_len, quick=request.config.getoption("scale") == "ci")
    result = train(subject, budget)
    check.metrics.update(
        seq_len=case.seq_len, hidden_size=case.hidden_size, batch=case.batch,
        best_mse=result.best_mse, steps_to_solve=result.steps_to_solve,
        steps_run=result.steps_run, seconds=result.seconds, seed=case.data_seed,
        curve=[list(point) for point in result.curve], **asdict(budget),
    )
    mse = torch.tensor([m for _, m in result.curve], dtype=torch.float64)
    if not result.finite:
        check.fail(f"training diverged: test MSE became non-finite by step {result.steps_run}")
    check.finite("test MSE at each evaluation", mse)
