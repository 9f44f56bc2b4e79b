"""What every command shares: the one-line usage error (exit 2), the argparse parser that raises
it, the exit codes, option groups declared once, and conversions of the library's ValueErrors
into usage errors."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from harness.core.values import integer_at_least, positive_number
from harness.records import ResultsError, prepare_results_dir, read_run_info, write_run_info

OK, CHECK_FAILED, USAGE_ERROR, INTERNAL_ERROR = 0, 1, 2, 3
INTERRUPTED = 130  # as a shell reports a command ended by SIGINT


class UsageError(Exception):
    """Bad input: reported as one line, exit 2."""


class Interrupted(Exception):
    """Ctrl-C during a command that keeps its records: the line saying how to continue."""


@contextlib.contextmanager
def resumable(command: str, out: Path) -> Iterator[None]:
    """Ctrl-C inside: one line saying that the records are kept and how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; every record so far is kept in {out}; continue with "
                          f"`seq-harness {command} --resume {out}`") from None


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the bad value (and exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


@contextlib.contextmanager
def usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the library's ValueError/TypeError (or ``kinds``) into a UsageError: one line."""
    caught = kinds or (ValueError, TypeError)
    try:
        yield
    except caught as error:
        raise UsageError(str(error)) from None


def resumed(args: argparse.Namespace, argv: list[str], parser: argparse.ArgumentParser, *,
            command: str) -> tuple[argparse.Namespace, list[str]]:
    """The options of the interrupted ``command`` in ``--resume DIR``, read from its run.json
    (``args.out`` becomes DIR and ``args.resume`` stays DIR)."""
    if argv != [command, "--resume", args.resume]:
        raise UsageError("--resume DIR takes no other options: the run continues with its own")
    try:
        info = read_run_info(args.resume)
    except ResultsError as error:
        raise UsageError(f"--resume: {error}") from None
    original = list(info.argv[1:])
    if not original or original[0] != command or "--resume" in original:
        raise UsageError(f"--resume {args.resume!r}: run.json records no `seq-harness {command}` "
                         f"command (it has {' '.join(info.argv)!r})")
    again = parser.parse_args(original)
    again.out, again.overwrite, again.resume = args.resume, False, args.resume
    write_run_info(args.resume, info.resumed(["seq-harness", *argv]))  # the report says it
    return again, original


def positive(name: str, value, *, integer: bool = True) -> None:
    """--NAME VALUE must be >= 1 (an integer) or above 0 (a number); None passes."""
    if value is None:
        return
    with usage_errors():
        if integer:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            integer_at_least(name, value, 1, flag=True)
        else:
            positive_number(name, value, flag=True)


def prepare_out(out: Path, *, overwrite: bool) -> None:
    with usage_errors():
        prepare_results_dir(out, overwrite=overwrite)


def add_timing_options(add, *, workers_help: str) -> None:
    """--grid, --phase, --workers, --min-run-time: what gate and bisect time, and how long;
    ``add`` is a parser's or an argument group's add_argument."""
    add("--grid", default="gate", metavar="NAME|FILE",
        help="shapes to time (default: gate, T=50 B=8 I=H=128)")
    add("--phase", action="append", default=[], metavar="PHASE",
        help="inference, forward, forward_backward (default: the grid's)")
    add("--workers", type=int, default=10, metavar="N", help=workers_help)
    add("--min-run-time", type=float, default=0.3, metavar="S",
        help="seconds of timing per task per process (default 0.3)")


def add_look_options(add, *, budget_help: str) -> None:
    """--step, --max-workers, --budget: how a sequential gate (gate, bisect) keeps adding
    processes after the first look of --workers; ``add`` is a parser's or a group's
    add_argument."""
    add("--step", type=int, default=5, metavar="N",
        help="processes per side each further look adds (default 5)")
    add("--max-workers", type=int, default=40, metavar="N",
        help="the most processes per side; a timing still undecided then is undecided "
        "(default 40; equal to --workers: one look)")
    add("--budget", type=float, default=900.0, metavar="SECONDS", help=budget_help)


def check_look_options(args: argparse.Namespace) -> None:
    positive("--workers", args.workers)
    positive("--step", args.step)
    positive("--max-workers", args.max_workers)
    positive("--budget", args.budget, integer=False)


def add_verdict_options(parser: argparse.ArgumentParser) -> None:
    """--alpha, --min-effect, --output: how compare, gate and calibrate judge."""
    parser.add_argument("--alpha", type=float, default=0.01, metavar="P",
                        help="significance level after Holm's correction (default 0.01)")
    parser.add_argument("--min-effect", type=float, default=0.03, metavar="FRACTION",
                        help="smallest change that counts (default 0.03: 3%%)")
    parser.add_argument("--output", metavar="PATH", help="also write the markdown summary here")


def check_verdict_options(args: argparse.Namespace) -> None:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha:g} is invalid; expected 0 < alpha < 1")
    if not 0 <= args.min_effect < 1:
        raise UsageError(f"--min-effect {args.min_effect:g} is invalid; expected 0 <= it < 1")


def check_phases(phases) -> None:
    from harness.core.phases import check_phase

    with usage_errors():
        for phase in phases:
            check_phase(phase)
