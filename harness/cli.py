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
    add_selection_options(run)
    run.add_argument("--suite", action="append", default=[], metavar="NAME",
                     help="suite to run (repeatable); default: all")
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                     help="device the implementations run on (default: cpu)")
    run.add_argument("--scale", default="ci", choices=("ci", "full"),
                     help="ci: quick grids (default); full: also the heavy variants")
    run.add_argument("--threads", type=int, default=1, metavar="N",
                     help="torch threads (default 1, recorded in run.json)")
    run.add_argument("-n", "--workers", type=int, default=1, metavar="N",
                     help="worker processes running the checks (pytest-xdist; default 1). A "
                     "crashing implementation costs only its check; 0 runs in this process")
    run.add_argument("--check-timeout", type=float, default=120.0, metavar="S",
                     help="time limit of one check in seconds (default 120; 0: none)")
    run.add_argument("--resume", metavar="DIR",
                     help="continue the interrupted run in DIR with its own options")
    run.add_argument("--out", metavar="DIR", help="results directory (default: results/RUN_ID)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the records of an earlier run in --out")
    run.add_argument("--report", metavar="PATH",
                     help="also write the markdown report here (it is always in DIR/report.md)")
    run.add_argument("--confirm-alone", type=int, default=5, metavar="N",
                     help="run up to N failed checks again, each alone in a fresh process, and "
                     "say in their records whether they fail alone too (default 5; 0: off)")
    run.add_argument("-k", dest="keyword", metavar="EXPR",
                     help="only checks whose pytest id matches EXPR (as pytest -k)")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's per-check output")

    bench = commands.add_parser("bench", help="time implementations in fresh worker processes")
    add_selection_options(bench)
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

    compare = commands.add_parser("compare", help="regressions between two result sets")
    compare.add_argument("base", metavar="BASE", help="results directory of the baseline")
    compare.add_argument("head", metavar="HEAD", help="results directory of the change")
    add_verdict_options(compare)
    compare.add_argument("--allow-mismatch", action="store_true",
                         help="compare runs from different machines or software (flagged)")

    gate = commands.add_parser(
        "gate", help="time base and head interleaved in fresh processes; exit 1 on regression")
    side = gate.add_argument_group("what is compared (one base option, one head option)")
    side.add_argument("--base-impl", metavar="NAME", help="registry entry as the baseline")
    side.add_argument("--base-impl-class", metavar="MODULE:CLASS", help="class as the baseline")
    side.add_argument("--base-ref", metavar="GIT_REF",
                      help="the head implementation as it is at GIT_REF (a temporary worktree)")
    side.add_argument("--head-impl", metavar="NAME", help="registry entry under test")
    side.add_argument("--head-impl-class", metavar="MODULE:CLASS", help="class under test")
    side.add_argument("--family", metavar="FAMILY", help="family of the --*-impl-class classes")
    gate.add_argument("--grid", default="gate", metavar="NAME|FILE",
                      help="shapes to time (default: gate, T=50 B=8 I=H=128)")
    gate.add_argument("--phase", action="append", default=[], metavar="PHASE",
                      help="inference, forward, forward_backward (default: the grid's)")
    gate.add_argument("--workers", type=int, default=10, metavar="N",
                      help="fresh worker processes per side (default 10)")
    gate.add_argument("--min-run-time", type=float, default=0.3, metavar="S",
                      help="seconds of timing per task per process (default 0.3)")
    gate.add_argument("--threads", type=int, default=1, metavar="N")
    gate.add_argument("--out", metavar="DIR", help="where base/ and head/ records go "
                      "(default: results/gate-RUN_ID)")
    add_verdict_options(gate)

    calibrate = commands.add_parser(
        "calibrate", help="false-alarm and detection rates of the gate on this machine")
    calibrate.add_argument("--impl", default="torch-gru", metavar="NAME")
    calibrate.add_argument("--grid", default="gate", metavar="NAME|FILE")
    calibrate.add_argument("--phase", default="inference", metavar="PHASE")
    calibrate.add_argument("--processes", type=int, default=30, metavar="N",
                           help="fresh worker processes measured per variant (default 30)")
    calibrate.add_argument("--per-side", type=int, default=10, metavar="K",
                           help="processes per side in each simulated gate (default 10)")
    calibrate.add_argument("--repetitions", type=int, default=1000, metavar="R",
                           help="simulated gates per variant (default 1000)")
    calibrate.add_argument("--slowdown", action="append", type=float, default=[],
                           metavar="FRACTION", help="injected slowdowns (default 0.02 0.05 0.10)")
    calibrate.add_argument("--min-run-time", type=float, default=0.3, metavar="S")
    calibrate.add_argument("--threads", type=int, default=1, metavar="N")
    calibrate.add_argument("--out", metavar="DIR",
                           help="records and calibration.md (default: results/calibration)")
    calibrate.add_argument("--overwrite", action="store_true")
    calibrate.add_argument("--analyze", action="store_true",
                           help="judge the pools already measured in --out again (e.g. with "
                           "another --alpha or --min-effect) without measuring")
    add_verdict_options(calibrate)

    report = commands.add_parser("report", help="render the markdown report of results")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="results directories")
    report.add_argument("--output", metavar="PATH",
                        help="markdown file to write (default: DIR/report.md for one DIR)")
    report.add_argument("--strict", action="store_true",
                        help="exit 1 when a record in the results failed")
    return parser


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """--impl, --impl-class and --family, as run and bench (and pytest) take them."""
    parser.add_argument("--impl", action="append", default=[], metavar="NAME",
                        help="registry entry (repeatable); default: the whole registry")
    parser.add_argument("--impl-class", action="append", default=[], metavar="MODULE:CLASS",
                        help="your nn.Module class with torch's RNN/LSTM/GRU contract")
    parser.add_argument("--family", metavar="FAMILY",
                        help="family of --impl-class: rnn_tanh, rnn_relu, lstm, gru")


