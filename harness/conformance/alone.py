"""Failures confirmed alone: does a failed check also fail in a fresh process of its own?

A check can fail only because of what ran before it in the same worker process (process-wide
state an implementation leaks: TorchScript's compile cache, a changed default, a global buffer).
The report's Reproduce line runs the check alone, so for such a failure it would not reproduce.
After a run, each failed check (up to a bound, in the order they failed) runs again alone in a
fresh process with the run's options; the verdict goes into its record (``metrics["alone"]``:
``failed`` or ``passed``), and the report says which failures depend on earlier checks.
Timeouts and crashes are not re-run: they cost their whole limit again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.records import FAILED, RECORDS_FILE, Record, iter_records

LIMIT = 5  # failed checks re-run per run by default
NOT_RERUN = ("timeout", "crashed", "not run")  # failures a re-run would only repeat


def flag_for(family_name: str) -> str:
    """How a user names their own subject of ``family_name``: --impl-fn for an op's family,
    --impl-class for a module's (and for a family not installed here)."""
    from harness.core.families import family, is_op_family  # torch: the families' references

    try:
        return "--impl-fn" if is_op_family(family(family_name)) else "--impl-class"
    except ValueError:
        return "--impl-class"


def reproduce_argv(*, impl: str, family: str, suite: str, nodeid: str, origin: str) -> list[str]:
    """`seq-harness run` arguments that run exactly the check of a record (its fields) on
    exactly its case."""
    test = nodeid.split("::")[-1] if nodeid else ""
    if origin and ":" in origin and origin != "builtin":
        target = [flag_for(family), origin, "--family", family]
    else:
        target = ["--impl", impl]
    argv = ["run", *target, "--suite", suite]
    return [*argv, "-k", test] if test else argv


def candidates(records: Sequence[Record], *, limit: int = LIMIT) -> list[Record]:
    """The failed checks worth re-running alone: per (implementation, suite, check), the one
    the report gives as the reproducer (its first failing case), in the order they failed."""
    chosen: dict[tuple[str, str, str], Record] = {}
    for r in records:
        if (r.outcome == FAILED and r.nodeid and r.suite != "registry"
                and not (r.message or "").startswith(NOT_RERUN)):
            chosen.setdefault((r.impl, r.suite, r.check), r)
    return list(chosen.values())[:limit]


def run_alone(record: Record, options: Sequence[str], *, timeout_s: float | None) -> str | None:
    """'passed' or 'failed' for the check run alone in a fresh process (None if the re-run
    itself could not say, e.g. it ran out of time)."""
    with tempfile.TemporaryDirectory(prefix="seq-harness-alone-") as scratch:
        argv = [sys.executable, "-m", "harness",
                *reproduce_argv(impl=record.impl, family=record.family, suite=record.suite,
                                nodeid=record.nodeid, origin=record.origin), *options,
                "--workers", "0", "--confirm-alone", "0", "--out", scratch]
        try:
            subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        again = [r for r in iter_records(scratch) if r.key == record.key]
    return again[0].outcome if again and again[0].outcome in ("passed", "failed") else None


def confirm(directory: str | os.PathLike, options: Sequence[str], *,
            timeout_s: float | None, limit: int = LIMIT) -> list[Record]:
    """Re-run the failed checks of a results directory alone and write each verdict into its
    record (the file is replaced atomically once all re-runs are done). The updated records."""
    records = list(iter_records(directory))
    verdicts = {}
    for record in candidates(records, limit=limit):
        verdict = run_alone(record, options, timeout_s=timeout_s)
        if verdict is not None:
            verdicts[record.key] = verdict
    if not verdicts:
        return []
    updated = [replace(r, metrics={**r.metrics, "alone": verdicts[r.key]})
               if r.outcome == FAILED and r.key in verdicts else r for r in records]
    path = Path(directory) / RECORDS_FILE
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
        handle.writelines(r.to_json() + "\n" for r in updated)
    os.replace(handle.name, path)
    return [r for r in updated if r.key in verdicts and r.outcome == FAILED]


def passed_alone(record: Record | dict) -> bool:
    metrics = record.metrics if isinstance(record, Record) else record.get("metrics") or {}
    return isinstance(metrics, dict) and metrics.get("alone") == "passed"


def describe(confirmed: Sequence[Record]) -> list[str]:
    """Console lines for the failures that passed alone."""
    return [f"passed alone: {r.impl} · {r.suite} · {r.check} [{r.case_id}] fails only after "
            "other checks in the same process (process-wide state leaked)"
            for r in confirmed if passed_alone(r)]
