"""The adding problem (Hochreiter & Schmidhuber 1997): can an implementation learn a dependency
across the whole sequence?

Each step carries a pair (value in [0, 1], marker); exactly two steps are marked, one in each half
of the sequence, and the target is the sum of their values. Predicting the mean gives MSE ~0.167;
the task counts as solved below 0.01. Every implementation trains the same model — the recurrent
layer, then a Linear on the last step's output — from the same initial weights, on the same data,
with the same optimiser and step budget, so differences are the implementation's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.conformance.gradients import NoGradient
from harness.core.case import Case
from harness.core.contract import Inputs
from harness.core.subject import Subject

SOLVED_MSE = 0.01
FEATURES = 2  # (value, marker) at every step
CONSTANT_MSE = 1 / 6  # variance of a sum of two U(0, 1) values, what the mean predicts


@dataclass(frozen=True)
class Budget:
    """Training settings: Adam at ``lr``, gradients clipped to norm ``clip``, a fresh batch of
    the case's size each step, the held-out test set evaluated every ``eval_every`` steps;
    training stops at ``max_steps`` or at the first evaluation below SOLVED_MSE."""

    max_steps: int
    lr: float = 1e-2
    clip: float = 1.0
    eval_every: int = 25
    test_size: int = 512


def budget_for(seq_len: int, *, quick: bool = False) -> Budget:
    """Longer sequences get more steps: 600 at T <= 50, 1500 beyond; ``quick`` (the suites'
    quick scale, the main job's) half as many."""
    steps = 600 if seq_len <= 50 else 1500
    return Budget(max_steps=steps // 2 if quick else steps)


def adding_case(seq_len: int) -> Case:
    return Case(seq_len=seq_len, batch=64, input_size=2, hidden_size=32)


def adding_batch(seq_len: int, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x (T, B, 2): values and markers; y (B, 1): the sum of the two marked values."""
    values = torch.rand(seq_len, batch, generator=generator, dtype=torch.float64)
    first = torch.randint(0, seq_len // 2, (batch,), generator=generator)
    second = torch.randint(seq_len // 2, seq_len, (batch,), generator=generator)
    markers = torch.zeros(seq_len, batch, dtype=torch.float64)
    rows = torch.arange(batch)
    markers[first, rows] = 1.0
    markers[second, rows] = 1.0
    target = (values * markers).sum(0, keepdim=True).t()  # (B, 1)
    return torch.stack((values, markers), dim=-1), target


@dataclass(frozen=True)
class Result:
    best_mse: float
    steps_to_solve: int | None
    steps_run: int
    seconds: float
    curve: tuple[tuple[int, float], ...]  # (step, test MSE) at each evaluation

    @property
    def solved(self) -> bool:
        return self.steps_to_solve is not None

    @property
    def finite(self) -> bool:
        return all(math.isfinite(mse) for _, mse in self.curve)


def train(subject: Subject, budget: Budget) -> Result:
    """Train the implementation with its family's reference initial weights; never touches
    torch's global random state (the data and the head come from the case's seed)."""
    case = subject.case
    dtype, device = case.torch_dtype, torch.device(case.device)
    module = subject.build(gradients=True)
    head = nn.Linear(case.h_out, 1, dtype=dtype, device=device)
    init = torch.Generator().manual_seed(case.data_seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=init, dtype=torch.float64))
    params = [*module.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=budget.lr)
    data = torch.Generator().manual_seed(case.data_seed + 1)
    test_x, test_y = adding_batch(case.seq_len, budget.test_size,
                                  torch.Generator().manual_seed(case.data_seed + 2))
    test_x, test_y = test_x.to(device, dtype), test_y.to(device, dtype)
    test_case = case.with_(batch=budget.test_size)

    # A family whose input size must equal its hidden size (RG-LRU) reads the two features
    # through a fixed random embedding (2, I), the same for every implementation of it.
    embed = None
    if case.input_size != FEATURES:
        embed = torch.randn(FEATURES, case.input_size, generator=init, dtype=torch.float64)
        embed = (embed / FEATURES**0.5).to(device, dtype)

    def predict(x: Tensor, batch_case: Case) -> Tensor:
        x = x if embed is None else x @ embed  # (T, B, I)
        output = subject.run(module, Inputs(x), case=batch_case).output  # (T, B, H)
        return head(output[-1])

    curve, best, solved_at, step = [], math.inf, None, 0
    start = time.perf_counter()
    for step in range(1, budget.max_steps + 1):
        x, y = adding_batch(case.seq_len, case.batch, data)
        loss = ((predict(x.to(device, dtype), case) - y.to(device, dtype)) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        if step == 1 and not any(p.grad is not None for p in module.parameters()):
            raise NoGradient("no gradient reaches the recurrent layer's parameters: it cannot "
                             "learn the task (its output was computed without autograd)")
        torch.nn.utils.clip_grad_norm_(params, budget.clip)
        optimiser.step()
        if step % budget.eval_every == 0 or not math.isfinite(loss.item()):
            with torch.no_grad():
                mse = float(((predict(test_x, test_case) - test_y) ** 2).mean())
            curve.append((step, mse))
            best = min(best, mse) if math.isfinite(mse) else best
            if not math.isfinite(mse):
                break
            if mse < SOLVED_MSE:
                solved_at = step
                break
    return Result(best, solved_at, step, time.perf_counter() - start, tuple(curve))
