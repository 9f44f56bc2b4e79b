"""The implementer's loop, timed: how long `seq-harness run` takes to give its verdict on one
implementation, as a user types it, in fresh processes, interpreter start and report included.

A benchmark that prints figures (`tox -e loop`, or `python -m tests.loop_timing` from the
repository root), never a timed test: the machine's load moves every figure. The commands run in
rounds, one of each per round, so a busy moment costs every command alike; the table gives the
median and the range over the rounds, and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.records import processor_name


@dataclass(frozen=True)
class Command:
    """One verdict a user asks for, and the exit code a right verdict has."""

    label: str
    args: tuple[str, ...]
    exit_code: int


COMMANDS = (
    Command("torch's LSTM, correct", ("--impl", "torch-lstm"), 0),
    Command("the registry's from-scratch LSTM, correct",
            ("--impl-class", "harness.impls.scratch:ScratchLSTM", "--family", "lstm"), 0),
    Command("gate blocks swapped, failures diagnosed and shrunk",
            ("--impl-class", "tests.mutants.bugs:SwappedGatesLSTM", "--family", "lstm"), 1),
)


@dataclass(frozen=True)
class Timed:
    """One command's wall times over the rounds, and what its last run counted."""

    command: Command
    seconds: tuple[float, ...]
    checks: int
    failed: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def run_once(command: Command, out: Path) -> tuple[float, int, int]:
    """Wall seconds of one verdict, and its checks and failures (RuntimeError on an exit code
    that is not the right verdict's)."""
    argv = [sys.executable, "-m", "harness", "run", *command.args, "--out", str(out),
            "--overwrite"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != command.exit_code:
        raise RuntimeError(f"{' '.join(argv[2:])} exited {done.returncode}, expected "
                           f"{command.exit_code}:\n{done.stderr[-2000:]}")
    outcomes = [json.loads(line)["outcome"]
                for line in (out / "records.jsonl").read_text().splitlines()]
    return seconds, len(outcomes), outcomes.count("failed")


def measure(rounds: int) -> list[Timed]:
    times: dict[str, list[float]] = {c.label: [] for c in COMMANDS}
    counts: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(rounds):
            for command in COMMANDS:
                seconds, checks, failed = run_once(command, Path(scratch) / "run")
                times[command.label].append(seconds)
                counts[command.label] = (checks, failed)
                print(f"round {round_ + 1}/{rounds}: {command.label}: {seconds:.1f} s",
                      file=sys.stderr)
    return [Timed(c, tuple(times[c.label]), *counts[c.label]) for c in COMMANDS]


def table(timed: list[Timed]) -> str:
    lines = ["| verdict | command | checks (failed) | median | range |", "|---|---|---|---|---|"]
    for t in timed:
        lines.append(f"| {t.command.label} | `seq-harness run {' '.join(t.command.args)}` | "
                     f"{t.checks} ({t.failed}) | {t.median:.1f} s | "
                     f"{min(t.seconds):.1f}-{max(t.seconds):.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command (default 3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds} is invalid; valid: 1 or more")
    timed = measure(args.rounds)
    print(f"{processor_name()}, {args.rounds} round(s), default suites, two worker processes\n")
    print(table(timed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
