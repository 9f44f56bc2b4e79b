"""From pytest's view of a suite test to the harness' Record of it.

The plugin hands every suite test's report here: the outcome (a case outside the claimed
contract, or one that compared nothing, is *not supported*; a failure torch's own module shares
on the device is *as torch*), the message (one line), and what
the test's Check measured (largest error, tolerance, values compared, figures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.conformance.isolation import CheckTimeout
from harness.conformance.suites import suite_name
from harness.core.text import one_line
from harness.records import AS_TORCH, FAILED, NOT_SUPPORTED, PASSED, SKIPPED, Record

MESSAGE_LIMIT = 2000  # characters of a failure message kept in its record


def recorded_metrics(measured) -> dict:
    """What a Check measured besides its verdict: its figures and notes, the error figures of
    each measured quantity (``error``: output, gradient) and where its tolerance came from."""
    if measured is None:
        return {}
    metrics = dict(getattr(measured, "metrics", {}))
    if getattr(measured, "notes", None):
        metrics["notes"] = list(measured.notes)
    errors = measured.error_figures() if hasattr(measured, "error_figures") else {}
    if errors:
        metrics["error"] = errors
    if getattr(measured, "tolerance_used", None) is not None:
        metrics["tolerance_source"] = getattr(measured, "source_used", None) or measured.source
    for name in ("rounding", "rounding_ratio", "atol_before"):  # harness.conformance.rounding
        if getattr(measured, name, None) is not None:
            metrics[name] = getattr(measured, name)
    return metrics


def record_from_report(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo,
                       run_id: str) -> Record:
    """The Record of one suite test, from pytest's report of it and the Check it used."""
    measured = item.funcargs.get("check") if hasattr(item, "funcargs") else None
    message = None
    if report.passed:
        outcome = PASSED
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        message = reason.removeprefix("Skipped: ")
        outcome = (NOT_SUPPORTED if message.startswith("not supported")
                   else AS_TORCH if message.startswith("as torch") else SKIPPED)
    else:
        outcome = FAILED
        error = call.excinfo.value if call.excinfo is not None else None
        from harness.conformance.checks import CheckFailed  # torch: checks run in this process

        if isinstance(error, (CheckFailed, CheckTimeout, pytest.fail.Exception)):
            message = str(error)
        elif error is not None:
            where = "setting up the check" if report.when == "setup" else "the check"
            message = f"raised during {where}: {one_line(error)}"
        else:
            message = str(report.longrepr).splitlines()[-1]
    tol = getattr(measured, "tolerance_used", None)
    metrics = recorded_metrics(measured)
    if outcome == SKIPPED and message.startswith("left out"):
        metrics["left_out"] = True  # a resumed run runs it (harness.job.pipeline)
    return suite_record(
        item, outcome=outcome, message=message, duration_s=report.duration, run_id=run_id,
        max_error=getattr(measured, "max_error", None),
        tolerance=None if tol is None else tol.atol,
        rtol=None if tol is None else tol.rtol,
        compared=getattr(measured, "compared", None),
        metrics=metrics,
    )


def suite_record(item: pytest.Item, *, outcome: str, message: str | None, duration_s: float,
                 run_id: str, **measured) -> Record:
    """A Record naming the suite test ``item`` (implementation, suite, check, case)."""
    spec, case = item.callspec.params["spec"], item.callspec.params["case"]
    return Record(
        impl=spec.name,
        family=spec.family,
        suite=suite_name(item.module.__name__),
        check=item.originalname.removeprefix("test_"),
        outcome=outcome,
        case_id=case.id,
        case=case.to_dict(),
        duration_s=duration_s,
        message=None if message is None else message[:MESSAGE_LIMIT],
        nodeid=item.nodeid,
        origin=spec.origin,
        run_id=run_id,
        **measured,
    )


def crash_record(crashitem: str, *, families: dict[str, str], origins: dict[str, str],
                 run_id: str) -> Record:
    """The Record of a check whose worker process died (pytest-xdist names it by node id)."""
    path, _, test = crashitem.partition("::")
    name, _, param = test.partition("[")
    impl, _, case_id = param.rstrip("]").partition(":")
    return Record(
        impl=impl, family=families.get(impl, "unknown"),
        suite=suite_name(Path(path).stem), check=name.removeprefix("test_"), outcome=FAILED,
        case_id=case_id, nodeid=crashitem, origin=origins.get(impl, ""),
        message="crashed: the worker process died while running this check (a fault in native "
                "code, os._exit, or out of memory)",
        run_id=run_id,
    )


def impl_of_nodeid(nodeid: str) -> str:
    """The implementation a suite check's node id names (e.g. a crashed one's, as xdist
    reports it)."""
    return nodeid.partition("[")[2].rstrip("]").partition(":")[0]
