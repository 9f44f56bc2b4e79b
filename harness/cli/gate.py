"""``seq-harness gate``: base and head timed interleaved in fresh processes, in looks until
every timing is decided (harness.gate.sequential); exit 1 on a regression, 2 when a timing is
still undecided when processes or budget run out (INCONCLUSIVE) or the first look could not
decide anything. ``--confirm N`` runs the gate again while its regressions wait for N gates in a
row (harness.gate.confirm)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from harness.cli.common import (
    CHECK_FAILED,
    UsageError,
    add_look_options,
    add_timing_options,
    add_verdict_options,
    check_look_options,
    check_phases,
    check_verdict_options,
    positive,
    usage_errors,
)
from harness.cli.compare import verdict_exit
from harness.gate.compare import Summary, gate_dirs
from harness.gate.confirm import Streaks, another_gate, final_status, gate_dir, sentence
from harness.gate.run import GateRequest, NothingTimed, measure_sides
from harness.gate.sequential import Schedule
from harness.gate.verdicts_file import write_verdicts
from harness.latency.grids import load_grid
from harness.records import RunInfo
from harness.registry import choose_one
from harness.report.gate import gate_summary, publish


def add_parser(commands) -> None:
    gate = commands.add_parser(
        "gate", help="time base and head interleaved in fresh processes; exit 1 on regression")
    side = gate.add_argument_group("what is compared (one base option, one head option)")
    side.add_argument("--base-impl", metavar="NAME", help="registry entry as the baseline")
    side.add_argument("--base-impl-class", metavar="MODULE:CLASS", help="class as the baseline")
    side.add_argument("--base-impl-fn", dest="base_impl_class", metavar="MODULE:FUNCTION",
                      help="op as the baseline (a matrix-state family)")
    side.add_argument("--base-ref", metavar="GIT_REF",
                      help="the head implementation as it is at GIT_REF (a temporary worktree)")
    side.add_argument("--head-impl", metavar="NAME", help="registry entry under test")
    side.add_argument("--head-impl-class", metavar="MODULE:CLASS", help="class under test")
    side.add_argument("--head-impl-fn", dest="head_impl_class", metavar="MODULE:FUNCTION",
                      help="op under test (a matrix-state family)")
    side.add_argument("--family", metavar="FAMILY",
                      help="family of the --*-impl-class classes or --*-impl-fn ops")
    add_timing_options(gate.add_argument,
                       workers_help="fresh worker processes per side in the first look "
                       "(default 10)")
    add_look_options(gate.add_argument, budget_help="no look starts after this many seconds "
                     "of measuring (default 900)")
    gate.add_argument("--confirm", type=int, default=1, metavar="N",
                      help="a timing is a regression only when N gates in a row say it: the "
                      "gate runs again, with fresh processes, into OUT/confirm-K while every "
                      "gate so far has said it (default 1; 2 gives `history check` the two "
                      "gates against an anchor a cumulative regression takes)")
    gate.add_argument("--threads", type=int, default=1, metavar="N")
    gate.add_argument("--out", metavar="DIR", help="where base/ and head/ records go "
                      "(default: results/gate-RUN_ID)")
    add_verdict_options(gate)


def sides(args: argparse.Namespace):
    """(base spec, head spec, base git ref or None) from the gate's options."""
    bases = [o for o in ("base_impl", "base_impl_class", "base_ref") if getattr(args, o)]
    heads = [o for o in ("head_impl", "head_impl_class") if getattr(args, o)]
    if len(bases) != 1 or len(heads) != 1:
        raise UsageError("gate needs exactly one of --base-impl, --base-impl-class, --base-ref "
                         "and one of --head-impl, --head-impl-class")
    if args.family and not (args.base_impl_class or args.head_impl_class):
        raise UsageError(f"--family {args.family!r} is only meaningful with an --*-impl-class")
    with usage_errors():
        head = choose_one(impl=args.head_impl, impl_class=args.head_impl_class,
                          family=args.family if args.head_impl_class else None)
        if args.base_ref:
            return head, head, args.base_ref
        base = choose_one(impl=args.base_impl, impl_class=args.base_impl_class,
                          family=args.family if args.base_impl_class else None)
    return base, head, None


def command(args: argparse.Namespace, argv: list[str]) -> int:
    check_verdict_options(args)
    check_look_options(args)
    positive("--threads", args.threads)
    positive("--confirm", args.confirm)
    positive("--min-run-time", args.min_run_time, integer=False)
    check_phases(args.phase)
    base, head, ref = sides(args)
    with usage_errors():
        request = GateRequest(base=base, head=head, ref=ref, grid=load_grid(args.grid),
                              phases=tuple(args.phase), workers=args.workers,
                              min_run_time=args.min_run_time, threads=args.threads,
                              alpha=args.alpha, min_effect=args.min_effect,
                              schedule=Schedule(args.workers, args.step, args.max_workers),
                              budget_s=args.budget)
        request.validate()
    info = RunInfo.collect(argv=["seq-harness", *argv])
    out = Path(args.out) if args.out else Path("results") / f"gate-{info.run_id}"
    print(f"seq-harness gate: base {base.name}{f' at {ref}' if ref else ''}, head "
          f"{head.name}; fresh processes per side, interleaved, in looks of "
          f"{', '.join(map(str, request.schedule.looks))} until every timing is decided "
          f"(budget {args.budget:g} s)", flush=True)
    streaks = Streaks()
    while True:
        where = gate_dir(out, streaks.gates + 1)
        if streaks.gates:  # a gate of its own: fresh processes, its own runs
            info = RunInfo.collect(argv=["seq-harness", *argv])
        summary = one_gate(request, args, where, info)
        if summary is None:
            return CHECK_FAILED
        previous, streaks = streaks, streaks.after(summary)
        again = another_gate(summary, streaks, args.confirm)
        said = sentence(streaks, previous, args.confirm, again=again,
                        next_dir=gate_dir(out, streaks.gates + 1))
        publish(gate_summary(summary, alpha=args.alpha, min_effect=args.min_effect)
                + (f"\n\n**Confirmation**: {said}." if said else ""),
                args.output or str(where / "summary.md"))
        if said:
            print(f"seq-harness gate: {said}", flush=True)
        if not again:
            break
    return verdict_exit(replace(summary, status=final_status(summary, streaks, args.confirm)))


def one_gate(request: GateRequest, args: argparse.Namespace, out: Path,
             info: RunInfo) -> Summary | None:
    """One gate into out (base/, head/, gate.json); None when nothing could be timed."""
    try:
        with usage_errors():  # a ref that names no commit
            base_dir, head_dir, progress = measure_sides(
                request, out, info, progress=lambda line: print(line, flush=True))
    except NothingTimed as error:  # e.g. an implementation failed every timing
        print(f"seq-harness: error: {error}", file=sys.stderr)
        return None
    stopped = ("the most, --max-workers" if progress.per_side >= args.max_workers
               else f"the budget of {args.budget:g} s")
    summary = gate_dirs(base_dir, head_dir, progress, min_effect=args.min_effect,
                        stopped=stopped, title=request.title)
    write_verdicts(summary, out, base_ref=request.ref, alpha=args.alpha,
                   min_effect=args.min_effect)
    return summary
