"""A gate that keeps measuring until it can decide: group-sequential verdicts.

A fixed number of processes per side cannot fit every machine: on a quiet one ten processes
decide a 3% change with room to spare; on a shared VM whose processes differ by 1.9x they decide
nothing, and a fixed gate then says "no significant change" about a real slowdown. This gate
measures in rounds ("looks"): after each round every timing not yet decided is tested three
ways, each at the share of the significance level this look may spend —

- **regression**: head slower than base (one-sided Mann-Whitney U over the per-process numbers)
  *and* the ratio of medians above 1 + min_effect (the fixed gate's rule);
- **improvement**: the mirror image;
- **held**: head is *not* slower by min_effect or more — the same test of head against base
  scaled by 1 + min_effect says head is the smaller (a non-inferiority test). A held timing may
  still be a little slower or faster; it is not ``min_effect`` slower, with the stated
  confidence.

A decided timing keeps its verdict and the figures of the look that decided it. The gate stops
when every timing is decided, at the most processes per side, or at its time budget; what is
still undecided then is **undecided**, and the gate says INCONCLUSIVE — never OK.

Error rates: look k spends alpha x (n_k - n_(k-1)) / n_most (linear alpha spending over the
information fraction, n the processes per side), split equally over the timings (Bonferroni).
Summed over every look and timing this is at most alpha, however strongly the looks are
correlated, so the chance of any false regression is at most alpha, and the chance of holding a
timing that is really ``min_effect`` slower is at most alpha too. A gate stopped early by its
budget has spent less: it is only more conservative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.gate.ranks import p_slower
from harness.gate.stats import (
    IMPROVEMENT,
    REGRESSION,
    UNCHANGED,
    UNDECIDED,
    Comparison,
    Verdict,
    smallest_p,
)

HELD = UNCHANGED  # "no significant change": not min_effect slower, with confidence


@dataclass(frozen=True)
class Schedule:
    """How many fresh processes per side each look has measured: ``first``, then ``step`` more
    per look, at most ``most``."""

    first: int
    step: int
    most: int

    @property
    def looks(self) -> tuple[int, ...]:
        """Processes per side at each look, e.g. (10, 15, 20, ..., 40)."""
        return (*range(self.first, self.most, self.step), self.most)

    def alpha_at(self, per_side: int, before: int, *, alpha: float, timings: int) -> float:
        """The significance one timing may spend at a look reaching ``per_side`` processes a
        side after ``before``: alpha x (per_side - before) / most, over ``timings``."""
        return alpha * (min(per_side, self.most) - before) / self.most / timings

    def validate(self, *, alpha: float, timings: int) -> None:
        """ValueError naming the option that keeps the first look from deciding anything."""
        if self.first < 2:
            raise ValueError(f"--workers {self.first} is invalid; expected 2 or more")
        if self.most < self.first:
            raise ValueError(f"--max-workers {self.most} is below --workers {self.first}; "
                             "expected at least as many")
        if self.step < 1:
            raise ValueError(f"--step {self.step} is invalid; expected 1 or more")
        spend = self.alpha_at(self.first, 0, alpha=alpha, timings=timings)
        if smallest_p(self.first, self.first) >= spend:
            least = next(n for n in range(self.first, 10_000)
                         if smallest_p(n, n) < self.alpha_at(n, 0, alpha=alpha,
                                                             timings=timings))
            raise ValueError(
                f"--workers {self.first}: the first look may spend {spend:.2g} of alpha "
                f"{alpha:g} on each of {timings} timing{'s' if timings != 1 else ''} (up to "
                f"--max-workers {self.most}), and {self.first} processes per side cannot give "
                f"a p below it (the smallest is {smallest_p(self.first, self.first):.2g}); "
                f"--workers {least} or more can")


@dataclass(frozen=True)
class Decided(Verdict):
    """A timing's verdict and the look that gave it (``look`` 0 when undecided)."""

    look: int = 0
    spent: float = 0.0  # the significance the deciding (or last) look spent on it
    p_held: float = 1.0  # p of "head is min_effect slower or more"


CODES = (REGRESSION, IMPROVEMENT, HELD, UNDECIDED)  # what ``outcomes`` returns, by index


