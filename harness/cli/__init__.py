"""The ``seq-harness`` command: one module per subcommand, each parsing its options and calling
library functions that work without a command line.

Exit codes: 0 every check passed; 1 a check failed; 2 bad input (one line on stderr naming the bad
value and the valid choices); 3 the harness itself broke. ``run`` drives pytest in-process
through the same plugin a plain ``pytest`` run uses, so both accept the same options.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from harness.cli.common import INTERRUPTED, USAGE_ERROR, Interrupted, Parser, UsageError
from harness.core.exit import finish

# command -> its module in harness.cli, imported only when that command runs: most commands
# import torch, and ``report`` or ``history`` have no need to pay two seconds for it
COMMANDS = {"list": "listing", "run": "run", "bench": "bench", "job": "job",
            "profile": "profile", "compare": "compare", "gate": "gate", "bisect": "bisect",
            "calibrate": "calibrate", "report": "report", "history": "history"}


def command_module(name: str):
    return importlib.import_module(f"harness.cli.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> Parser:
    """Every command's parser, or only that of ``only`` (a command name): then ``--help``
    lists that command alone, and no other command's module is imported."""
    parser = Parser(prog="seq-harness", description="Conformance and benchmark kit for RNNs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for name in [only] if only in COMMANDS else COMMANDS:
        command_module(name).add_parser(commands)
    return parser


def entry() -> int:
    """The ``seq-harness`` console script and ``python -m harness``: ``main`` in a process of
    its own, which then leaves without the interpreter's teardown (harness.core.exit)."""
    return finish(main())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
        module = command_module(args.command)
        if args.command in ("run", "bench"):  # their --resume re-parses the saved options
            return module.command(args, argv, parser)
        return module.command(args, argv)
    except UsageError as error:
        print(f"seq-harness: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except Interrupted as interrupted:
        print(f"seq-harness: {interrupted}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `seq-harness list | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
