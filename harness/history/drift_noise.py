"""This machine's run-to-run noise, as ``history check`` sees it: real repeated runs, measured.

A history holds one number per run: the median over that run's worker processes of each
process's median block time (harness.history.timelines). Here a run is ``processes_per_run``
fresh worker processes, one after another, timing one implementation at one shape, exactly as a
CI job's bench step would; ``runs`` such runs follow each other. Each run's number over the
median of all runs' numbers is one draw of the run-to-run noise (a ratio, 1.0 = typical), which
the drift calibration resamples into histories instead of assuming a distribution.

The records go to ``out/runs`` (one results directory: run r is worker processes
r*P .. r*P+P-1), the measurement's settings and duration to ``out/drift.json``, so the noise can
be read again (``calibrate --drift --analyze``) without measuring.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.phases import check_phase
from harness.core.spec import ImplSpec
from harness.gate.stats import process_statistic
from harness.latency.grids import LatencyGrid
from harness.latency.plan import Plan, Side
from harness.latency.run import run_sides
from harness.latency.samples import samples_per_process
from harness.records import PASSED, Record

RUNS_DIR, SETTINGS_FILE = "runs", "drift.json"


@dataclass(frozen=True)
class NoiseRequest:
    """``runs`` runs of ``processes_per_run`` fresh processes timing ``spec`` on the grid's
    first shape in ``phase``."""

    spec: ImplSpec
    grid: LatencyGrid
    phase: str
    runs: int
    processes_per_run: int
    min_run_time: float
    threads: int

    def validate(self) -> None:
        """ValueError naming a setting that leaves no noise to measure."""
        check_phase(self.phase)
        if self.runs < 8:
            raise ValueError(f"--runs {self.runs} is too few; the noise of fewer than 8 runs "
                             "says little (e.g. --runs 60)")
        if self.processes_per_run < 1:
            raise ValueError(f"--processes-per-run {self.processes_per_run} is invalid; "
                             "expected at least 1")

    @property
    def plan(self) -> Plan:
        return Plan(specs=(self.spec,), grid=LatencyGrid(self.grid.name, self.grid.cases[:1]),
                    phases=(self.phase,), workers=self.runs * self.processes_per_run,
                    min_run_time=self.min_run_time, threads=self.threads, memory=False)


@dataclass(frozen=True)
class MeasuredNoise:
    """Per run (in the order measured), the number a history records for it."""

    run_values_s: tuple[float, ...]
    processes_per_run: int
    measure_s: float = float("nan")  # how long measuring took

    def __post_init__(self) -> None:
        if len(self.run_values_s) < 2:
            raise ValueError(f"{len(self.run_values_s)} complete run(s) measured; the noise "
                             "needs at least 2")

    @property
    def ratios(self) -> np.ndarray:
        """Each run's number over the median of all runs': the draws of the noise."""
        values = np.asarray(self.run_values_s)
        return values / np.median(values)

    @property
    def runs(self) -> int:
        return len(self.run_values_s)

    @property
    def iqr(self) -> tuple[float, float]:
        return (float(np.percentile(self.ratios, 25)), float(np.percentile(self.ratios, 75)))

    @property
    def p95(self) -> float:
        """95th percentile of |log ratio|, as a ratio: 95% of runs lie within 1/p95 .. p95."""
        return float(np.exp(np.percentile(np.abs(np.log(self.ratios)), 95)))

    @property
    def log_sd(self) -> float:
        return float(np.std(np.log(self.ratios), ddof=1))

    @property
    def lag1(self) -> float:
        """Autocorrelation of consecutive runs' log ratios (0: no drift within the
        measurement, which the independent resampling assumes)."""
        logs = np.log(self.ratios)
        return float(np.corrcoef(logs[:-1], logs[1:])[0, 1])

    def halves(self) -> tuple[MeasuredNoise, MeasuredNoise]:
        """The first and second half of the runs in time: one to tune on, one to report on."""
        middle = self.runs // 2
        return (MeasuredNoise(self.run_values_s[:middle], self.processes_per_run),
                MeasuredNoise(self.run_values_s[middle:], self.processes_per_run))


def run_values(records: Iterable[Record], processes_per_run: int) -> tuple[float, ...]:
    """Per complete run (all its processes timed), the median of its processes' fastest blocks:
    the number ``history check`` judges (harness.history.timelines)."""
    medians: dict[int, float] = {}
    for r in records:
        samples = r.metrics.get("samples_s") if r.outcome == PASSED else None
        if samples and samples_per_process([r]):
            medians[int(r.metrics.get("worker") or 0)] = process_statistic(samples)
    runs: dict[int, list[float]] = {}
    for worker, median in medians.items():
        runs.setdefault(worker // processes_per_run, []).append(median)
    return tuple(statistics.median(runs[r]) for r in sorted(runs)
                 if len(runs[r]) == processes_per_run)


def measure(request: NoiseRequest, out: Path, *, run_id: str,
            progress: Callable[[str], None] | None = None) -> float:
    """Time every run's processes, one after another, into out/runs; the seconds it took
    (also written, with the settings, to out/drift.json)."""
    side = Side(request.plan, out / RUNS_DIR, run_id, peak=False)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    run_sides([side], workers=request.plan.workers, progress=progress)
    seconds = time.perf_counter() - started
    # the machine's load while measuring: the noise is this machine's at this load
    (out / SETTINGS_FILE).write_text(json.dumps({
        "runs": request.runs, "processes_per_run": request.processes_per_run,
        "seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
        "cpus": os.cpu_count()}) + "\n")
    return seconds


def read_settings(out: Path) -> dict:
    """out/drift.json; ValueError naming the directory when there is none."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        raise ValueError(f"{out} holds no drift measurement ({SETTINGS_FILE} is missing); "
                         "measure first: seq-harness calibrate --drift --out DIR")
    return json.loads(path.read_text())
