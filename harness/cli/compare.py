"""``seq-harness compare BASE HEAD``: timing and check regressions between two result sets."""

from __future__ import annotations

import argparse
import sys

from harness.cli.common import (
    CHECK_FAILED,
    USAGE_ERROR,
    add_verdict_options,
    check_verdict_options,
    usage_errors,
)
from harness.gate.compare import Summary, compare_dirs
from harness.records import ResultsError
from harness.report.gate import gate_summary, publish


def add_parser(commands) -> None:
    compare = commands.add_parser("compare", help="regressions between two result sets")
    compare.add_argument("base", metavar="BASE", help="results directory of the baseline")
    compare.add_argument("head", metavar="HEAD", help="results directory of the change")
    add_verdict_options(compare)
    compare.add_argument("--allow-mismatch", action="store_true",
                         help="compare runs from different machines or software (flagged)")


def command(args: argparse.Namespace, argv: list[str]) -> int:
    check_verdict_options(args)
    with usage_errors(ResultsError, ValueError):
        summary = compare_dirs(args.base, args.head, alpha=args.alpha,
                               min_effect=args.min_effect, allow_mismatch=args.allow_mismatch)
    publish(gate_summary(summary, alpha=args.alpha, min_effect=args.min_effect), args.output)
    return verdict_exit(summary)


def verdict_exit(summary: Summary) -> int:
    """Exit 1 on a regression; 2, with one line naming the minimum processes per side, when a
    timing could not be judged; 0 otherwise."""
    if summary.status == "REGRESSION":
        return CHECK_FAILED
    if summary.status == "INCONCLUSIVE":
        print(f"seq-harness: error: {summary.unjudged}", file=sys.stderr)
        return USAGE_ERROR
    return 0
