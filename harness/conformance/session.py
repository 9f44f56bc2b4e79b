"""One run of the suites: pytest driven in-process through the same plugin a plain ``pytest
--pyargs harness.suites`` uses, then the failed checks re-run alone.

``run_suites`` is what ``seq-harness run`` calls once its options are parsed; it is usable
without a command line.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.conformance.alone import confirm
from harness.records import Record, iter_records


@dataclass(frozen=True)
class SuiteRun:
    """What one run covers and how (every field as the `seq-harness run` option of its name)."""

    files: tuple[Path, ...]
    out: Path
    impls: tuple[str, ...] = ()
    impl_classes: tuple[str, ...] = ()
    skipped_impls: tuple[str, ...] = ()
    family: str | None = None
    device: str = "cpu"
    scale: str = "ci"
    threads: int = 1
    tf32: str = "off"
    check_timeout: float = 120.0
    workers: int = 1
    skipped: tuple[str, ...] = ()
    all_suites: bool = False  # no suite named: the measuring suites too (see --all-suites)
    keyword: str | None = None
    verbose: bool = False
    resume: bool = False
    confirm_alone: int = 5
    atol: float | None = None
    rtol: float | None = None
    rounding: str = "needed"
    diagnosis: bool = True
    shard: str | None = None  # "K/N" (harness.core.shard)
    maxfail: int = 0  # stop after this many failed checks (pytest's --maxfail); 0: never
    report: bool = True  # OUT/report.md at the end (a job renders its own of every stage)
    progress_s: float = 30.0  # a progress line (done/total, ETA) this often; 0: none
    stop_at: float | None = None  # time.time() after which no check starts (--stop-at)
    warm_report: bool = False  # the report's modules imported while the checks run (Warmup)

    def options(self) -> list[str]:
        """The options a check needs to run again exactly as it ran here."""
        options = ["--device", self.device, "--scale", self.scale, "--threads",
                   str(self.threads), "--tf32", self.tf32,
                   "--check-timeout", str(self.check_timeout), "--rounding", self.rounding]
        if not self.diagnosis:
            options.append("--no-diagnosis")
        for flag, value in (("--atol", self.atol), ("--rtol", self.rtol)):
            if value is not None:
                options += [flag, repr(value)]
        return options

    def pytest_args(self) -> list[str]:
        args = [str(f) for f in self.files]
        args += ["--results-dir", str(self.out), *self.options(),
                 "-p", "no:cacheprovider",
                 # pytest's log capture hooks every logger around every check (14% of a check's
                 # time); the suites log nothing
                 "-p", "no:logging",
                 "-p", "no:hypothesispytest",  # 2 s to import; the suites use no hypothesis
                 # its teardown collects garbage four times over (a tenth of a second each
                 # in a large process) to report exceptions raised in __del__ as warnings
                 "-p", "no:unraisableexception",
                 # the suites assert through Check, never a bare assert: rewriting every harness
                 # module in each worker (the plugin's distribution is marked for it) costs
                 # seconds per process where bytecode is not cached
                 "--assert", "plain",
                 # harness is imported before pytest starts, so its plugin is not rewritten.
                 "-W", "ignore::pytest.PytestAssertRewriteWarning"]
        # Not -q: pytest-xdist then prints "bringing up nodes..." twice, not its worker count.
        args += ["-v", "--tb=short"] if self.verbose else ["--no-header", "--tb=no", "-rN"]
        for name in self.impls:
            args += ["--impl", name]
        for path in self.impl_classes:
            args += ["--impl-class", path]
        for name in self.skipped_impls:
            args += ["--skip-impl", name]
        if self.family:
            args += ["--family", self.family]
        for name in self.skipped:
            args += ["--skip-suite", name]
        if self.all_suites:
            args += ["--all-suites"]
        if self.keyword:
            args += ["-k", self.keyword]
        if self.shard:
            args += ["--shard", self.shard]
        if not self.report:
            args += ["--no-report"]
        if self.workers:
            # Checks run in worker processes: a crash costs the check it happened in.
            args += ["-n", str(self.workers), "--max-worker-restart", "100000",
                     # checks handed out a few at a time, in order: the long ones first
                     # (harness.conformance.collection.longest_first), and no worker holding a
                     # long queue of them while the other goes idle; a torch.compile'd
                     # implementation's checks all to one worker (conformance.scheduling)
                     "--maxschedchunk", "8"]
        if self.resume:
            args += ["--resume"]
        if self.maxfail:
            args += ["--maxfail", str(self.maxfail)]
        if self.stop_at is not None:
            args += ["--stop-at", repr(self.stop_at)]
        if self.progress_s:
            args += ["--progress", str(self.progress_s)]
        return args


@dataclass(frozen=True)
class SuiteOutcome:
    """pytest's exit code, every record of the run, and the failures that were re-run alone."""

    code: int
    records: list[Record]
    confirmed: list[Record]


