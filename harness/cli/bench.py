"""``seq-harness bench``: time implementations in fresh worker processes over latency grids;
``--resume DIR`` continues an interrupted bench with its own options, timing only what DIR does
not hold yet; ``--selfcheck N`` instead compares the harness' timing with a plain Timer."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from harness.cli.common import (
    CHECK_FAILED,
    UsageError,
    check_phases,
    positive,
    prepare_out,
    resumable,
    resumed,
    usage_errors,
)
from harness.conformance.options import SELECTION, SKIP_IMPL, add_options
from harness.core.precision import TF32_MODES, set_tf32
from harness.core.progress import Progress
from harness.latency.export import pytest_benchmark_json
from harness.latency.grids import LATENCY_GRIDS, load_grid
from harness.latency.jobs import record_key
from harness.latency.peak import PEAK
from harness.latency.plan import Plan
from harness.latency.run import run, skip_all
from harness.latency.samples import partial_failures, timings
from harness.latency.selfcheck import timer_agreement
from harness.records import RunInfo, iter_records, read_run_info, write_run_info
from harness.registry import choose
from harness.report import write_report


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="time implementations in fresh worker processes")
    add_options(bench.add_argument, (*SELECTION, SKIP_IMPL))
    bench.add_argument("--grid", action="append", default=[], metavar="NAME|FILE",
                       help=f"{', '.join(LATENCY_GRIDS)} (default: smoke), or a JSON grid file "
                       "(repeatable: grids run one after the other)")
    bench.add_argument("--phase", action="append", default=[], metavar="PHASE",
                       help="inference, forward, forward_backward (repeatable; default: the "
                       "grid's)")
    bench.add_argument("--workers", type=int, metavar="N",
                       help="fresh worker processes, each timing every task (default: the grid's)")
    bench.add_argument("--min-run-time", type=float, metavar="S",
                       help="seconds of timing per task per worker (default: the grid's)")
    bench.add_argument("--threads", type=int, default=1, metavar="N",
                       help="torch threads per worker (default 1)")
    bench.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    bench.add_argument("--cudnn-benchmark", default="on", choices=("on", "off", "both"),
                       help="torch.backends.cudnn.benchmark on CUDA (both: a factor)")
    bench.add_argument("--tf32", default="off", choices=TF32_MODES,
                       help="TF32 products on CUDA (cuDNN and matmul; default off: the IEEE "
                       "float32 the suites verify; on: torch's cuDNN default); in run.json")
    bench.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    bench.add_argument("--no-peak", action="store_true",
                       help="skip the machine's matmul peak (a few seconds per worker process; "
                       "the report then gives no %% of peak)")
    bench.add_argument("--no-first-call", action="store_true",
                       help="skip the first call of each implementation and shape in a fresh "
                       "process (construction + compile/export + first run: first_call_s)")
    bench.add_argument("--job-timeout", type=float, default=600.0, metavar="S",
                       help="a timing that takes longer is recorded as a timeout")
    bench.add_argument("--selfcheck", type=int, metavar="ROUNDS",
                       help="instead of a run: time the first task with a plain Timer and with "
                       "the harness, interleaved ROUNDS times each in one process, and print "
                       "both medians and their IQR")
    bench.add_argument("--out", metavar="DIR", help="results directory (default: "
                       "results/bench-RUN_ID)")
    bench.add_argument("--overwrite", action="store_true",
                       help="replace the records of an earlier run in --out")
    bench.add_argument("--resume", metavar="DIR",
                       help="continue the interrupted bench in DIR with its own options: what "
                       "it recorded is kept and not timed again")
    bench.add_argument("--progress", type=float, default=30.0, metavar="SECONDS",
                       help="every SECONDS, a line with the timings done of all and an ETA "
                       "(default 30; 0: none)")
    bench.add_argument("--report", metavar="PATH",
                       help="also write the markdown report here (it is always in DIR/report.md)")


def plans(args: argparse.Namespace) -> list[Plan]:
    for name in ("workers", "threads"):
        positive(f"--{name}", getattr(args, name))
    positive("--min-run-time", args.min_run_time, integer=False)
    positive("--job-timeout", args.job_timeout, integer=False)
    check_phases(args.phase)
    with usage_errors():
        grids = [load_grid(name) for name in dict.fromkeys(args.grid or ["smoke"])]
        chosen = choose(impls=args.impl, impl_classes=args.impl_class, family=args.family,
                        skipped=args.skip_impl)
    flags = {"on": (True,), "off": (False,), "both": (True, False)}[args.cudnn_benchmark]
    made = [Plan(
        specs=chosen.specs, grid=grid, phases=tuple(args.phase) or grid.phases,
        workers=args.workers or grid.workers, min_run_time=args.min_run_time or grid.min_run_time,
        threads=args.threads, device=args.device, cudnn_benchmark=flags, tf32=args.tf32,
        memory=not args.no_memory, first_call=not args.no_first_call, peak=not args.no_peak,
    ) for grid in grids]
    for plan in made:
        if not plan.tasks() and not plan.unsupported():
            raise UsageError(f"nothing to time: grid {plan.grid.name!r} covers none of the "
                             "selected implementations (see its families and their "
                             "capabilities)")
    return made


def command(args: argparse.Namespace, argv: list[str], parser=None) -> int:
    if args.resume:
        args, argv = resumed(args, argv, parser, command="bench")
    made = plans(args)
    torch.set_num_threads(args.threads)
    set_tf32(args.tf32)  # before RunInfo.collect: run.json says what the workers ran
    if args.selfcheck is not None:
        positive("--selfcheck", args.selfcheck)
        return selfcheck(made[0], rounds=args.selfcheck)
    if args.progress < 0:
        raise UsageError(f"--progress {args.progress:g} is invalid; expected 0 (none) or more "
                         "seconds")
    done: set[tuple] = set()
    if args.resume:
        out = Path(args.resume)
        info = read_run_info(out)
        done = {record_key(r) for r in iter_records(out)}
    else:
        info = RunInfo.collect(argv=["seq-harness", *argv])
        out = Path(args.out) if args.out else Path("results") / f"bench-{info.run_id}"
        prepare_out(out, overwrite=args.overwrite)
        write_run_info(out, info)
    if args.device == "cuda" and not torch.cuda.is_available():
        records = skip_all(made, out, run_id=info.run_id, why="CUDA is not available")
        write_report([out], out / "report.md")
        print(f"seq-harness bench: skipped {len(records)} timings: CUDA is not available; "
              f"report: {out / 'report.md'}")
        return 0
    records = []
    progress = Progress(max(sum(p.jobs() for p in made) - len(done), 0), "timings",
                        every_s=args.progress or float("inf"), emit=print_now)
    with resumable("bench", out):
        for plan in made:
            print(f"seq-harness bench: grid {plan.grid.name}, {len(plan.tasks())} tasks x "
                  f"{plan.workers} worker processes, {plan.threads} thread(s); records in "
                  f"{out / 'records.jsonl'}", flush=True)
            records += run(plan, out, run_id=info.run_id, job_timeout_s=args.job_timeout,
                           progress=lambda line: (print_now(line), progress.step()), done=done)
    if done:  # the report and the exports cover the whole bench, not only this part
        records = list(iter_records(out))
    (out / "benchmark.json").write_text(json.dumps(pytest_benchmark_json(records, info),
                                                   indent=1))
    write_report([out], out / "report.md")
    if args.report:
        write_report([out], args.report)
    failed = [r for r in records if r.outcome == "failed"]
    noisy = [(key, t.noise) for key, t in timings(records).items()
             if key[0] != PEAK and t.noise]
    for (impl, case_id, phase), why in noisy:
        print(f"noisy: {impl} {phase} {case_id}: {why}")
    for partial in partial_failures(records):
        print(f"failed in some processes only: {partial}")
    print(f"seq-harness bench: {len(records)} timings, {len(failed)} failed, {len(noisy)} "
          f"noisy; report: {out / 'report.md'}; pytest-benchmark JSON: "
          f"{out / 'benchmark.json'}")
    return CHECK_FAILED if failed else 0


def print_now(line: str) -> None:
    print(line, flush=True)


def selfcheck(plan: Plan, *, rounds: int) -> int:
    """Does the harness measure what a plain Timer measures? Prints the figures."""
    if not plan.tasks():
        raise UsageError(f"nothing to time: grid {plan.grid.name!r} has no timing the selected "
                         "implementations can do")
    spec, task = plan.tasks()[0]
    if task.case.lengths is not None:
        raise UsageError("--selfcheck needs a fixed-length shape (the plain call is unpacked)")
    figures = timer_agreement(spec, task, rounds=rounds, threads=plan.threads,
                              min_run_time=plan.min_run_time)
    plain = statistics.median(figures["plain_median_s"])
    harness = statistics.median(figures["harness_median_s"])
    print(f"selfcheck {spec.name} {task.phase} {task.case.id}, {rounds} interleaved rounds, "
          f"{plan.threads} thread(s), min_run_time {plan.min_run_time:g} s")
    for name in ("plain", "harness"):
        medians = ", ".join(f"{m * 1e3:.3f}" for m in figures[f"{name}_median_s"])
        iqr = ", ".join(f"{r:.1%}" for r in figures[f"{name}_iqr_ratio"])
        print(f"  {name:8s} medians ms: {medians}   IQR/median: {iqr}")
    print(f"  harness / plain (median of medians): {harness / plain:.4f}")
    spread = max(figures["harness_median_s"]) / min(figures["harness_median_s"])
    print(f"  harness run-to-run spread of medians: {spread - 1:.2%}")
    return 0
