"""The ``seq-harness`` command: list the registry, run the suites, render reports.

Exit codes: 0 every check passed; 1 a check failed; 2 bad input (one line on stderr naming the bad
value and the valid choices); 3 the harness itself broke. ``run`` drives pytest in-process
through the same plugin a plain ``pytest`` run uses, so both accept the same options.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

USAGE_ERROR = 2
INTERNAL_ERROR = 3


class UsageError(Exception):
    """Bad input: reported as one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the bad value (and exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> Parser:
    parser = Parser(prog="seq-harness", description="Conformance and benchmark kit for RNNs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    commands.add_parser("list", help="the registry: implementations, families, capabilities")

    run = commands.add_parser("run", help="run the suites; write records and a report")
    run.add_argument("--impl", action="append", default=[], metavar="NAME",
                     help="registry entry (repeatable); default: the whole registry")
    run.add_argument("--impl-class", action="append", default=[], metavar="MODULE:CLASS",
                     help="your nn.Module class with torch's RNN/LSTM/GRU contract")
    run.add_argument("--family", metavar="FAMILY",
                     help="family of --impl-class: rnn_tanh, rnn_relu, lstm, gru")
    run.add_argument("--suite", action="append", default=[], metavar="NAME",
                     help="suite to run (repeatable); default: all")
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                     help="device the implementations run on (default: cpu)")
    run.add_argument("--scale", default="ci", choices=("ci", "full"),
                     help="ci: quick grids (default); full: also the heavy variants")
    run.add_argument("--threads", type=int, default=1, metavar="N",
                     help="torch threads (default 1, recorded in run.json)")
    run.add_argument("--out", metavar="DIR", help="results directory (default: results/RUN_ID)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the records of an earlier run in --out")
    run.add_argument("--report", metavar="PATH",
                     help="also write the markdown report here (it is always in DIR/report.md)")
    run.add_argument("-k", dest="keyword", metavar="EXPR",
                     help="only checks whose pytest id matches EXPR (as pytest -k)")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's per-check output")

    bench = commands.add_parser("bench", help="time implementations in fresh worker processes")
    bench.add_argument("--impl", action="append", default=[], metavar="NAME",
                       help="registry entry (repeatable); default: the whole registry")
    bench.add_argument("--impl-class", action="append", default=[], metavar="MODULE:CLASS",
                       help="your nn.Module class with torch's RNN/LSTM/GRU contract")
    bench.add_argument("--family", metavar="FAMILY", help="family of --impl-class")
    bench.add_argument("--grid", action="append", default=[], metavar="NAME|FILE",
                       help="smoke (default), standard, deepbench, varlen, or a JSON grid file "
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
    bench.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
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
    bench.add_argument("--report", metavar="PATH",
                       help="also write the markdown report here (it is always in DIR/report.md)")

    profiler = commands.add_parser(
        "profile", help="profile one implementation on one case: traces and the top operators")
    profiler.add_argument("impl", nargs="?", metavar="IMPL",
                          help="registry entry (see seq-harness list); or --impl-class")
    profiler.add_argument("--impl-class", metavar="MODULE:CLASS",
                          help="your nn.Module class with torch's RNN/LSTM/GRU contract")
    profiler.add_argument("--family", metavar="FAMILY",
                          help="family of --impl-class: rnn_tanh, rnn_relu, lstm, gru")
    profiler.add_argument("--shape", default="100,64,512,512", metavar="T,B,I,H[,L]",
                          help="seq_len, batch, input_size, hidden_size[, num_layers] "
                          "(default: 100,64,512,512)")
    profiler.add_argument("--phase", default="inference", metavar="PHASE",
                          help="inference (default), forward or forward_backward")
    profiler.add_argument("--steps", type=int, default=5, metavar="N",
                          help="profiled steps (default 5)")
    profiler.add_argument("--warmup", type=int, default=2, metavar="N",
                          help="steps run before the profiler starts (default 2)")
    profiler.add_argument("--top", type=int, default=20, metavar="N",
                          help="rows of the operator tables (default 20)")
    profiler.add_argument("--threads", type=int, default=1, metavar="N",
                          help="torch threads (default 1)")
    profiler.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                          help="device the implementation runs on (default: cpu)")
    profiler.add_argument("--out", metavar="DIR",
                          help="profile directory (default: results/profile-RUN_ID)")
    profiler.add_argument("--overwrite", action="store_true",
                          help="replace an earlier profile in --out")

    report = commands.add_parser("report", help="render the markdown report of results")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="results directories")
    report.add_argument("--output", metavar="PATH",
                        help="markdown file to write (default: DIR/report.md for one DIR)")
    report.add_argument("--strict", action="store_true",
                        help="exit 1 when a record in the results failed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        command = {"list": cmd_list, "run": cmd_run, "bench": cmd_bench,
                   "profile": cmd_profile, "report": cmd_report}[args.command]
        return command(args, argv)
    except UsageError as error:
        print(f"seq-harness: error: {error}", file=sys.stderr)
        return USAGE_ERROR


def cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    from tabulate import tabulate

    from harness.registry import Registry

    registry = Registry.load()
    rows = []
    for spec in registry.specs.values():
        caps = spec.capabilities
        claims = [name for name in ("packed", "lengths", "bidirectional", "multi_layer",
                                    "batch_first", "proj_size", "dropout", "unbatched")
                  if getattr(caps, name) and (name != "proj_size" or spec.fam.supports_proj)]
        rows.append([spec.name, spec.family, ", ".join(claims),
                     ", ".join(sorted(caps.dtypes)), ", ".join(sorted(caps.devices)),
                     spec.description])
    print(tabulate(rows, headers=["name", "family", "capabilities", "dtypes", "devices",
                                  "description"]))
    for name, why in registry.broken.items():
        print(f"broken entry point {name}: {why}")
    return 0


def prepare_out(out: Path, *, overwrite: bool) -> None:
    from harness.records import RECORDS_FILE, RUN_FILE

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; expected a directory")
    if (out / RECORDS_FILE).exists() or (out / RUN_FILE).exists():
        if not overwrite:
            raise UsageError(
                f"--out {str(out)!r} already holds a run; choose another directory or "
                "pass --overwrite"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    import pytest
    import torch

    from harness.records import RunInfo, iter_records, write_run_info
    from harness.report import write_report
    from harness.selection import choose, suite_files

    try:
        files = suite_files(args.suite)
        chosen = choose(impls=args.impl, impl_classes=args.impl_class, family=args.family)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    if not chosen.specs and not chosen.broken:
        raise UsageError("no implementations are installed in the seq_harness.impls group")

    if args.threads < 1:
        raise UsageError(f"--threads {args.threads} is invalid; expected 1 or more")
    torch.set_num_threads(args.threads)
    info = RunInfo.collect(argv=["seq-harness", *argv])
    out = Path(args.out) if args.out else Path("results") / info.run_id
    prepare_out(out, overwrite=args.overwrite)
    write_run_info(out, info)

    pytest_args = [str(f) for f in files]
    pytest_args += ["--results-dir", str(out), "--device", args.device, "--scale", args.scale,
                    "--threads", str(args.threads),
                    "-p", "no:cacheprovider",
                    # harness is imported before pytest starts, so its plugin is not rewritten.
                    "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest_args += ["-v", "--tb=short"] if args.verbose else ["-q", "--tb=no", "-rN"]
    for name in args.impl:
        pytest_args += ["--impl", name]
    for path in args.impl_class:
        pytest_args += ["--impl-class", path]
    if args.family:
        pytest_args += ["--family", args.family]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    code = int(pytest.main(pytest_args))

    records = list(iter_records(out))
    if args.report:
        write_report([out], args.report)
    print(failure_lines(records), end="")
    print(summary_line(records, out, args.report))
    if code == int(pytest.ExitCode.NO_TESTS_COLLECTED) or (code == 0 and not records):
        print("seq-harness: error: no checks matched the selection", file=sys.stderr)
        return USAGE_ERROR
    if code == int(pytest.ExitCode.USAGE_ERROR):
        return USAGE_ERROR
    if code in (int(pytest.ExitCode.OK), int(pytest.ExitCode.TESTS_FAILED)):
        failed = any(r.outcome == "failed" for r in records)
        return 1 if failed or code == int(pytest.ExitCode.TESTS_FAILED) else 0
    return INTERNAL_ERROR


def failure_lines(records, limit: int = 15) -> str:
    """The failing checks, one line each (implementation, suite, check, how many cases)."""
    from collections import Counter

    failing = Counter((r.impl, r.suite, r.check) for r in records if r.outcome == "failed")
    lines = [f"FAILED {impl} · {suite} · {check}: {n} case{'s' if n > 1 else ''}"
             for (impl, suite, check), n in list(failing.items())[:limit]]
    if len(failing) > limit:
        lines.append(f"... and {len(failing) - limit} more failing checks (see the report)")
    return "".join(line + "\n" for line in lines)


def summary_line(records, out: Path, extra_report: str | None) -> str:
    from collections import Counter

    from harness.records import OUTCOMES

    counts = Counter(r.outcome for r in records)
    parts = ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)
    report = out / "report.md"
    where = f"{report}" + (f" and {extra_report}" if extra_report else "")
    return f"seq-harness: {len(records)} checks ({parts}); report: {where}"


def positive(name: str, value, *, integer: bool = True) -> None:
    if value is not None and (value <= 0 or (integer and int(value) != value)):
        kind = "an integer >= 1" if integer else "a positive number"
        raise UsageError(f"{name} {value} is invalid; expected {kind}")


def cmd_bench(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from harness import bench
    from harness.records import RunInfo, write_run_info
    from harness.report import write_report
    from harness.selection import choose
    from harness.timing import PHASES

    for name in ("workers", "threads"):
        positive(f"--{name}", getattr(args, name))
    positive("--min-run-time", args.min_run_time, integer=False)
    positive("--job-timeout", args.job_timeout, integer=False)
    for phase in args.phase:
        if phase not in PHASES:
            raise UsageError(f"--phase {phase!r} is invalid; valid: {', '.join(PHASES)}")
    try:
        grids = [bench.load_grid(name) for name in dict.fromkeys(args.grid or ["smoke"])]
        chosen = choose(impls=args.impl, impl_classes=args.impl_class, family=args.family)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    flags = {"on": (True,), "off": (False,), "both": (True, False)}[args.cudnn_benchmark]
    plans = [bench.Plan(
        specs=chosen.specs, grid=grid, phases=tuple(args.phase) or grid.phases,
        workers=args.workers or grid.workers, min_run_time=args.min_run_time or grid.min_run_time,
        threads=args.threads, device=args.device, cudnn_benchmark=flags,
        memory=not args.no_memory,
    ) for grid in grids]
    for plan in plans:
        if not plan.tasks():
            raise UsageError(f"nothing to time: grid {plan.grid.name!r} covers none of the "
                             "selected implementations (see its families and their "
                             "capabilities)")
    torch.set_num_threads(args.threads)
    if args.selfcheck is not None:
        positive("--selfcheck", args.selfcheck)
        return selfcheck(plans[0], rounds=args.selfcheck)
    info = RunInfo.collect(argv=["seq-harness", *argv])
    out = Path(args.out) if args.out else Path("results") / f"bench-{info.run_id}"
    prepare_out(out, overwrite=args.overwrite)
    write_run_info(out, info)
    if args.device == "cuda" and not torch.cuda.is_available():
        records = bench.skip_all(plans, out, run_id=info.run_id, why="CUDA is not available")
        write_report([out], out / "report.md")
        print(f"seq-harness bench: skipped {len(records)} timings: CUDA is not available; "
              f"report: {out / 'report.md'}")
        return 0
    records = []
    for plan in plans:
        print(f"seq-harness bench: grid {plan.grid.name}, {len(plan.tasks())} tasks x "
              f"{plan.workers} worker processes, {plan.threads} thread(s); records in "
              f"{out / 'records.jsonl'}")
        records += bench.run(plan, out, run_id=info.run_id, job_timeout_s=args.job_timeout,
                             progress=print)
    (out / "benchmark.json").write_text(json.dumps(bench.pytest_benchmark_json(records, info),
                                                   indent=1))
    write_report([out], out / "report.md")
    if args.report:
        write_report([out], args.report)
    failed = [r for r in records if r.outcome == "failed"]
    print(f"seq-harness bench: {len(records)} timings, {len(failed)} failed; report: "
          f"{out / 'report.md'}; pytest-benchmark JSON: {out / 'benchmark.json'}")
    return 1 if failed else 0


def cmd_profile(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.profiling import ProfileError, ProfileRequest, parse_shape, profile, resolve_spec
    from harness.records import new_run_id

    try:
        spec = resolve_spec(args.impl, args.impl_class, args.family)
        request = ProfileRequest(
            spec, parse_shape(args.shape, device=args.device), phase=args.phase,
            steps=args.steps, warmup=args.warmup, threads=args.threads, top=args.top,
        )
        out = Path(args.out) if args.out else Path("results") / f"profile-{new_run_id()}"
        result = profile(request, out, overwrite=args.overwrite, argv=["seq-harness", *argv])
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    except ProfileError as error:  # the implementation failed: one line, exit 1
        print(f"seq-harness: error: {error}", file=sys.stderr)
        return 1
    print(f"seq-harness: profile of {spec.name} ({request.phase}, {request.case.id}) in "
          f"{result.report}; traces: {result.trace} (Perfetto) and {result.tb_dir} (TensorBoard)")
    return 0


def selfcheck(plan, *, rounds: int) -> int:
    """Does the harness measure what a plain Timer measures? Prints the figures."""
    import statistics

    from harness.timing import timer_agreement

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


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.records import ResultsError, read_run_info
    from harness.report import write_report

    if args.output is None and len(args.dirs) > 1:
        raise UsageError("several results directories need --output PATH for the merged report")
    try:
        for directory in args.dirs:
            read_run_info(directory)
        output = Path(args.output) if args.output else Path(args.dirs[0]) / "report.md"
        path = write_report(args.dirs, output)
    except ResultsError as error:
        raise UsageError(str(error)) from None
    print(f"seq-harness: report written to {path}")
    if args.strict:
        from harness.records import iter_records

        failed = sum(r.outcome == "failed" for d in args.dirs for r in iter_records(d))
        if failed:
            print(f"seq-harness: {failed} failed records", file=sys.stderr)
            return 1
    return 0