class Warmup:
    """Imports the report's modules (torch and pandas among them: over two seconds on a 2-vCPU
    machine) in a thread of the xdist controller once the workers have collected: the import
    then overlaps the checks instead of following them, and the report is written as soon as
    they end."""

    MODULE = "harness.report.document"

    def __init__(self) -> None:
        self.started = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        if not self.started:
            self.started = True
            threading.Thread(target=self.load, daemon=True, name="report-warmup").start()

    def load(self) -> None:
        # an error is the report's own import's to say, with its traceback, when it is needed
        with contextlib.suppress(Exception):
            importlib.import_module(self.MODULE)


def run_suites(run: SuiteRun) -> SuiteOutcome:
    """Run the suites into ``run.out`` (run.json, or run.pending.json for the workers to
    complete: harness.conformance.handoff, already there), then re-run up to
    ``run.confirm_alone`` failed checks alone; the records on disk are final when it returns."""
    code = int(pytest.main(run.pytest_args(), plugins=[Warmup()] if run.warm_report else []))
    confirmed: list[Record] = []
    if run.confirm_alone:
        limit_s = run.check_timeout * 10 + 60 if run.check_timeout else None
        confirmed = confirm(run.out, run.options(), timeout_s=limit_s, limit=run.confirm_alone)
    return SuiteOutcome(code, list(iter_records(run.out)), confirmed)


def exit_code(outcome: SuiteOutcome, *, resumed: bool, maxfail: int = 0) -> int | None:
    """0 every check passed, 1 a check failed, 2 nothing matched or bad input, 3 pytest broke;
    None when no check matched the selection."""
    code, records = outcome.code, outcome.records
    if resumed and code == int(pytest.ExitCode.NO_TESTS_COLLECTED) and records:
        code = int(pytest.ExitCode.OK)  # everything was recorded before: nothing left to run
    if maxfail and code == int(pytest.ExitCode.INTERRUPTED) and sum(
            r.outcome == "failed" for r in records) >= maxfail:
        code = int(pytest.ExitCode.TESTS_FAILED)  # pytest-xdist stops at --maxfail this way
    if code == int(pytest.ExitCode.NO_TESTS_COLLECTED) or (code == 0 and not records):
        return None
    if code == int(pytest.ExitCode.USAGE_ERROR):
        return 2
    if code in (int(pytest.ExitCode.OK), int(pytest.ExitCode.TESTS_FAILED)):
        failed = any(r.outcome == "failed" for r in records)
        return 1 if failed or code == int(pytest.ExitCode.TESTS_FAILED) else 0
    return 3


def lines_for(records: Sequence[Record], limit: int = 15) -> list[str]:
    """The failing checks, one line each (implementation, suite, check, how many cases)."""
    from collections import Counter

    failing = Counter((r.impl, r.suite, r.check) for r in records if r.outcome == "failed")
    lines = [f"FAILED {impl} · {suite} · {check}: {n} case{'s' if n > 1 else ''}"
             for (impl, suite, check), n in list(failing.items())[:limit]]
    if len(failing) > limit:
        lines.append(f"... and {len(failing) - limit} more failing checks (see the report)")
    said = Counter((r.impl, r.metrics["diagnosis"]["sentence"]) for r in records
                   if r.outcome == "failed" and isinstance(r.metrics, dict)
                   and isinstance(r.metrics.get("diagnosis"), dict))
    lines += [f"DIAGNOSIS {impl}: {sentence} ({n} failed check{'s' if n > 1 else ''})"
              for (impl, sentence), n in said.most_common()]
    return lines