def add_verdict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=float, default=0.01, metavar="P",
                        help="significance level after Holm's correction (default 0.01)")
    parser.add_argument("--min-effect", type=float, default=0.03, metavar="FRACTION",
                        help="smallest change that counts (default 0.03: 3%%)")
    parser.add_argument("--output", metavar="PATH", help="also write the markdown summary here")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        command = {"list": cmd_list, "run": cmd_run, "bench": cmd_bench,
                   "profile": cmd_profile, "compare": cmd_compare, "gate": cmd_gate,
                   "calibrate": cmd_calibrate, "report": cmd_report}[args.command]
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
        differs = spec.capabilities.differences(spec.fam)
        rows.append([spec.name, spec.family, "; ".join(differs) or "the full contract",
                     spec.description])
    print(tabulate(rows, headers=["name", "family", "differs from torch's contract",
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


def resumed(args: argparse.Namespace, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options of the interrupted run in ``--resume DIR``, read from its run.json."""
    from harness.records import ResultsError, read_run_info

    if argv != ["run", "--resume", args.resume]:
        raise UsageError("--resume DIR takes no other options: the run continues with its own")
    try:
        info = read_run_info(args.resume)
    except ResultsError as error:
        raise UsageError(f"--resume: {error}") from None
    original = list(info.argv[1:])
    if not original or original[0] != "run" or "--resume" in original:
        raise UsageError(f"--resume {args.resume!r}: run.json records no `seq-harness run` "
                         f"command (it has {' '.join(info.argv)!r})")
    again = build_parser().parse_args(original)
    again.out, again.overwrite, again.resume = args.resume, False, args.resume
    return again, original


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    import pytest
    import torch

    from harness.alone import confirm, describe
    from harness.records import RunInfo, iter_records, write_run_info
    from harness.report import write_report
    from harness.selection import OPT_IN, choose, suite_files, suite_names

    if args.resume:
        args, argv = resumed(args, argv)

    try:
        # No --suite: the default suites only (an opt-in suite's file is not even collected).
        files = suite_files(args.suite or [n for n in suite_names() if n not in OPT_IN])
        chosen = choose(impls=args.impl, impl_classes=args.impl_class, family=args.family)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    if not chosen.specs and not chosen.broken:
        raise UsageError("no implementations are installed in the seq_harness.impls group")

    if args.threads < 1:
        raise UsageError(f"--threads {args.threads} is invalid; expected 1 or more")
    if args.workers < 0:
        raise UsageError(f"--workers {args.workers} is invalid; expected 0 or more")
    if args.check_timeout < 0:
        raise UsageError(f"--check-timeout {args.check_timeout:g} is invalid; expected 0 "
                         "(no limit) or more seconds")
    if args.confirm_alone < 0:
        raise UsageError(f"--confirm-alone {args.confirm_alone} is invalid; expected 0 (off) "
                         "or more failed checks")
    torch.set_num_threads(args.threads)
    if args.resume:
        out = Path(args.resume)
    else:
        info = RunInfo.collect(argv=["seq-harness", *argv])
        out = Path(args.out) if args.out else Path("results") / info.run_id
        prepare_out(out, overwrite=args.overwrite)
        write_run_info(out, info)

    pytest_args = [str(f) for f in files]
    pytest_args += ["--results-dir", str(out), "--device", args.device, "--scale", args.scale,
                    "--threads", str(args.threads),
                    "--check-timeout", str(args.check_timeout),
                    "-p", "no:cacheprovider",
                    # harness is imported before pytest starts, so its plugin is not rewritten.
                    "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    # Not -q: pytest-xdist then prints "bringing up nodes..." twice instead of its worker count.
    pytest_args += ["-v", "--tb=short"] if args.verbose else ["--no-header", "--tb=no", "-rN"]
    for name in args.impl:
        pytest_args += ["--impl", name]
    for path in args.impl_class:
        pytest_args += ["--impl-class", path]
    if args.family:
        pytest_args += ["--family", args.family]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if args.workers:
        # Checks run in worker processes: a crash costs the check it happened in.
        pytest_args += ["-n", str(args.workers), "--max-worker-restart", "100000"]
    if args.resume:
        pytest_args += ["--resume"]
    code = int(pytest.main(pytest_args))

    if args.confirm_alone:
        options = ["--device", args.device, "--scale", args.scale, "--threads",
                   str(args.threads), "--check-timeout", str(args.check_timeout)]
        limit_s = args.check_timeout * 10 + 60 if args.check_timeout else None
        confirmed = confirm(out, options, timeout_s=limit_s, limit=args.confirm_alone)
        for line in describe(confirmed):
            print(line)
        if confirmed:
            write_report([out], out / "report.md")
    records = list(iter_records(out))
    if args.report:
        write_report([out], args.report)
    print(failure_lines(records), end="")
    print(summary_line(records, out, args.report))
    if args.resume and code == int(pytest.ExitCode.NO_TESTS_COLLECTED) and records:
        code = int(pytest.ExitCode.OK)  # everything was recorded before: nothing left to run
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
                             progress=lambda line: print(line, flush=True))
    (out / "benchmark.json").write_text(json.dumps(bench.pytest_benchmark_json(records, info),
                                                   indent=1))
    write_report([out], out / "report.md")
    if args.report:
        write_report([out], args.report)
    failed = [r for r in records if r.outcome == "failed"]
    noisy = [(key, t.noise) for key, t in bench.timings(records).items()
             if key[0] != bench.PEAK and t.noise]
    for (impl, case_id, phase), why in noisy:
        print(f"noisy: {impl} {phase} {case_id}: {why}")
    for partial in bench.partial_failures(records):
        print(f"failed in some processes only: {partial}")
    print(f"seq-harness bench: {len(records)} timings, {len(failed)} failed, {len(noisy)} "
          f"noisy; report: {out / 'report.md'}; pytest-benchmark JSON: "
          f"{out / 'benchmark.json'}")
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


def check_verdict_options(args: argparse.Namespace) -> None:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha:g} is invalid; expected 0 < alpha < 1")
    if not 0 <= args.min_effect < 1:
        raise UsageError(f"--min-effect {args.min_effect:g} is invalid; expected 0 <= it < 1")


def cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.gate import compare_dirs, publish
    from harness.records import ResultsError

    check_verdict_options(args)
    try:
        summary = compare_dirs(args.base, args.head, alpha=args.alpha,
                               min_effect=args.min_effect, allow_mismatch=args.allow_mismatch)
    except (ResultsError, ValueError) as error:
        raise UsageError(str(error)) from None
    publish(summary.text, args.output)
    return verdict_exit(summary)


def verdict_exit(summary) -> int:
    """Exit 1 on a regression; 2, with one line naming the minimum processes per side, when a
    timing could not be judged; 0 otherwise."""
    if summary.status == "REGRESSION":
        return 1
    if summary.status == "INCONCLUSIVE":
        print(f"seq-harness: error: {summary.unjudged}", file=sys.stderr)
        return USAGE_ERROR
    return 0


def gate_sides(args: argparse.Namespace):
    """(base spec, head spec, base git ref or None) from the gate's options."""
    from harness.selection import choose

    bases = [o for o in ("base_impl", "base_impl_class", "base_ref") if getattr(args, o)]
    heads = [o for o in ("head_impl", "head_impl_class") if getattr(args, o)]
    if len(bases) != 1 or len(heads) != 1:
        raise UsageError("gate needs exactly one of --base-impl, --base-impl-class, --base-ref "
                         "and one of --head-impl, --head-impl-class")
    needs_family = args.base_impl_class or args.head_impl_class
    if args.family and not needs_family:
        raise UsageError(f"--family {args.family!r} is only meaningful with an --*-impl-class")
    try:
        head = choose(impls=[args.head_impl] if args.head_impl else [],
                      impl_classes=[args.head_impl_class] if args.head_impl_class else [],
                      family=args.family if args.head_impl_class else None).specs[0]
        if args.base_ref:
            return head, head, args.base_ref
        base = choose(impls=[args.base_impl] if args.base_impl else [],
                      impl_classes=[args.base_impl_class] if args.base_impl_class else [],
                      family=args.family if args.base_impl_class else None).specs[0]
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    return base, head, None


def cmd_gate(args: argparse.Namespace, argv: list[str]) -> int:
    import contextlib

    from harness import bench
    from harness.gate import attainable_p, compare_dirs, publish, undetectable_message
    from harness.records import RunInfo, write_run_info
    from harness.timing import PHASES
    from harness.worktree import checkout

    check_verdict_options(args)
    positive("--workers", args.workers)
    positive("--threads", args.threads)
    positive("--min-run-time", args.min_run_time, integer=False)
    for phase in args.phase:
        if phase not in PHASES:
            raise UsageError(f"--phase {phase!r} is invalid; valid: {', '.join(PHASES)}")
    base, head, ref = gate_sides(args)
    try:
        grid = bench.load_grid(args.grid)
    except ValueError as error:
        raise UsageError(str(error)) from None

    def plan(spec):
        return bench.Plan(specs=(spec,), grid=grid, phases=tuple(args.phase) or grid.phases,
                          workers=args.workers, min_run_time=args.min_run_time,
                          threads=args.threads, memory=False)

    if not plan(head).tasks() or not plan(base).tasks():
        raise UsageError(f"grid {grid.name!r} has no shape both implementations support")
    comparisons = len(plan(head).tasks())
    if attainable_p(args.workers, args.workers, comparisons) >= args.alpha:
        raise UsageError(f"--workers {args.workers}: "
                         + undetectable_message(args.workers, args.workers, comparisons,
                                                args.alpha))
    info = RunInfo.collect(argv=["seq-harness", *argv])
    out = Path(args.out) if args.out else Path("results") / f"gate-{info.run_id}"
    for side in ("base", "head"):
        prepare_out(out / side, overwrite=True)
    with contextlib.ExitStack() as stack:
        env = None
        if ref:
            try:
                worktree, commit = stack.enter_context(checkout(ref))
            except ValueError as error:
                raise UsageError(str(error)) from None
            env = worktree_env(worktree)
            write_run_info(out / "base", replace_commit(info, commit, "base"))
        else:
            write_run_info(out / "base", replace_commit(info, info.git_commit, "base"))
        write_run_info(out / "head", replace_commit(info, info.git_commit, "head"))
        print(f"seq-harness gate: base {base.name}{f' at {ref}' if ref else ''}, head "
              f"{head.name}; {args.workers} fresh processes per side, interleaved", flush=True)
        bench.run_sides(
            [bench.Side(plan(base), out / "base", info.run_id + "-base", env=env, peak=False),
             bench.Side(plan(head), out / "head", info.run_id + "-head", peak=False)],
            workers=args.workers, progress=lambda line: print(line, flush=True))
    title = f"seq-harness gate: {base.name}{f' at {ref}' if ref else ''} → {head.name}"
    try:
        summary = compare_dirs(out / "base", out / "head", alpha=args.alpha,
                               min_effect=args.min_effect, allow_mismatch=False, title=title)
    except ValueError as error:  # e.g. an implementation failed every timing
        print(f"seq-harness: error: {error}", file=sys.stderr)
        return 1
    publish(summary.text, args.output or str(out / "summary.md"))
    return verdict_exit(summary)


def worktree_env(worktree: Path) -> dict[str, str]:
    """Worker environment where the repository at the worktree's commit is imported first."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(worktree), env.get("PYTHONPATH")) if p)
    return env


def replace_commit(info, commit, side: str):
    from dataclasses import replace

    return replace(info, run_id=f"{info.run_id}-{side}", git_commit=commit)


def cmd_calibrate(args: argparse.Namespace, argv: list[str]) -> int:
    import math

    from harness import bench, calibration
    from harness.gate import attainable_p, undetectable_message
    from harness.records import ResultsError, RunInfo, iter_records, read_run_info, write_run_info
    from harness.selection import choose
    from harness.timing import PHASES

    check_verdict_options(args)
    for name in ("processes", "per_side", "repetitions", "threads"):
        positive(f"--{name.replace('_', '-')}", getattr(args, name))
    positive("--min-run-time", args.min_run_time, integer=False)
    if args.phase not in PHASES:
        raise UsageError(f"--phase {args.phase!r} is invalid; valid: {', '.join(PHASES)}")
    if args.per_side > args.processes:
        raise UsageError(f"--per-side {args.per_side} exceeds --processes {args.processes}")
    if attainable_p(args.per_side, args.per_side, 1) >= args.alpha:
        raise UsageError(f"--per-side {args.per_side}: "
                         + undetectable_message(args.per_side, args.per_side, 1, args.alpha))
    slowdowns = args.slowdown or [0.02, 0.05, 0.10]
    for s in slowdowns:
        if not 0 < s < 10:
            raise UsageError(f"--slowdown {s:g} is invalid; expected a fraction such as 0.05")
    try:
        spec = choose(impls=[args.impl]).specs[0]
        grid = bench.load_grid(args.grid)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    labels = {"A": 0.0, "A'": 0.0, **{f"+{s:.0%}": s for s in slowdowns}}
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
        for label in labels:
            prepare_out(out / label, overwrite=args.overwrite)
            write_run_info(out / label, info)

        def plan(slowdown):
            return bench.Plan(specs=(spec,), grid=bench.Grid(grid.name, grid.cases[:1]),
                              phases=(args.phase,), workers=args.processes,
                              min_run_time=args.min_run_time, threads=args.threads,
                              memory=False)

        _, seconds = calibration.measure_pools(
            spec, plan, labels, out, processes=args.processes, run_id=info.run_id,
            progress=lambda line: print(line, flush=True))
        (out / "calibration.json").write_text(json.dumps({"seconds": seconds}) + "\n")
    pools = calibration.pools_from_records(
        {label: list(iter_records(out / label)) for label in labels}, labels)
    base = pools[0]
    rates = [calibration.simulate(base, pool, per_side=args.per_side,
                                  repetitions=args.repetitions, alpha=args.alpha,
                                  min_effect=args.min_effect, seed=i)
             for i, pool in enumerate(pools[1:])]
    context = (f"`{' '.join(info.argv)}` on {info.machine}, torch {info.torch}, "
               f"{args.threads} thread(s), {info.created}: {spec.name}, {args.phase}, "
               f"{grid.cases[0].id}.")
    text = calibration.render(rates, pools, per_side=args.per_side,
                              repetitions=args.repetitions, alpha=args.alpha,
                              min_effect=args.min_effect, measure_s=seconds,
                              process_s=seconds / sum(len(p.minimums) for p in pools),
                              context=context)
    (out / "calibration.md").write_text(text)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
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
