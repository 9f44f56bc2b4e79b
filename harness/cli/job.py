"""``seq-harness job``: the main job — every suite over the registry, the latency grids of its
scale, and one report (harness.job.pipeline); ``--resume DIR`` continues an interrupted job."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from harness.cli.common import CHECK_FAILED, UsageError, positive, resumable, usage_errors
from harness.conformance.options import (
    SELECTION,
    SHARD,
    SKIP_IMPL,
    SKIP_SUITE,
    SUITE,
    add_options,
)
from harness.conformance.suites import suite_files
from harness.job.pipeline import JobRequest, run_job
from harness.job.scales import BUDGET_S, SCALES
from harness.records import JOB_FILE
from harness.registry import choose


def add_parser(commands) -> None:
    job = commands.add_parser("job", help="the main job: every suite, the latency grids of the "
                              "scale, one report")
    add_options(job.add_argument, (*SELECTION, SKIP_IMPL, SUITE, SKIP_SUITE, SHARD))
    job.add_argument("--scale", default="ci", choices=tuple(SCALES),
                     help="ci: the quick scale of every suite, the standard, varlen-small "
                     "and ops-small grids; full: the heavy suite variants, standard, varlen, "
                     "deepbench, long and ops-target grids; gpu: the quick suites and the "
                     "standard grid over torch's "
                     "modules, the fast, CUDA-graph and compiled entries (with --device cuda) "
                     "(default ci)")
    job.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                     help="device the implementations run on (the reference stays on the CPU)")
    job.add_argument("--tf32", default="off", choices=("off", "on"),
                     help="TF32 products on CUDA (default off: IEEE float32)")
    job.add_argument("--out", metavar="DIR", default="results/main",
                     help="the job's directory: checks/, timings/, job.json (default "
                     "results/main)")
    job.add_argument("--report", metavar="PATH",
                     help="the report (default DIR/README.md)")
    job.add_argument("-n", "--workers", type=int, default=2, metavar="N",
                     help="worker processes running the checks (default 2)")
    job.add_argument("--threads", type=int, default=1, metavar="N",
                     help="torch threads per check and per timing (default 1)")
    job.add_argument("--check-timeout", type=float, default=120.0, metavar="SECONDS",
                     help="seconds a check may take (default 120)")
    job.add_argument("--progress", type=float, default=30.0, metavar="SECONDS",
                     help="every SECONDS, a line with what is done of all and an ETA (default "
                     "30; 0: none)")
    job.add_argument("--overwrite", action="store_true",
                     help="replace an earlier job in DIR")
    job.add_argument("--resume", metavar="DIR",
                     help="continue the interrupted job in DIR with its own options (and "
                     "--budget, when given)")
    job.add_argument("--budget", type=float, metavar="SECONDS",
                     help="the whole job's time: the checks run in full, the timings take what "
                     "is left and the ones it does not reach are recorded as left out (default "
                     + ", ".join(f"{scale} {budget:g}" if budget else f"{scale} none"
                                 for scale, budget in BUDGET_S.items())
                     + "; 0: no limit)")


def request_of(args: argparse.Namespace, argv: list[str]) -> JobRequest:
    if args.budget is not None and args.budget < 0:
        raise UsageError(f"--budget {args.budget:g} is invalid; expected seconds > 0, or 0 for "
                         "no limit")
    if args.resume:
        if without_budget(argv) != ["job", "--resume", args.resume]:
            raise UsageError("--resume DIR takes no other options but --budget: the job "
                             "continues with its own")
        with usage_errors():
            saved = JobRequest.saved(args.resume)
            return saved if args.budget is None else replace(saved, budget_s=args.budget or None)
    positive("--workers", args.workers)
    positive("--threads", args.threads)
    positive("--check-timeout", args.check_timeout, integer=False)
    if args.progress < 0:
        raise UsageError(f"--progress {args.progress:g} is invalid; expected 0 (none) or more "
                         "seconds")
    out = Path(args.out)
    if (out / JOB_FILE).exists() and not args.overwrite:
        raise UsageError(f"--out {str(out)!r} holds a job already: --overwrite replaces it, "
                         f"--resume {str(out)!r} continues it")
    with usage_errors():
        choose(impls=args.impl, impl_classes=args.impl_class, family=args.family,
               skipped=args.skip_impl)
        suite_files(args.suite, args.skip_suite)
        return JobRequest(
            out=str(out), scale=args.scale, impls=tuple(args.impl),
            skipped_impls=tuple(args.skip_impl),
            impl_classes=tuple(args.impl_class), family=args.family, suites=tuple(args.suite),
            skipped=tuple(args.skip_suite), workers=args.workers,
            threads=args.threads, check_timeout=args.check_timeout, report=args.report,
            progress_s=args.progress, device=args.device, tf32=args.tf32,
            budget_s=BUDGET_S[args.scale] if args.budget is None else args.budget or None,
            shard=str(args.shard) if args.shard else None,
            argv=tuple(argv))


def without_budget(argv: list[str]) -> list[str]:
    """The command line less its --budget option (the one a resumed job may change)."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--budget":
            skip = True
        elif not token.startswith("--budget="):
            kept.append(token)
    return kept


def command(args: argparse.Namespace, argv: list[str]) -> int:
    request = request_of(args, argv)
    torch.set_num_threads(request.threads)
    with resumable("job", Path(request.out)):
        code = run_job(request, resume=bool(args.resume),
                       resumed_by=["seq-harness", *argv] if args.resume else (),
                       emit=lambda line: print(line, flush=True))
    sys.stdout.flush()
    return CHECK_FAILED if code else 0
