"""The report side of the pytest plugin: at the end of a session run with ``--results-dir``,
write DIR/report.md from the records the conformance plugin wrote, and say where both are.

A pytest11 entry point of its own (``seq_harness_report``), so the conformance stage never
imports the report stage."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


def results_dir(config: pytest.Config) -> str | None:
    """The results directory of a controller (or plain) session; None in an xdist worker."""
    if hasattr(config, "workerinput"):
        return None
    return config.getoption("results_dir", None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    directory = results_dir(session.config)
    if directory is None or session.config.getoption("no_report", False) \
            or exitstatus == pytest.ExitCode.USAGE_ERROR:  # nothing ran; the command says why
        return
    from harness.report import write_report

    try:
        write_report([directory], Path(directory) / "report.md")
    except Exception as error:  # the records are on disk; a report failure must not hide them
        warnings.warn(f"seq-harness: could not write the report for {directory}: {error}",
                      stacklevel=1)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    directory = results_dir(config)
    if directory is not None and exitstatus != pytest.ExitCode.USAGE_ERROR:
        report = ("" if config.getoption("no_report", False)
                  else f", report in {Path(directory) / 'report.md'}")
        terminalreporter.write_line(
            f"seq-harness: records in {Path(directory) / 'records.jsonl'}{report}")
