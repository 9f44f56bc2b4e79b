"""How often the gate cries wolf, and how often it catches a real slowdown, on this machine.

Pools of fresh worker processes are measured, interleaved: the baseline A, a second pool of the
very same implementation A' (for A/A experiments), and pools where every call carries a known
fraction of extra work (2%, 5%, 10%). Each simulated gate run draws k processes from A and k from
another pool, without replacement, and applies the gate's rule; the rates over many draws are the
false-alarm rate (A/A) and the detection rates. The same draws are judged by pytest-benchmark's
``--benchmark-compare-fail=median:5%`` rule, which compares one run (one process) with one run.
Draws from finite pools are not independent: the rates describe this machine at this time, with
the pools' size stated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from harness.gate import process_statistic

PYTEST_BENCHMARK_THRESHOLD = 0.05  # --benchmark-compare-fail=median:5%


@dataclass(frozen=True)
class Pool:
    """One variant's processes: per-process statistic (fastest block) and median."""

    label: str
    slowdown: float
    minimums: tuple[float, ...]
    medians: tuple[float, ...]


@dataclass(frozen=True)
class Rates:
    label: str
    slowdown: float
    gate: float  # fraction of simulated gates that called a regression
    pytest_benchmark: float  # same, for pytest-benchmark's one-run-against-one-run rule


def pools_from_records(records_by_label: dict[str, list],
                       slowdowns: dict[str, float]) -> list[Pool]:
    pools = []
    for label, records in records_by_label.items():
        samples = [r.metrics["samples_s"] for r in records if r.metrics.get("samples_s")]
        pools.append(Pool(label, slowdowns[label],
                          tuple(process_statistic(s) for s in samples),
                          tuple(float(np.median(s)) for s in samples)))
    return pools


def simulate(base: Pool, other: Pool, *, per_side: int, repetitions: int, alpha: float,
             min_effect: float, seed: int = 0) -> Rates:
    """Alarm rates of the gate's rule and of pytest-benchmark's, over random draws."""
    rng = np.random.default_rng(seed)
    base_min, other_min = np.asarray(base.minimums), np.asarray(other.minimums)
    base_med, other_med = np.asarray(base.medians), np.asarray(other.medians)
    k = min(per_side, len(base_min), len(other_min))
    gate_alarms = pb_alarms = 0
    for _ in range(repetitions):
        a = rng.choice(len(base_min), size=k, replace=False)
        b = rng.choice(len(other_min), size=k, replace=False)
        ratio = np.median(other_min[b]) / np.median(base_min[a])
        p = stats.mannwhitneyu(other_min[b], base_min[a], alternative="greater").pvalue
        gate_alarms += bool(p < alpha and ratio > 1 + min_effect)
        # pytest-benchmark: one saved run against one new run, each one process.
        one_base, one_other = rng.integers(len(base_med)), rng.integers(len(other_med))
        pb_alarms += bool(other_med[one_other] / base_med[one_base] - 1
                          > PYTEST_BENCHMARK_THRESHOLD)
    return Rates(other.label, other.slowdown, gate_alarms / repetitions,
                 pb_alarms / repetitions)


def render(rates: Sequence[Rates], pools: Sequence[Pool], *, per_side: int, repetitions: int,
           alpha: float, min_effect: float, measure_s: float, process_s: float,
           context: str) -> str:
    """calibration.md: the rates, the targets, the cost."""
    lines = ["# Gate calibration", "", context, "",
             "| variant | injected slowdown | measured slowdown | gate alarms | "
             "pytest-benchmark median:5% alarms |",
             "|---|---|---|---|---|"]
    base_level = float(np.median(pools[0].minimums))
    measured = {p.label: float(np.median(p.minimums)) / base_level - 1 for p in pools}
    for r in rates:
        kind = "false alarms (A/A)" if r.slowdown == 0 else "detected"
        lines.append(f"| {r.label} | {r.slowdown:.0%} | {measured[r.label]:+.1%} | "
                     f"{r.gate:.1%} {kind} | {r.pytest_benchmark:.1%} {kind} |")
    spread = {p.label: (max(p.minimums) / min(p.minimums) - 1, max(p.medians) / min(p.medians)
                        - 1) for p in pools}
    base = pools[0]
    lines += [
        "",
        f"Gate rule: {per_side} fresh processes per side, each contributing its fastest block; "
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
        f"{2 * per_side * process_s / 60:.1f} min on this machine.",
        "",
        "Targets: false alarms <= 1%, detection of a 5% slowdown >= 95%.",
        "",
    ]
    return "\n".join(lines)


def measure_pools(spec, plan_for: Callable[[float], object], slowdowns: dict[str, float],
                  out: Path, *, processes: int, run_id: str,
                  progress: Callable[[str], None] | None = None) -> tuple[list, float]:
    """Measure every pool interleaved (one fresh process per pool per round)."""
    from harness.bench import Side, run_sides

    sides = [Side(plan_for(s), out / label, run_id, peak=False, slowdown=s)
             for label, s in slowdowns.items()]
    started = time.perf_counter()
    records = run_sides(sides, workers=processes, progress=progress)
    return records, time.perf_counter() - started
