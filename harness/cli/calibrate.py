"""``seq-harness calibrate``: the gate's false-alarm and detection rates on this machine; with
``--drift``, history check's against a slow drift (harness.cli.calibrate_drift)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from harness.cli.calibrate_drift import add_drift_options, check_drift_options, drift_command
from harness.cli.common import (
    UsageError,
    add_verdict_options,
    check_verdict_options,
    positive,
    prepare_out,
    usage_errors,
)
from harness.gate.calibration import CalibrationRequest, measure_pools, rates
from harness.latency.grids import load_grid
from harness.records import ResultsError, RunInfo, read_run_info, write_run_info
from harness.registry import choose_one
from harness.report.calibration import calibration_document


def add_parser(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="false-alarm and detection rates of the gate on this machine")
    calibrate.add_argument("--impl", default="torch-gru", metavar="NAME")
    calibrate.add_argument("--grid", default="gate", metavar="NAME|FILE")
    calibrate.add_argument("--phase", default="inference", metavar="PHASE")
    calibrate.add_argument("--processes", type=int, default=60, metavar="N",
                           help="fresh worker processes measured per variant (default 60)")
    calibrate.add_argument("--per-side", type=int, default=10, metavar="K",
                           help="processes per side in each simulated fixed gate, and in the "
                           "sequential gate's first look (default 10, as gate's --workers)")
    calibrate.add_argument("--step", type=int, default=5, metavar="N",
                           help="processes per side each further sequential look adds "
                           "(default 5, as gate's)")
    calibrate.add_argument("--max-per-side", type=int, default=40, metavar="N",
                           help="the most processes per side of a sequential gate (default "
                           "40, as gate's --max-workers; at most --processes)")
    calibrate.add_argument("--repetitions", type=int, default=1000, metavar="R",
                           help="simulated gates per variant (default 1000)")
    calibrate.add_argument("--slowdown", action="append", type=float, default=[],
                           metavar="FRACTION",
                           help="injected slowdowns (default 0.02 0.03 0.05 0.10)")
    calibrate.add_argument("--min-run-time", type=float, default=0.3, metavar="S")
    calibrate.add_argument("--threads", type=int, default=1, metavar="N")
    calibrate.add_argument("--out", metavar="DIR",
                           help="records and calibration.md (default: results/calibration)")
    calibrate.add_argument("--overwrite", action="store_true")
    calibrate.add_argument("--analyze", action="store_true",
                           help="judge the pools already measured in --out again (e.g. with "
                           "another --alpha or --min-effect) without measuring")
    add_verdict_options(calibrate)
    add_drift_options(calibrate)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    check_verdict_options(args)
    check_drift_options(args)
    if args.drift:
        return drift_command(args, argv)
    for name in ("processes", "per_side", "step", "max_per_side", "repetitions", "threads"):
        positive(f"--{name.replace('_', '-')}", getattr(args, name))
    positive("--min-run-time", args.min_run_time, integer=False)
    with usage_errors():
        request = CalibrationRequest(
            spec=choose_one(impl=args.impl), grid=load_grid(args.grid), phase=args.phase,
            processes=args.processes, per_side=args.per_side, repetitions=args.repetitions,
            slowdowns=tuple(args.slowdown or (0.02, 0.03, 0.05, 0.10)),
            min_run_time=args.min_run_time, threads=args.threads, alpha=args.alpha,
            min_effect=args.min_effect, step=args.step, most=args.max_per_side)
        request.validate()
    out = Path(args.out) if args.out else Path("results") / "calibration"
    if args.analyze:
        try:
            info = read_run_info(out / "A")
        except ResultsError as error:
            raise UsageError(f"--analyze: {error}") from None
        saved = out / "calibration.json"
        seconds = json.loads(saved.read_text())["seconds"] if saved.is_file() else math.nan
    else:
        info = RunInfo.collect(argv=["seq-harness", *argv])
        for label in request.labels:
            prepare_out(out / label, overwrite=args.overwrite)
            write_run_info(out / label, info)
        seconds = measure_pools(request, out, run_id=info.run_id,
                                progress=lambda line: print(line, flush=True))
        (out / "calibration.json").write_text(json.dumps({"seconds": seconds}) + "\n")
    found, sequential, pools = rates(request, out)
    context = (f"`{' '.join(info.argv)}` on {info.machine}, torch {info.torch}, "
               f"{args.threads} thread(s), {info.created}: {request.spec.name}, {args.phase}, "
               f"{request.grid.cases[0].id}."
               + (f" Judged again by `seq-harness {' '.join(argv)}`." if args.analyze else ""))
    text = calibration_document(found, sequential, pools, per_side=args.per_side,
                                repetitions=args.repetitions, alpha=args.alpha,
                                min_effect=args.min_effect, measure_s=seconds,
                                process_s=seconds / sum(len(p.minimums) for p in pools),
                                context=context, looks=request.schedule.looks)
    (out / "calibration.md").write_text(text)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0
