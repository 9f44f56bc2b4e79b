"""How often the gate cries wolf, and how often it catches a real slowdown, on this machine.

Pools of fresh worker processes are measured, interleaved: the baseline A, a second pool of the
very same implementation A' (for A/A experiments), and pools where every call carries a known
fraction of extra work (2%, 3%, 5%, 10%). Each simulated gate run draws k processes from A and k
from another pool, without replacement, and applies the fixed gate's rule; the rates over many
draws are the false-alarm rate (A/A) and the detection rates. The sequential gate (what
``seq-harness gate`` runs) is simulated on the same pools: processes drawn one after another,
judged look by look (harness.gate.sequential), which also gives how often it ends undecided and
how many processes per side it needed. The same draws are judged by pytest-benchmark's
``--benchmark-compare-fail=median:5%`` rule, which compares one run (one process) with one run.
Draws from finite pools are not independent: the rates describe this machine at this time, with
the pools' size stated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.phases import check_phase
from harness.core.spec import ImplSpec
from harness.gate.sequential import CODES, HELD, UNDECIDED, Schedule, simulated
from harness.gate.stats import (
    REGRESSION,
    attainable_p,
    process_statistic,
    scipy_stats,
    undetectable_message,
)
from harness.latency.grids import LatencyGrid
from harness.latency.plan import Plan, Side
from harness.latency.run import run_sides
from harness.latency.samples import samples_per_process
from harness.records import iter_records

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


@dataclass(frozen=True)
class SequentialRates:
    """The sequential gate against one pool: the share of simulated gates ending in each
    verdict, and the processes per side they used."""

    label: str
    slowdown: float
    regression: float
    held: float  # "no regression of min_effect or more"
    undecided: float
    per_side: tuple[int, ...]  # processes per side each simulated gate used

    @property
    def mean_per_side(self) -> float:
        return float(np.mean(self.per_side))


@dataclass(frozen=True)
class AnchorDrift:
    """The sequential gate run against a fixed anchor every ``every`` commits, judged as
    ``calibrate --drift`` judges history check: five +1% steps, detected by an alarm from the
    fifth step's commit to 10 commits after it; false alarms as alarms per 100 commits of a flat
    history. An alarm takes ``confirm`` gates in a row saying regression (history check
    --anchor-confirm), the next one run at once after a regression. From the simulated gates'
    rates against A' (``flat``) and against the pool as slow as the five steps together
    (``drifted``), each gate an independent draw of processes."""

    every: int
    flat: SequentialRates
    drifted: SequentialRates
    confirm: int = 1
    window: int = 11  # the fifth step's commit and the 10 after it

    @property
    def gates_in_window(self) -> int:
        """The fewest scheduled gates the window holds, wherever the schedule starts."""
        return self.window // self.every

    @property
    def detected(self) -> float:
        confirmed = self.drifted.regression ** self.confirm
        return 1.0 - (1.0 - confirmed) ** self.gates_in_window

    @property
    def false_alarms_per_100(self) -> float:
        """Alarms per 100 commits of a flat history, in percent (an upper bound on onsets)."""
        return 100.0 / self.every * self.flat.regression ** self.confirm * 100.0

    @property
    def false_alarms_per_100_bound(self) -> float:
        """The same at the one-sided 95% Clopper-Pearson bound of a gate's false-alarm rate."""
        n = len(self.flat.per_side)
        alarms = round(self.flat.regression * n)
        rate = 1.0 if alarms >= n else float(scipy_stats().beta.ppf(0.95, alarms + 1, n - alarms))
        return 100.0 / self.every * rate ** self.confirm * 100.0

    def minutes_per_100(self, process_s: float) -> float:
        """Machine time per 100 commits of a flat history: the scheduled gates' processes (both
        sides), and the confirming ones their false alarms start."""
        gates = sum(self.flat.regression ** k for k in range(self.confirm))
        return 100.0 / self.every * gates * 2 * self.flat.mean_per_side * process_s / 60.0


def simulate_sequential(base: Pool, other: Pool, *, schedule: Schedule, repetitions: int,
                        alpha: float, min_effect: float, seed: int = 0) -> SequentialRates:
    """Verdict rates of the sequential gate over random orders of the pools' processes (each
    simulated gate draws its processes without replacement, as many as its looks need)."""
    rng = np.random.default_rng(seed)
    # Row r: simulated gate r's processes in the order they arrive (a random permutation).
    orders = [rng.permuted(np.tile(np.asarray(pool.minimums), (repetitions, 1)), axis=1)
              for pool in (base, other)]
    codes, used = simulated(*orders, schedule=schedule, alpha=alpha, min_effect=min_effect)
    share = {v: float(np.mean(codes == CODES.index(v))) for v in (REGRESSION, HELD, UNDECIDED)}
    return SequentialRates(other.label, other.slowdown, share[REGRESSION], share[HELD],
                           share[UNDECIDED], tuple(int(n) for n in used))


