"""A failed check, diagnosed: the pytest adapter's bridge to harness.diagnosis. The diagnosis
goes into the check's record (``metrics.diagnosis``) and its message, and a repro script of
the smallest failing case into the results directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.conformance.checks import CheckFailed
from harness.conformance.suites import needs_autograd, suite_name
from harness.core.case import Case
from harness.core.failed import Explained
from harness.core.op_case import OpCase
from harness.core.time_limit import PartTimeout, bounded
from harness.diagnosis.diagnose import Diagnoser, diagnosis_case
from harness.diagnosis.found import Diagnosis
from harness.diagnosis.op_diagnose import OpDiagnoser
from harness.diagnosis.raised import Raisings
from harness.diagnosis.repro import script_name, write_script
from harness.diagnosis.shrink import describe


def diagnosed(item: pytest.Function, error: Exception, diagnosers: dict) -> str | None:
    """The diagnosis of a check a module or an op failed, in one sentence, recorded in the
    check's metrics (``diagnosis``, with the repro script's path); for an exception the
    implementation raised, what one plain call raises (``raised``); None for ``--no-diagnosis``
    or nothing found. ``diagnosers``: implementation
    name -> its Diagnoser in this process (what it found is remembered)."""
    params, config = item.callspec.params, item.config
    case = params.get("case")
    if (not isinstance(case, (Case, OpCase)) or config.getoption("no_diagnosis")
            or "check" not in item.funcargs):
        return None
    spec = params["spec"]
    if isinstance(error, Explained):  # the check named the cause itself
        item.funcargs["check"].metrics["diagnosis"] = {
            "signatures": [error.pattern], "sentence": error.sentence, "smallest_case": case.id,
            "smallest": ", ".join(filter(None, (describe(case), error.at))), "error": None,
            "tried": 0}
        return error.sentence
    if (spec.name, STOPPED) in diagnosers:
        return (f"not diagnosed: an earlier diagnosis of {spec.name} did not finish within "
                f"{DIAGNOSIS_S:g} s")
    try:
        with bounded(DIAGNOSIS_S):
            return diagnose(item, spec, case, error, diagnosers)
    except PartTimeout:  # the check keeps the failure it found; later ones are not diagnosed
        diagnosers[(spec.name, STOPPED)] = True
        return (f"none: the diagnosis did not finish within {DIAGNOSIS_S:g} s (a call of the "
                "implementation on a smaller or transformed case did not return)")


def diagnose(item: pytest.Function, spec, case: Case | OpCase, error: Exception,
             diagnosers: dict) -> str | None:
    """``diagnosed``'s search, for a check that failed (CheckFailed) or raised."""
    if type(error) is not CheckFailed:
        return raised(item, spec, case, error, diagnosers)
    if spec.name not in diagnosers:
        diagnosers[spec.name] = (OpDiagnoser if isinstance(case, OpCase) else Diagnoser)(spec)
    diagnosis = diagnosers[spec.name].of(case, gradients=compares_gradients(item))
    if diagnosis is None:
        return None
    said = diagnosis.to_metrics()
    script = repro_script(item, diagnosis)
    if script is not None:
        said["script"] = script
    item.funcargs["check"].metrics["diagnosis"] = said
    return diagnosis.sentence


DIAGNOSIS_S = 30.0  # one failed check's diagnosis; past it, the failure stands undiagnosed
STOPPED = "stopped"  # diagnosers' key (name, STOPPED): a diagnosis of name ran out of time


def raised(item: pytest.Function, spec, case: Case | OpCase, error: Exception,
           diagnosers: dict) -> str | None:
    """The diagnosis of a check the implementation raised in, where one plain call raises the
    same (harness.diagnosis.raised), with its script; None otherwise."""
    key = (spec.name, "raised")
    if key not in diagnosers:
        diagnosers[key] = Raisings(spec)
    found = diagnosers[key].of(diagnosis_case(spec, case) if isinstance(case, Case) else case,
                               error, backward=compares_gradients(item))
    if found is None:
        return None
    said = found.to_metrics()
    directory = item.config.getoption("results_dir")
    if directory is not None:
        said["script"] = write_script(Path(directory), spec, suite_name(item.module.__name__),
                                      item.originalname.removeprefix("test_"), found)
    item.funcargs["check"].metrics["diagnosis"] = said
    return found.sentence


def repro_script(item: pytest.Function, diagnosis: Diagnosis) -> str | None:
    """The check's repro script (harness.diagnosis.repro) in the results directory, written by
    the first failing case that shows the mismatch in one call, or a behaviour; its relative
    path, or None (a backward-only diagnosis, or no results directory)."""
    directory = item.config.getoption("results_dir")
    shown = diagnosis.behaviours and not diagnosis.matched
    if directory is None or not (diagnosis.error > 0 or shown):
        return None
    spec, suite = item.callspec.params["spec"], suite_name(item.module.__name__)
    check = item.originalname.removeprefix("test_")
    if (Path(directory) / script_name(spec.name, suite, check)).exists():
        return script_name(spec.name, suite, check)
    return write_script(Path(directory), spec, suite, check, diagnosis)


TASKS = ("adding", "recall")  # training tasks: a task not learnt says nothing of where the bug is


def compares_gradients(item: pytest.Function) -> bool:
    """Whether the check compares gradients: it needs a backward pass (its suite declares it,
    or the check is marked) and is not a training task."""
    if suite_name(item.module.__name__) in TASKS:
        return False
    return (needs_autograd(Path(item.module.__file__))
            or item.get_closest_marker("autograd") is not None)
