"""``seq-harness calibrate --drift``: does ``history check`` catch a slow drift on this machine's
measured run-to-run noise, and what do the anchors' rules do on the same histories."""

from __future__ import annotations

import argparse

from harness.cli.common import UsageError, positive

DRIFT_ONLY = {"runs": 40, "processes_per_run": 3, "histories": 1000, "block": 1}


def add_drift_options(calibrate: argparse.ArgumentParser) -> None:
    group = calibrate.add_argument_group(
        "drift", "history check against a slow drift, on histories of measured noise")
    group.add_argument("--drift", action="store_true",
                       help="calibrate history check (default --out results/calibration-drift)")
    group.add_argument("--runs", type=int, metavar="R",
                       help=f"runs measured, one after another (default {DRIFT_ONLY['runs']})")
    group.add_argument("--processes-per-run", type=int, metavar="P",
                       help="fresh worker processes per run (default "
                       f"{DRIFT_ONLY['processes_per_run']})")
    group.add_argument("--histories", type=int, metavar="S",
                       help=f"stepped and flat histories each (default {DRIFT_ONLY['histories']})")
    group.add_argument("--block", type=int, metavar="B",
                       help="resample runs in blocks of B consecutive ones (default 1: "
                       "independent draws)")
    group.add_argument("--tune-on", metavar="DIR",
                       help="another drift measurement: the largest alpha of history check keeping "
                       "false alarms within 1%% on its histories, reported on these")


def check_drift_options(args: argparse.Namespace) -> None:
    """The drift options only with --drift; their defaults filled in."""
    for name, default in DRIFT_ONLY.items():
        flag = f"--{name.replace('_', '-')}"
        value = getattr(args, name)
        if value is not None and not args.drift:
            raise UsageError(f"{flag} {value} applies only with --drift")
        positive(flag, value)
        setattr(args, name, default if value is None else value)


def drift_command(args: argparse.Namespace, argv: list[str]) -> int:
    """Measure (or read) the noise and judge the histories: harness.cli.drift_run, imported
    only here (the history's modules import SQLAlchemy, which no other command should pay)."""
    from harness.cli.drift_run import drift_run

    return drift_run(args, argv)
