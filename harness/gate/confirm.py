"""A regression said by gates in a row: ``gate --confirm N``.

One gate's false alarms are rare (0.1% of the simulated gates on calibrate's A/A pools), but a job
that gates every push meets them. ``--confirm N`` runs the gate again, with fresh processes, while
some timing has said regression in every gate so far, up to N gates; a timing is a regression only
when all N said it. ``history check`` counts gates against an anchor the same way
(``--anchor-confirm``), so a gate with ``--base-ref`` and ``--confirm 2`` gives it both gates at
once: the confirmation the drift calibration assumes (results/calibration.md, Anchor drift).
A check that passed in base and fails in head needs no confirmation: it is a regression at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.gate.compare import Summary, status_of
from harness.gate.stats import REGRESSION

Key = tuple[str, str, str]  # (implementation, case id, phase), as harness.gate.stats keys them


@dataclass(frozen=True)
class Streaks:
    """After ``gates`` gates: per timing, how many of the latest said regression in a row."""

    gates: int = 0
    counts: Mapping[Key, int] = field(default_factory=dict)

    def after(self, summary: Summary) -> Streaks:
        """The streaks once ``summary``'s gate is in: a timing it did not call a regression
        starts again from nothing."""
        said = [v.comparison.key for v in summary.verdicts if v.verdict == REGRESSION]
        return Streaks(self.gates + 1, {k: self.counts.get(k, 0) + 1 for k in said})

    @property
    def pending(self) -> tuple[Key, ...]:
        """The timings every gate so far called a regression: what another gate confirms."""
        return tuple(k for k, n in self.counts.items() if n == self.gates)

    def confirmed(self, confirm: int) -> tuple[Key, ...]:
        return tuple(k for k, n in self.counts.items() if n >= confirm)


def another_gate(summary: Summary, streaks: Streaks, confirm: int) -> bool:
    """Whether the gate runs again: a timing's regression waits for its confirmation."""
    return not summary.regressions and bool(streaks.pending) and streaks.gates < confirm


def final_status(summary: Summary, streaks: Streaks, confirm: int) -> str:
    """The last gate's status, its timings' regressions counted only once ``confirm`` gates in a
    row said them (an unconfirmed one is then OK, or INCONCLUSIVE beside undecided timings)."""
    if summary.regressions or streaks.confirmed(confirm):
        return "REGRESSION"
    return status_of([v for v in summary.verdicts if v.verdict != REGRESSION], [])


def named(keys: tuple[Key, ...]) -> str:
    """Timings as a line names them, e.g. "torch-gru inference T50-B8-I128-H128"."""
    return ", ".join(f"{impl} {phase} {case}" for impl, case, phase in keys)


def gate_dir(out: Path, gate: int) -> Path:
    """Where the ``gate``-th gate of one command goes: OUT, then OUT/confirm-2, ..."""
    return out if gate == 1 else out / f"confirm-{gate}"


def sentence(streaks: Streaks, previous: Streaks, confirm: int, *, again: bool,
             next_dir: Path) -> str | None:
    """What the end of a gate says about confirmation: that the next gate runs (``again``, into
    ``next_dir``), that it confirmed the regression, or what it cleared; None for a gate that
    is the only one."""
    if again:
        return (f"regression in {named(streaks.pending)}: gate {streaks.gates + 1} of {confirm} "
                f"runs now, with fresh processes, to confirm it (into {next_dir})")
    if not previous.gates:
        return None
    held = streaks.confirmed(confirm)
    if held:
        return f"regression confirmed by {confirm} gates in a row: {named(held)}"
    cleared = tuple(k for k in previous.pending if k not in streaks.counts)
    return (f"regression of gate {previous.gates} not confirmed: gate {streaks.gates} does not "
            f"say it ({named(cleared)})")
