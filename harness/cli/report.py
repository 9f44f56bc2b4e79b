"""``seq-harness report DIR [DIR ...]``: the markdown report of one or several results
directories (several: merged, grouped by machine)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CHECK_FAILED, UsageError, usage_errors
from harness.records import ResultsError, iter_records, read_run_info
from harness.report import write_report


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="render the markdown report of results")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="results directories")
    report.add_argument("--output", metavar="PATH",
                        help="markdown file to write (default: DIR/report.md for one DIR)")
    report.add_argument("--strict", action="store_true",
                        help="exit 1 when a record in the results failed")


def command(args: argparse.Namespace, argv: list[str]) -> int:
    if args.output is None and len(args.dirs) > 1:
        raise UsageError("several results directories need --output PATH for the merged report")
    with usage_errors(ResultsError):
        for directory in args.dirs:
            read_run_info(directory)
        output = Path(args.output) if args.output else Path(args.dirs[0]) / "report.md"
        path = write_report(args.dirs, output)
    print(f"seq-harness: report written to {path}")
    if args.strict:
        failed = sum(r.outcome == "failed" for d in args.dirs for r in iter_records(d))
        if failed:
            print(f"seq-harness: {failed} failed records", file=sys.stderr)
            return CHECK_FAILED
    return 0
