"""recall: multi-query associative recall (MQAR, Arora et al. 2023) as a measurement — held-out
accuracy and steps to solve, for every implementation of every family, with the same seeds and
step budgets within a family. 2 pairs and 300 steps by default; 2, 4 and 8 pairs at ``--scale
full``, with 600, 1500 and 3000 steps. The check
fails only if training breaks (an error or a non-finite loss); what is learned is reported."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from harness.conformance.plugin import cases
from harness.conformance.recall import budget_for, recall_case, recall_op_case, train
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=105, quick=False, autograd=True)


def work(case, quick: bool) -> float:
    """Training steps x T x B x width² (the collection starts the longest first)."""
    width = getattr(case, "hidden_size", None) or case.heads * case.key_dim  # a module's or op's
    return budget_for(case, quick=quick).max_steps * case.seq_len * case.batch * width ** 2


@pytest.mark.time_limit(10)
@cases(lambda fam: [recall_case(2)],
       full=lambda fam: [recall_case(2), recall_case(4), recall_case(8)], work=work)
def test_associative_recall(subject, check, request):
    measured(subject, check, subject.case.hidden_size, quick(request))


@pytest.mark.time_limit(10)
@cases(lambda fam: [recall_op_case(2)],
       full=lambda fam: [recall_op_case(2), recall_op_case(4), recall_op_case(8)], kind="op",
       work=work)
def test_op_associative_recall(subject, check, request):
    """The same task with an op inside its family's thin layer (harness.ops.layer): 4 heads of
    16, q, k, v and gates projected from a 64-wide embedding."""
    measured(subject, check, subject.case.heads * subject.case.key_dim, quick(request))


def quick(request) -> bool:
    """The quick scale (the main job's) trains half the steps of the full one."""
    return request.config.getoption("scale") == "ci"


def measured(subject, check, hidden_size: int, quick: bool) -> None:
    case = subject.case
    budget = budget_for(case, quick=quick)
    result = train(subject, budget)
    check.metrics.update(
        pairs=case.seq_len // 3, seq_len=case.seq_len, hidden_size=hidden_size,
        batch=case.batch, best_accuracy=result.best_accuracy,
        steps_to_solve=result.steps_to_solve, steps_run=result.steps_run,
        seconds=result.seconds, seed=case.data_seed,
        curve=[list(point) for point in result.curve], **asdict(budget),
    )
    accuracy = torch.tensor([a for _, a in result.curve], dtype=torch.float64)
    if not result.finite:
        check.fail(f"training diverged: the loss became non-finite by step {result.steps_run}")
    check.finite("held-out accuracy at each evaluation", accuracy)
