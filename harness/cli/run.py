"""``seq-harness run``: the suites over the registry (or the named implementations), with records
and a report; ``--resume DIR`` continues an interrupted run with its own options."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from harness.cli.common import USAGE_ERROR, UsageError, prepare_out, resumed, usage_errors
from harness.conformance.alone import describe
from harness.conformance.handoff import read_handoff, write_pending
from harness.conformance.options import SELECTION, SKIP_IMPL, SUITES, add_options
from harness.conformance.override import Override
from harness.conformance.session import SuiteRun, exit_code, lines_for, run_suites
from harness.conformance.suites import suite_files, thorough_names
from harness.records import (
    AS_TORCH,
    FAILED,
    OUTCOMES,
    new_run_id,
    read_run_info,
    write_run_info,
)
from harness.registry.names import confirmed


def add_parser(commands) -> None:
    run = commands.add_parser("run", help="run the suites; write records and a report")
    add_options(run.add_argument, (*SELECTION, SKIP_IMPL, *SUITES))
    run.add_argument("-n", "--workers", type=int, default=min(2, os.cpu_count() or 1),
                     metavar="N",
                     help="worker processes running the checks (pytest-xdist; default 2, or 1 "
                     "on a one-core machine). A crashing implementation costs only its check; 0 "
                     "runs in this process")
    run.add_argument("--resume", metavar="DIR",
                     help="continue the interrupted run in DIR with its own options")
    run.add_argument("--out", metavar="DIR", help="results directory (default: results/RUN_ID)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the records of an earlier run in --out")
    run.add_argument("--report", metavar="PATH",
                     help="also write the markdown report here (it is always in DIR/report.md)")
    run.add_argument("--no-report", action="store_true",
                     help="the records only, no DIR/report.md (`seq-harness report DIR` renders "
                     "it later, e.g. merged with other runs)")
    run.add_argument("--confirm-alone", type=int, default=5, metavar="N",
                     help="run up to N failed checks again, each alone in a fresh process, and "
                     "say in their records whether they fail alone too (default 5; 0: off)")
    run.add_argument("--maxfail", type=int, default=0, metavar="N",
                     help="stop after N failed checks (default 0: run every check); "
                     "--resume DIR then runs the rest")
    run.add_argument("-k", dest="keyword", metavar="EXPR",
                     help="only checks whose pytest id matches EXPR (as pytest -k)")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's per-check output")


def validate(args: argparse.Namespace) -> None:
    if args.threads < 1:
        raise UsageError(f"--threads {args.threads} is invalid; expected 1 or more")
    if args.workers < 0:
        raise UsageError(f"--workers {args.workers} is invalid; expected 0 or more")
    if args.check_timeout < 0:
        raise UsageError(f"--check-timeout {args.check_timeout:g} is invalid; expected 0 "
                         "(no limit) or more seconds")
    with usage_errors():
        Override(args.atol, args.rtol)
    if args.maxfail < 0:
        raise UsageError(f"--maxfail {args.maxfail} is invalid; expected 0 (run every check) "
                         "or more failed checks")
    if args.confirm_alone < 0:
        raise UsageError(f"--confirm-alone {args.confirm_alone} is invalid; expected 0 (off) "
                         "or more failed checks")


def command(args: argparse.Namespace, argv: list[str], parser=None) -> int:
    if args.resume:
        args, argv = resumed(args, argv, parser, command="run")
    with usage_errors():
        # No --suite: the default suites only (an opt-in suite's file is not even collected).
        files = suite_files(args.suite, args.skip_suite, every=args.all_suites)
        # Bad input is one line before anything runs. Where the names are confirmed without
        # importing anything, worker processes resolve them and start at once (they import
        # torch; this process then never does: harness.registry.names).
        if not args.workers or not confirmed(impls=args.impl, impl_classes=args.impl_class,
                                             family=args.family, skipped=args.skip_impl):
            from harness.registry import choose

            chosen = choose(impls=args.impl, impl_classes=args.impl_class, family=args.family,
                            skipped=args.skip_impl)
            if not chosen.specs and not chosen.broken:
                raise UsageError("no implementations are installed in seq_harness.impls")
    validate(args)
    if args.resume:
        out = Path(args.resume)
    else:
        run_id = new_run_id()  # run.json: described by the process that runs the checks
        out = Path(args.out) if args.out else Path("results") / run_id
        prepare_out(out, overwrite=args.overwrite)
        write_pending(out, run_id, ["seq-harness", *argv])
    outcome = run_suites(SuiteRun(
        files=tuple(files), out=out, impls=tuple(args.impl), impl_classes=tuple(args.impl_class),
        skipped_impls=tuple(args.skip_impl),
        family=args.family, device=args.device, scale=args.scale, threads=args.threads,
        tf32=args.tf32, check_timeout=args.check_timeout, workers=args.workers,
        skipped=tuple(args.skip_suite), keyword=args.keyword,
        # the files hold the chosen suites: a named measuring one is not left out again
        all_suites=args.all_suites or bool(args.suite),
        verbose=args.verbose, resume=bool(args.resume), confirm_alone=args.confirm_alone,
        atol=args.atol, rtol=args.rtol, rounding=args.rounding,
        diagnosis=not args.no_diagnosis, shard=str(args.shard) if args.shard else None,
        maxfail=args.maxfail, report=False,  # written once, below, with the re-runs' verdicts
        warm_report=not args.no_report))
    refused = read_handoff(out)
    if refused is not None and refused.error is not None:  # a worker met bad input
        if not args.resume:
            shutil.rmtree(out, ignore_errors=True)
        raise UsageError(refused.error)
    for line in describe(outcome.confirmed):
        print(line)
    stopped = None
    if args.maxfail and sum(r.outcome == FAILED for r in outcome.records) >= args.maxfail:
        stopped = (f"--maxfail {args.maxfail} reached: the checks not run by then are left for "
                   f"`seq-harness run --resume {out}`")
        write_run_info(out, replace(read_run_info(out), stopped=stopped))
    reports = [] if args.no_report else [out / "report.md", *([args.report] if args.report else [])]
    for path in reports:
        try:
            from harness.report import write_report  # imported while the checks ran (Warmup)

            write_report([out], path)
        except Exception as error:  # the records are on disk: a failed report must not hide them
            print(f"seq-harness: could not write the report {path}: {error}", file=sys.stderr)
    for line in lines_for(outcome.records):
        print(line)
    counts = Counter(r.outcome for r in outcome.records)
    parts = ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES
                      if o != AS_TORCH or counts.get(o, 0))  # as torch: only on a device
    where = ("none (--no-report)" if args.no_report
             else f"{out / 'report.md'}" + (f" and {args.report}" if args.report else ""))
    left_out = [] if args.suite or args.all_suites else thorough_names()
    if left_out:
        print(f"seq-harness: the quick verdict; the measuring suites ({', '.join(left_out)}) "
              "were not run: --all-suites runs them too, as `seq-harness job` does")
    print(f"seq-harness: {len(outcome.records)} checks ({parts}); report: {where}")
    if stopped:
        print(f"seq-harness: {stopped}")
    code = exit_code(outcome, resumed=bool(args.resume), maxfail=args.maxfail)
    if code is None:
        print("seq-harness: error: no checks matched the selection", file=sys.stderr)
        return USAGE_ERROR
    return code