def pools_from_records(records_by_label: dict[str, list],
                       slowdowns: dict[str, float]) -> list[Pool]:
    pools = []
    for label, records in records_by_label.items():
        samples = [s for per_key in samples_per_process(records).values() for s in per_key]
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
        p = scipy_stats().mannwhitneyu(other_min[b], base_min[a], alternative="greater").pvalue
        gate_alarms += bool(p < alpha and ratio > 1 + min_effect)
        # pytest-benchmark: one saved run against one new run, each one process.
        one_base, one_other = rng.integers(len(base_med)), rng.integers(len(other_med))
        pb_alarms += bool(other_med[one_other] / base_med[one_base] - 1
                          > PYTEST_BENCHMARK_THRESHOLD)
    return Rates(other.label, other.slowdown, gate_alarms / repetitions,
                 pb_alarms / repetitions)


@dataclass(frozen=True)
class CalibrationRequest:
    """What ``seq-harness calibrate`` measures: pools of ``processes`` fresh processes timing
    ``spec`` on the grid's first shape in ``phase`` — A, A' and one pool per slowdown — judged by
    ``repetitions`` simulated fixed gates of ``per_side`` processes a side, and as many
    sequential gates of looks ``per_side``, ``per_side`` + ``step``, ..., ``most``."""

    spec: ImplSpec
    grid: LatencyGrid
    phase: str
    processes: int
    per_side: int
    repetitions: int
    slowdowns: tuple[float, ...]
    min_run_time: float
    threads: int
    alpha: float
    min_effect: float
    step: int = 5
    most: int = 40

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.per_side, self.step, min(self.most, self.processes))

    @property
    def labels(self) -> dict[str, float]:
        """Pool label -> injected slowdown, the baseline first."""
        return {"A": 0.0, "A'": 0.0, **{f"+{s:.0%}": s for s in self.slowdowns}}

    def plan(self, slowdown: float) -> Plan:
        return Plan(specs=(self.spec,), grid=LatencyGrid(self.grid.name, self.grid.cases[:1]),
                    phases=(self.phase,), workers=self.processes,
                    min_run_time=self.min_run_time, threads=self.threads, memory=False)

    def validate(self) -> None:
        """ValueError naming a setting that makes the calibration meaningless."""
        check_phase(self.phase)
        if self.per_side > self.processes:
            raise ValueError(f"--per-side {self.per_side} exceeds --processes {self.processes}")
        if attainable_p(self.per_side, self.per_side, 1) >= self.alpha:
            raise ValueError(f"--per-side {self.per_side}: " + undetectable_message(
                self.per_side, self.per_side, 1, self.alpha))
        if self.most < self.per_side:
            raise ValueError(f"--max-per-side {self.most} is below --per-side "
                             f"{self.per_side}; expected at least as many")
        for s in self.slowdowns:
            if not 0 < s < 10:
                raise ValueError(f"--slowdown {s:g} is invalid; expected a fraction such as "
                                 "0.05")


def measure_pools(request: CalibrationRequest, out: Path, *, run_id: str,
                  progress: Callable[[str], None] | None = None) -> float:
    """Measure every pool interleaved (one fresh process per pool per round) into
    out/<label>; the seconds it took."""
    sides = [Side(request.plan(s), out / label, run_id, peak=False, slowdown=s)
             for label, s in request.labels.items()]
    started = time.perf_counter()
    run_sides(sides, workers=request.processes, progress=progress)
    return time.perf_counter() - started


def rates(request: CalibrationRequest, out: Path
          ) -> tuple[list[Rates], list[SequentialRates], list[Pool]]:
    """The alarm rates of every pool against the baseline, fixed and sequential, from the
    pools in ``out``."""
    labels = request.labels
    pools = pools_from_records({label: list(iter_records(out / label)) for label in labels},
                               labels)
    found = [simulate(pools[0], pool, per_side=request.per_side,
                      repetitions=request.repetitions, alpha=request.alpha,
                      min_effect=request.min_effect, seed=i)
             for i, pool in enumerate(pools[1:])]
    sequential = [simulate_sequential(pools[0], pool, schedule=request.schedule,
                                      repetitions=request.repetitions, alpha=request.alpha,
                                      min_effect=request.min_effect, seed=i)
                  for i, pool in enumerate(pools[1:])]
    return found, sequential, pools
