"""calibration.md: the gate's false-alarm and detection rates on this machine — the sequential
gate ``seq-harness gate`` runs and a fixed one of ten processes a side — next to
pytest-benchmark's one-run-against-one-run rule on the same data, and what measuring cost."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.gate.calibration import (
    PYTEST_BENCHMARK_THRESHOLD,
    AnchorDrift,
    Pool,
    Rates,
    SequentialRates,
)

ANCHOR_EVERY = (1, 5, 10)  # commits between two gates against the anchor
ANCHOR_CONFIRM = (1, 2)  # gates in a row an alarm takes (history check --anchor-confirm)
DRIFT = 0.05  # five +1% steps


def calibration_document(rates: Sequence[Rates], sequential: Sequence[SequentialRates],
                         pools: Sequence[Pool], *, per_side: int, repetitions: int,
                         alpha: float, min_effect: float, measure_s: float, process_s: float,
                         context: str, looks: Sequence[int] = ()) -> str:
    """calibration.md: the rates, the targets, the cost."""
    base_level = float(np.median(pools[0].minimums))
    measured = {p.label: float(np.median(p.minimums)) / base_level - 1 for p in pools}
    lines = ["# Gate calibration", "", context, "",
             "## The sequential gate (`seq-harness gate`)", "",
             "| variant | injected slowdown | measured slowdown | regression | no regression "
             f"≥ {min_effect:.0%} | undecided (INCONCLUSIVE) | processes per side, mean "
             "(largest) |", "|---|---|---|---|---|---|---|"]
    for r in sequential:
        lines.append(f"| {r.label} | {r.slowdown:.0%} | {measured[r.label]:+.1%} | "
                     f"{r.regression:.1%}{' (false alarms)' if r.slowdown == 0 else ''} | "
                     f"{r.held:.1%} | {r.undecided:.1%} | {r.mean_per_side:.1f} "
                     f"({max(r.per_side)}) |")
    schedule = ", ".join(map(str, looks)) if looks else "as configured"
    lines += ["", f"Looks at {schedule} processes per side; alpha {alpha:g} spent linearly "
              "over the looks; a timing is a regression when the one-sided Mann-Whitney U p "
              f"is below its look's share and the ratio of medians above {1 + min_effect:.2f}, "
              f"and *no regression ≥ {min_effect:.0%}* when head is provably less than "
              f"{min_effect:.0%} slower (docs/gate.md). {repetitions} simulated gates per "
              "variant, each drawing its processes one after another, without replacement, "
              f"from pools of {len(pools[0].minimums)} processes.", "",
              f"## A fixed gate of {per_side} processes a side, and pytest-benchmark", "",
              "| variant | injected slowdown | measured slowdown | gate alarms | "
              "pytest-benchmark median:5% alarms |",
              "|---|---|---|---|---|"]
    for r in rates:
        kind = "false alarms (A/A)" if r.slowdown == 0 else "detected"
        lines.append(f"| {r.label} | {r.slowdown:.0%} | {measured[r.label]:+.1%} | "
                     f"{r.gate:.1%} {kind} | {r.pytest_benchmark:.1%} {kind} |")
    spread = {p.label: (max(p.minimums) / min(p.minimums) - 1, max(p.medians) / min(p.medians)
                        - 1) for p in pools}
    base = pools[0]
    lines += [
        "",
        f"Fixed rule: {per_side} fresh processes per side, each contributing its fastest block; "
        f"one-sided Mann-Whitney U at p < {alpha:g} and a ratio of medians above "
        f"{1 + min_effect:.2f}. pytest-benchmark's rule: one process against one process, "
        f"alarm when the median is more than {PYTEST_BENCHMARK_THRESHOLD:.0%} slower. "
        f"{repetitions} random draws per variant from pools of {len(base.minimums)} processes "
        "(A/A: the baseline pool against a second pool of the same implementation, measured "
        "interleaved with it).",
        "",
        "*Measured slowdown* is the pool's median per-process minimum over the baseline's: the "
        "injected work plus the wrapper's own overhead plus noise; it is what a gate sees.",
        "",
        f"Between processes of the baseline pool, per-process minimums varied by "
        f"{spread[base.label][0]:.1%} (largest over smallest) and per-process medians by "
        f"{spread[base.label][1]:.1%}.",
        "",
        f"Cost: measuring the {len(pools)} pools took {measure_s / 60:.1f} min "
        f"({process_s:.1f} s per fresh process timing one task, interpreter start included); "
        f"a gate of {per_side} + {per_side} such processes takes about "
        f"{2 * per_side * process_s / 60:.1f} min on this machine; the sequential gate's "
        "processes per side above, times two, times that.",
        "",
        "Targets: false alarms <= 1%, detection of a 3% slowdown >= 95%.",
        "",
        *anchor_section(sequential, measured, process_s),
        "`history check` against a slow drift (five +1% steps), on this machine's measured "
        "run-to-run noise and beside github-action-benchmark's, asv's, Conbench's and "
        "CodSpeed's rules: [calibration-drift.md](calibration-drift.md) (`seq-harness "
        "calibrate --drift`).",
        "",
    ]
    return "\n".join(lines)


def anchor_section(sequential: Sequence[SequentialRates], measured: dict[str, float],
                   process_s: float) -> list[str]:
    """The drift goal of `calibrate --drift` met by the gate against a fixed anchor
    (docs/history.md, Anchor drift), from the A' pool and the +5% one."""
    lines = ["## Anchor drift: the gate against a fixed anchor every K commits", ""]
    flat = next((r for r in sequential if r.slowdown == 0), None)
    drifted = next((r for r in sequential if abs(r.slowdown - DRIFT) < 1e-9), None)
    if flat is None or drifted is None:
        return lines + [f"Needs the A' pool and a +{DRIFT:.0%} one (`--slowdown {DRIFT:g}`).", ""]
    lines += ["| an alarm takes | a gate every | gates from the fifth step to 10 after it, at "
              "least | detected | false alarms per series per 100 commits (95% upper bound) | "
              "machine time per 100 commits |", "|---|---|---|---|---|---|"]
    for confirm in ANCHOR_CONFIRM:
        for every in ANCHOR_EVERY:
            anchor = AnchorDrift(every, flat, drifted, confirm=confirm)
            lines.append(
                f"| {'1 gate' if confirm == 1 else f'{confirm} gates in a row'} | {every} "
                f"commit{'s' if every > 1 else ''} | {anchor.gates_in_window} | "
                f"{anchor.detected:.1%} | {anchor.false_alarms_per_100:.4f}% "
                f"({anchor.false_alarms_per_100_bound:.4f}%) | "
                f"{anchor.minutes_per_100(process_s):.0f} min |")
    lines += ["", f"Five +1% steps make a {DRIFT:.0%} drift, which a gate of head against an "
              f"anchor before them sees whole: here the +{DRIFT:.0%} pool (measured "
              f"{measured[drifted.label]:+.1%}) stands for head after the fifth step and A' for "
              "a history with nothing in it; each gate is an independent simulated gate of the "
              "table above. *An alarm takes* 2 gates in a row (`history check`'s default "
              "`--anchor-confirm 2`): after a gate that says regression the next runs at once, "
              "at the same commit. *Detected*: an alarm from a gate scheduled from the fifth "
              "step's commit to 10 commits after it; *false alarms*: alarms per 100 commits of "
              "a flat history (an upper bound on alarm onsets), and in brackets the same at "
              "the one-sided 95% Clopper-Pearson bound of one gate's false-alarm rate over "
              f"{len(flat.per_side)} simulated gates. *Machine time*: both sides' processes of "
              "the gates on a flat history, the confirming ones included. The goal of "
              "`calibrate --drift`: >= 90% detected within 10 commits of the fifth step, <= 1% "
              "false alarms per series per 100 commits.", ""]
    return lines
