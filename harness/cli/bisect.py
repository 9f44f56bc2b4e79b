"""``seq-harness bisect``: the first commit between a good and a bad one that made an
implementation slower (timed with the gate's statistics) or broke a check (``--check``).

Exit 0 with the first bad commit found, 1 when a step could not decide (the range it narrowed
to is printed), 2 on bad input (refs that name no commit, good not before bad, ...)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from harness.cli.common import (
    CHECK_FAILED,
    UsageError,
    add_look_options,
    add_timing_options,
    check_look_options,
    check_phases,
    check_verdict_options,
    positive,
    usage_errors,
)


def add_parser(commands) -> None:
    bisect = commands.add_parser(
        "bisect", help="find the commit that made an implementation slower or broke a check")
    where = bisect.add_argument_group("the commits")
    where.add_argument("--good", required=True, metavar="REF",
                       help="a commit where the implementation was fast (or the check passed)")
    where.add_argument("--bad", required=True, metavar="REF",
                       help="a later commit where it is slow (or the check fails); good must "
                            "be on its first-parent line")
    where.add_argument("--repo", default=".", metavar="PATH",
                       help="the git repository whose commits hold the implementation; each "
                            "commit's worktree goes first on the PYTHONPATH (default: the "
                            "current directory's)")
    what = bisect.add_argument_group("what is judged (one implementation)")
    what.add_argument("--impl", metavar="NAME", help="registry entry")
    what.add_argument("--impl-class", metavar="MODULE:CLASS",
                      help="class, importable at every commit of the range")
    what.add_argument("--family", metavar="FAMILY", help="family of the --impl-class class")
    what.add_argument("--check", metavar="SUITE::CHECK",
                      help="run this check at each commit instead of timing, e.g. "
                           "shapes::values_match_reference")
    timing = bisect.add_argument_group("timing (without --check): as the gate's options")
    add_timing_options(timing.add_argument,
                       workers_help="fresh worker processes per commit in a step's first look "
                       "(default 10)")
    add_look_options(timing.add_argument, budget_help="no look of a step starts after this "
                     "many seconds of its measuring (default 900)")
    timing.add_argument("--alpha", type=float, default=0.01, metavar="P",
                        help="significance level after Holm's correction (default 0.01)")
    timing.add_argument("--min-effect", type=float, default=0.03, metavar="FRACTION",
                        help="smallest slowdown that counts (default 0.03: 3%%)")
    bisect.add_argument("--threads", type=int, default=1, metavar="N")
    bisect.add_argument("--out", metavar="DIR",
                        help="where each step's records and bisect.json go "
                             "(default: results/bisect-RUN_ID)")
    bisect.add_argument("--db", metavar="URL",
                        help="also add every step's runs to this history database "
                             "(as seq-harness history add --db URL)")


def implementation_args(args: argparse.Namespace) -> tuple[str, ...]:
    if (args.impl is None) == (args.impl_class is None):
        raise UsageError("bisect needs exactly one of --impl NAME or --impl-class MODULE:CLASS")
    if args.family and not args.impl_class:
        raise UsageError(f"--family {args.family!r} is only meaningful with --impl-class")
    if args.impl is not None:
        return ("--impl", args.impl)
    return ("--impl-class", args.impl_class, *(("--family", args.family) if args.family else ()))


def timing_judge(args, commits, out: Path, info):
    """The gate's request for the implementation as it is at the good commit (its class is
    imported from that commit's worktree, to know its name and capabilities)."""
    import contextlib

    from harness.gate.bisect_steps import TimingJudge
    from harness.gate.run import GateRequest
    from harness.gate.sequential import Schedule
    from harness.gate.worktree import worktree_at
    from harness.latency.grids import load_grid
    from harness.registry import choose_one

    with usage_errors(), worktree_at(commits.repo, commits.good, option="--good") as tree, \
            contextlib.chdir(tree):  # --impl-class imports from the current directory
        spec = choose_one(impl=args.impl, impl_class=args.impl_class, family=args.family)
    with usage_errors():
        request = GateRequest(base=spec, head=spec, ref=None, grid=load_grid(args.grid),
                              phases=tuple(args.phase), workers=args.workers,
                              min_run_time=args.min_run_time, threads=args.threads,
                              alpha=args.alpha, min_effect=args.min_effect,
                              schedule=Schedule(args.workers, args.step, args.max_workers),
                              budget_s=args.budget)
        request.validate()
    return TimingJudge(commits.repo, request, args.min_effect, out, info,
                       progress=lambda line: print(f"    {line}", flush=True))


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.gate.bisect import result_lines, search, step_lines, steps_needed
    from harness.gate.bisect_steps import CheckJudge, parse_check
    from harness.gate.commits import first_parent_range, repository
    from harness.records import RunInfo

    impl_args = implementation_args(args)
    positive("--threads", args.threads)
    if args.check is None:
        check_verdict_options(args)
        check_look_options(args)
        positive("--min-run-time", args.min_run_time, integer=False)
        check_phases(args.phase)
    with usage_errors():
        check = parse_check(args.check) if args.check is not None else None
        commits = first_parent_range(repository(args.repo), args.good, args.bad)
    info = RunInfo.collect(argv=["seq-harness", *argv])
    out = (Path(args.out) if args.out else Path("results") / f"bisect-{info.run_id}").resolve()
    if check is not None:
        judge = CheckJudge(commits.repo, impl_args, *check, threads=args.threads, out=out)
    else:
        judge = timing_judge(args, commits, out, info)
    out.mkdir(parents=True, exist_ok=True)
    what = f"{args.check} of" if check else "the timing of"
    print(f"seq-harness bisect: {what} {' '.join(impl_args[1:2])}: {len(commits.commits)} "
          f"commits after good {commits.good[:10]} up to bad {commits.bad[:10]} (first "
          f"parents), at most {steps_needed(len(commits.commits))} steps", flush=True)
    found = search(commits, judge,
                   progress=lambda step: print("\n".join(step_lines(step)), flush=True))
    print("\n".join(result_lines(found)))
    (out / "bisect.json").write_text(json.dumps(
        {"good": commits.good, "bad": commits.bad, "commits": list(commits.commits),
         "steps": [asdict(s) for s in found.steps], "last_good": found.last_good,
         "suspects": list(found.suspects), "first_bad": found.first_bad}, indent=2) + "\n")
    if args.db is not None:
        record_history(args.db, out, commits.repo)
    return 0 if found.found else CHECK_FAILED


def record_history(url: str, out: Path, repo: Path) -> None:
    """Every step's runs (each a run.json at its commit of ``repo``) into the history
    database."""
    from harness.history import HistoryError, add_directories, open_database

    with usage_errors(HistoryError, ValueError):
        engine = open_database(url, create=True)
        try:
            added = add_directories(engine, [out], checkout=repo)
        finally:
            engine.dispose()
    print(f"seq-harness bisect: history: {added.line()}")