def outcomes(base: np.ndarray, head: np.ndarray, *, spend: float, min_effect: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Verdicts of many timings at one look at once: base (R, n_base) and head (R, n_head)
    hold each timing's per-process numbers in rows; returns indices into CODES (R,) and the p
    of held (R,). The rows share one look's ``spend``."""
    slower = p_slower(head, base)  # the tests ``Comparison`` makes and its interval inverts
    faster = p_slower(head, base, alternative="less")
    held = p_slower(head, base * (1 + min_effect), alternative="less")
    ratio = np.median(head, axis=1) / np.median(base, axis=1)
    codes = np.full(len(ratio), CODES.index(UNDECIDED))
    codes[held < spend] = CODES.index(HELD)
    codes[(faster < spend) & (ratio < 1 / (1 + min_effect))] = CODES.index(IMPROVEMENT)
    codes[(slower < spend) & (ratio > 1 + min_effect)] = CODES.index(REGRESSION)
    return codes, np.asarray(held)


def outcome(comparison: Comparison, *, spend: float, min_effect: float) -> tuple[str, float]:
    """One timing's verdict at a look that may spend ``spend``, and the p of held."""
    codes, held = outcomes(np.asarray([comparison.base]), np.asarray([comparison.head]),
                           spend=spend, min_effect=min_effect)
    return CODES[codes[0]], float(held[0])


def decide(comparison: Comparison, *, spend: float, min_effect: float, look: int) -> Decided:
    """One timing at one look: regression, improvement, held, or undecided, with the figures
    a summary shows."""
    verdict, held = outcome(comparison, spend=spend, min_effect=min_effect)
    return Decided(comparison, comparison.p_slower, comparison.p_faster, verdict,
                   comparison.interval(), look=look if verdict != UNDECIDED else 0,
                   spent=spend, p_held=held)


def simulated(base: np.ndarray, head: np.ndarray, *, schedule: Schedule, alpha: float,
              min_effect: float, timings: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Many sequential gates on one timing each, at once: row r of base and head (R, N) holds
    gate r's processes in the order they arrive. Returns each gate's verdict (indices into
    CODES) and the processes per side it used. What calibrate simulates with draws from
    measured pools."""
    base, head = np.atleast_2d(base), np.atleast_2d(head)
    codes = np.full(len(base), CODES.index(UNDECIDED))
    used = np.zeros(len(base), dtype=int)
    before = 0
    for size in schedule.looks:
        if size > min(base.shape[1], head.shape[1]):
            break
        open_ = codes == CODES.index(UNDECIDED)
        if not open_.any():
            break
        spend = schedule.alpha_at(size, before, alpha=alpha, timings=timings)
        codes[open_], _ = outcomes(base[open_, :size], head[open_, :size], spend=spend,
                                   min_effect=min_effect)
        used[open_] = size
        before = size
    return codes, used


@dataclass(frozen=True)
class Progress:
    """Where a sequential gate stands: every timing's latest verdict (decided ones frozen)."""

    decisions: tuple[Decided, ...]
    per_side: int  # processes per side measured so far
    looks: int  # looks taken

    @property
    def undecided(self) -> list[Decided]:
        return [d for d in self.decisions if d.verdict == UNDECIDED]

    @property
    def done(self) -> bool:
        return not self.undecided

    def line(self) -> str:
        decided = len(self.decisions) - len(self.undecided)
        return (f"seq-harness gate: look {self.looks}, {self.per_side} processes per side: "
                f"{decided} of {len(self.decisions)} timings decided")


def look(previous: Progress | None, comparisons: Sequence[Comparison], *, schedule: Schedule,
         alpha: float, min_effect: float) -> Progress:
    """The next look: every undecided timing judged on all its processes so far at this look's
    share of alpha; decided ones keep their verdicts. ``comparisons`` hold the samples of every
    timing so far (per side, as many as measured)."""
    number = 1 if previous is None else previous.looks + 1
    before = 0 if previous is None else previous.per_side
    per_side = min(min(len(c.base), len(c.head)) for c in comparisons)
    spend = schedule.alpha_at(per_side, before, alpha=alpha, timings=len(comparisons))
    kept = {} if previous is None else {d.comparison.key: d for d in previous.decisions
                                        if d.verdict != UNDECIDED}
    decisions = tuple(kept.get(c.key) or decide(c, spend=spend, min_effect=min_effect,
                                                look=number)
                      for c in comparisons)
    return Progress(decisions, per_side, number)


def undecided_line(progress: Progress, *, min_effect: float, why: str) -> str | None:
    """One line: which timings are undecided after how many processes, and what would decide
    them (None when every timing is decided)."""
    left = progress.undecided
    if not left:
        return None
    c = max(left, key=lambda d: d.p_held).comparison
    return (f"{len(left)} of {len(progress.decisions)} timings undecided after "
            f"{progress.per_side} processes per side ({why}): e.g. {c.key[0]} {c.key[2]} "
            f"{c.key[1]}, ratio {c.ratio:.3f}, is neither a significant regression above "
            f"{min_effect:.0%} nor provably less than {min_effect:.0%} slower; more processes "
            "(--max-workers, --budget) or a quieter machine would decide")
