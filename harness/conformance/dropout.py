"""Dropout judged by what it does over many calls: no single training call can be compared
with torch's (the masks are random), but the way dropout moves the output can. Per training call,
the output's change from the same call in eval mode gives four numbers — its mean square (how
much is dropped, and how the kept values are rescaled), its mean (the 1 / (1 - p) rescale keeps
it centred), how alike the change is from one step to the next (a fresh mask every step, not
one per sequence) and how alike it is in two batch rows given the same input (a mask per row,
not one shared by the batch) — and each is compared with torch's own over the same number of
calls by a two-sided rank test. Dropping 1 - p instead of p, leaving out the rescale, one mask
for the whole sequence or for the whole batch moves them by tens of standard errors; a correct
implementation draws from the same distribution as torch and fails with probability below
4 ALPHA.

The rank test is the normal approximation of the Mann-Whitney U test, written out here (the
statistics are continuous: no ties): scipy's import would cost every check worker about a
second of each verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

CALLS = 64  # training calls per side
ALPHA = 1e-6  # per statistic: a correct implementation fails one in ~300,000 cases


@dataclass(frozen=True)
class Moves:
    """How dropout moved the output, per training call: (T, B, F) train - eval changes,
    time-major, summarised."""

    squares: tuple[float, ...]  # mean square of the change
    means: tuple[float, ...]  # mean of the change
    persistence: tuple[float, ...]  # mean cosine of the change at step t and step t + 1
    twins: tuple[float, ...]  # cosine of the change in batch rows 0 and 1 (the same input)

    @classmethod
    def of(cls, changes: list[Tensor]) -> Moves:
        cosine = torch.nn.functional.cosine_similarity
        flat = [c.double().flatten(1) for c in changes]  # (T, B * F) each
        return cls(tuple(float((c ** 2).mean()) for c in flat),
                   tuple(float(c.mean()) for c in flat),
                   tuple(float(cosine(c[1:], c[:-1], dim=1).mean()) if c.shape[0] > 1 else 0.0
                         for c in flat),
                   tuple(float(cosine(c[:, 0].double().flatten(), c[:, 1].double().flatten(),
                                      dim=0)) if c.shape[1] > 1 else 0.0 for c in changes))

    def named(self) -> dict[str, tuple[float, ...]]:
        return {"mean square of the change": self.squares, "mean change": self.means,
                "step-to-step cosine of the change": self.persistence,
                "cosine of the change in two batch rows with the same input": self.twins}


def moves(call: Callable[[], Tensor], eval_output: Tensor, *, seed: int,
          calls: int = CALLS, device: str = "cpu") -> Moves:
    """``call()`` (a training call's output, time-major) ``calls`` times, torch's RNG seeded
    before each from ``seed``, each as its change from ``eval_output``. On the CPU only the CPU
    generator is seeded: torch.manual_seed also queues a seed for every accelerator torch was
    built for, formatting the stack each time (250 us a call on a CPU-only machine)."""
    changes = []
    for n in range(calls):
        if device == "cpu":
            torch.default_generator.manual_seed(seed + n)
        else:
            torch.manual_seed(seed + n)
        with torch.no_grad():
            changes.append((call().detach() - eval_output).cpu())
    return Moves.of(changes)


def rank_p(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Two-sided p of the Mann-Whitney U test of a against b (normal approximation; a NaN in
    either sample gives 0: a change that is not a number is no dropout)."""
    values = torch.tensor([*a, *b], dtype=torch.float64)
    if not bool(values.isfinite().all()):
        return 0.0
    ranks = values.argsort().argsort().double() + 1.0  # 1..n
    n1, n2 = len(a), len(b)
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    z = (u - n1 * n2 / 2.0) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    return math.erfc(abs(z) / math.sqrt(2.0))


def differences(mine: Moves, torch_s: Moves, alpha: float = ALPHA) -> list[str]:
    """One phrase per statistic whose rank test says the two differ at ``alpha``."""
    found = []
    for (name, a), b in zip(mine.named().items(), torch_s.named().values()):
        p = rank_p(a, b)
        if p < alpha:
            found.append(f"{name} {sum(a) / len(a):.4g} against torch's {sum(b) / len(b):.4g} "
                         f"(rank test p = {p:.1g} < {alpha:g})")
    return found
