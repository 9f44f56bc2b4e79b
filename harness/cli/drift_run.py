"""``seq-harness calibrate --drift``, the work: measure this machine's run-to-run noise (or
read it), build histories from it, and judge them with ``history check`` and the anchors'
rules (harness.cli.calibrate_drift holds the options)."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from harness.cli.common import UsageError, positive, prepare_out, usage_errors
from harness.history.drift_calibration import (
    QUIETER,
    SimulationRequest,
    calibrate,
    shrunk,
    tune_alpha,
)
from harness.history.drift_noise import (
    RUNS_DIR,
    MeasuredNoise,
    NoiseRequest,
    measure,
    read_settings,
    run_values,
)
from harness.history.drift_rules import HistoryCheck, anchors
from harness.history.judge import ALPHA
from harness.latency.grids import load_grid
from harness.records import ResultsError, RunInfo, iter_records, read_run_info, write_run_info
from harness.registry import choose_one
from harness.report.drift_calibration import Tuning, drift_document


def drift_run(args: argparse.Namespace, argv: list[str]) -> int:
    positive("--min-run-time", args.min_run_time, integer=False)
    positive("--threads", args.threads)
    with usage_errors():
        request = NoiseRequest(spec=choose_one(impl=args.impl), grid=load_grid(args.grid),
                               phase=args.phase, runs=args.runs,
                               processes_per_run=args.processes_per_run,
                               min_run_time=args.min_run_time, threads=args.threads)
        simulation = SimulationRequest(histories=args.histories, block=args.block)
        request.validate()
        simulation.validate()
    out = Path(args.out) if args.out else Path("results") / "calibration-drift"
    if args.analyze:
        try:
            info = read_run_info(out / RUNS_DIR)
        except ResultsError as error:
            raise UsageError(f"--analyze: {error}") from None
    else:
        info = RunInfo.collect(argv=["seq-harness", *argv])
        prepare_out(out / RUNS_DIR, overwrite=args.overwrite)
        write_run_info(out / RUNS_DIR, info)
        measure(request, out, run_id=info.run_id, progress=lambda line: print(line, flush=True))
    with usage_errors():
        settings = read_settings(out)
        values = run_values(iter_records(out / RUNS_DIR), settings["processes_per_run"])
        noise = MeasuredNoise(values, settings["processes_per_run"], settings["seconds"])
    ours = [HistoryCheck(min_effect=args.min_effect),
            HistoryCheck(min_effect=args.min_effect, drifts=False)]
    tuning = tuned(args, simulation) if args.tune_on else None
    if tuning is not None and tuning.alpha not in (None, ALPHA):
        ours.insert(1, HistoryCheck(min_effect=args.min_effect, alpha=tuning.alpha))
    results = calibrate(noise.ratios, simulation, [*ours, *anchors()])
    # the same shape of noise, quieter: where the goal is within reach
    small = SimulationRequest(histories=min(args.histories, 300), block=args.block, seed=2)
    quieter = [(sd, calibrate(shrunk(noise.ratios, sd), small, ours)) for sd in QUIETER]
    text = drift_document(results, noise, level_s=statistics.median(values),
                          request=simulation,
                          context=context(info, settings, request) + (
                              f" Judged again by `seq-harness {' '.join(argv)}`."
                              if args.analyze else ""),
                          load=load_words(settings), tuning=tuning, quieter=quieter,
                          quieter_histories=small.histories)
    (out / "calibration-drift.md").write_text(text)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


def tuned(args: argparse.Namespace, simulation: SimulationRequest) -> Tuning:
    """The alpha chosen on the measurement in --tune-on (its own histories, seed 1)."""
    where = Path(args.tune_on)
    with usage_errors():
        settings = read_settings(where)
        noise = MeasuredNoise(run_values(iter_records(where / RUNS_DIR),
                                         settings["processes_per_run"]),
                              settings["processes_per_run"], settings["seconds"])
    request = SimulationRequest(histories=min(simulation.histories, 500),
                                block=simulation.block, seed=1)
    tried = tune_alpha(noise.ratios, request,
                       lambda alpha: HistoryCheck(min_effect=args.min_effect, alpha=alpha))
    return Tuning(where=str(where), noise=noise, histories=request.histories,
                  tried=tuple(tried), load=load_words(settings))


def context(info: RunInfo, settings: dict, request: NoiseRequest) -> str:
    cpus = settings.get("cpus")
    return (f"`{' '.join(info.argv)}` on {info.machine}"
            + (f" ({cpus} vCPUs)" if cpus else "")
            + f", torch {info.torch}, {request.threads} thread(s), {info.created}: "
            f"{request.spec.name}, {request.phase}, {request.grid.cases[0].id}, "
            f"{settings['runs']} runs of {settings['processes_per_run']} processes measured in "
            f"{settings['seconds'] / 60:.1f} min.")


def load_words(settings: dict) -> str:
    """The load average while measuring, with 'under load' when other work ran beside it (the
    measurement itself keeps about one CPU busy: its load is taken off the load at the end)."""
    before, after = settings.get("load_before"), settings.get("load_after")
    if before is None or after is None:
        return ""
    loaded = max(before, after - 1.0) >= 0.5
    return (f", {'under load: ' if loaded else ''}load average {before:.1f} at the start and "
            f"{after:.1f} at the end")
