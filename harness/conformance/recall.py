"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology"): can an implementation
store several key-value pairs in its state and retrieve each one on request?

A sequence holds N key-value pairs (k_1 v_1 ... k_N v_N, distinct keys), then the N keys again
in a random order; at each query the model must name the value that followed that key. Keys
and values are tokens of disjoint halves of a vocabulary of 2 * VOCAB_HALF. The model is an
embedding of the tokens (into the layer's input size), the recurrent layer (an op inside its
family's thin layer, harness.ops.layer), and a Linear read-out at every query step, trained with
cross-entropy at the query steps only. Accuracy is the
fraction of queries answered right on held-out sequences; guessing gives 1 / VOCAB_HALF; the task
counts as solved at SOLVED_ACCURACY. Every implementation of a family trains from the same
initial weights on the same data with the same optimiser and step budget. Unlike the adding
problem, recall needs a state that holds N separate items at once: it separates architectures
that the adding problem does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.conformance.gradients import NoGradient
from harness.core.case import Case
from harness.core.contract import Inputs
from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.core.subject import Subject
from harness.ops.layer import OpLayer

VOCAB_HALF = 16  # keys are tokens 0..15, values 16..31
SOLVED_ACCURACY = 0.9
WIDTH = 64  # embedding and hidden size


@dataclass(frozen=True)
class Budget:
    """Adam at ``lr``, gradients clipped to ``clip``, a fresh batch each step, the held-out set
    evaluated every ``eval_every`` steps; training stops at ``max_steps`` or when solved."""

    max_steps: int
    lr: float = 1e-2
    clip: float = 1.0
    eval_every: int = 50
    test_size: int = 256


def recall_case(pairs: int, *, batch: int = 64) -> Case:
    """N pairs then N queries: T = 3N."""
    return Case(seq_len=3 * pairs, batch=batch, input_size=WIDTH, hidden_size=WIDTH)


HEADS = 4  # an op family's layer: 4 heads of WIDTH / 4


def recall_op_case(pairs: int, *, batch: int = 64) -> OpCase:
    """The same task for an op family: its layer (harness.ops.layer) WIDTH wide in HEADS heads."""
    return OpCase(seq_len=3 * pairs, batch=batch, heads=HEADS, key_dim=WIDTH // HEADS,
                  value_dim=WIDTH // HEADS)


def model_of(subject: Subject | OpSubject) -> tuple[nn.Module, Callable[[Tensor, int], Tensor],
                                                   int]:
    """The layer the task trains — the implementation itself, or an op inside its family's thin
    layer — how to run it on embedded tokens (T, B, width) of a given batch, and its width in
    and out."""
    case = subject.case
    if isinstance(subject, OpSubject):
        family = subject.family_def
        width = case.heads * case.key_dim
        layer = OpLayer(subject.spec.factory, family.gates, family.layer, width=width,
                        heads=case.heads, dtype=case.torch_dtype,
                        device=torch.device(case.device))
        return layer, lambda x, batch: layer(x), width
    module = subject.build(gradients=True)

    def run(x: Tensor, batch: int) -> Tensor:
        return subject.run(module, Inputs(x), case=case.with_(batch=batch)).output

    return module, run, case.num_directions * case.h_out


def budget_for(case: Case, *, quick: bool = False) -> Budget:
    """More pairs get more steps: 600 for 2 pairs, 1500 for up to 4, 3000 beyond; ``quick``
    (the suites' quick scale, the main job's) half as many."""
    pairs = case.seq_len // 3
    steps = 600 if pairs <= 2 else 1500 if pairs <= 4 else 3000
    return Budget(max_steps=steps // 2 if quick else steps)


def recall_batch(pairs: int, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """tokens (T, B) and targets (N, B): the value each of the N queries must recall."""
    keys = torch.stack([torch.randperm(VOCAB_HALF, generator=generator)[:pairs]
                        for _ in range(batch)], dim=1)  # (N, B), distinct per sequence
    values = torch.randint(VOCAB_HALF, 2 * VOCAB_HALF, (pairs, batch), generator=generator)
    order = torch.stack([torch.randperm(pairs, generator=generator) for _ in range(batch)],
                        dim=1)  # (N, B): which pair each query asks for
    queries = keys.gather(0, order)
    targets = values.gather(0, order)
    context = torch.stack((keys, values), dim=1).reshape(2 * pairs, batch)  # k1 v1 k2 v2 ...
    return torch.cat((context, queries)), targets


@dataclass(frozen=True)
class Result:
    best_accuracy: float
    steps_to_solve: int | None
    steps_run: int
    seconds: float
    curve: tuple[tuple[int, float], ...]  # (step, held-out accuracy) at each evaluation

    @property
    def finite(self) -> bool:
        return all(math.isfinite(a) for _, a in self.curve)


def train(subject: Subject, budget: Budget) -> Result:
    """Train embedding, recurrent layer and read-out; never touches torch's global random
    state (data, embedding and read-out come from the case's seed). NoGradient when the layer
    cannot learn (its output carries no gradient to its parameters)."""
    case = subject.case
    pairs = case.seq_len // 3
    dtype, device = case.torch_dtype, torch.device(case.device)
    init = torch.Generator().manual_seed(case.data_seed)
    module, run, features = model_of(subject)
    width = features if isinstance(subject, OpSubject) else case.input_size
    embed = nn.Embedding(2 * VOCAB_HALF, width, dtype=dtype, device=device)
    head = nn.Linear(features, 2 * VOCAB_HALF, dtype=dtype, device=device)
    with torch.no_grad():
        for p in (*embed.parameters(), *head.parameters()):
            p.copy_(0.5 * torch.randn(p.shape, generator=init, dtype=torch.float64))
    params = [*module.parameters(), *embed.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=budget.lr)
    data = torch.Generator().manual_seed(case.data_seed + 1)
    test_tokens, test_targets = recall_batch(
        pairs, budget.test_size, torch.Generator().manual_seed(case.data_seed + 2))

    def logits(tokens: Tensor, batch: int) -> Tensor:
        x = embed(tokens.to(device))  # (T, B, width)
        output = run(x, batch)  # (T, B, features)
        return head(output[2 * pairs:])  # (N, B, vocab): the query steps

    curve, best, solved_at, step = [], 0.0, None, 0
    start = time.perf_counter()
    for step in range(1, budget.max_steps + 1):
        tokens, targets = recall_batch(pairs, case.batch, data)
        loss = nn.functional.cross_entropy(logits(tokens, case.batch).flatten(0, 1),
                                           targets.to(device).flatten())
        optimiser.zero_grad()
        loss.backward()
        if step == 1 and not any(p.grad is not None for p in module.parameters()):
            raise NoGradient("no gradient reaches the recurrent layer's parameters: it cannot "
                             "learn the task (its output was computed without autograd)")
        torch.nn.utils.clip_grad_norm_(params, budget.clip)
        optimiser.step()
        if step % budget.eval_every == 0 or not math.isfinite(loss.item()):
            with torch.no_grad():
                guess = logits(test_tokens, budget.test_size).argmax(-1).cpu()
                accuracy = float((guess == test_targets).double().mean())
            if not math.isfinite(loss.item()):
                accuracy = math.nan
            curve.append((step, accuracy))
            if not math.isfinite(accuracy):
                break
            best = max(best, accuracy)
            if accuracy >= SOLVED_ACCURACY:
                solved_at = step
                break
    return Result(best, solved_at, step, time.perf_counter() - start, tuple(curve))
