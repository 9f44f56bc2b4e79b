"""The conformance matrix: implementations x suites, what passed, what failed, what is not
supported, and the worst output error per suite (outputs and final states against the
reference only: a gradient error or a difference of log-norms is another unit)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.conformance.suites import measured_names, suite_rank, thorough_names
from harness.core.families import family_names
from harness.core.text import md
from harness.records import FAILED, NOT_SUPPORTED, PASSED, SKIPPED
from harness.report.errors import output_errors, sci


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    """The matrix and the worst-error table (a run of timings only says so)."""
    if frame.empty:
        return []
    measured = measured_names()
    if frame["suite"].isin(measured).all():
        return ["## Conformance", "", "This run has timings only.", ""]
    frame = frame.assign(output_error=output_errors(frame))
    lines = [
        "## Conformance",
        "",
        "Each cell counts the checks of one suite on one implementation: ✅ all passed, "
        "❌ failures out of those run; *n/s* are cases outside what the implementation "
        "claims, or that compared nothing (not counted as passes). Worst error is the largest "
        "absolute difference of outputs and final states from the torch reference of the "
        "family with the same weights (gradients and log-norms apart: see Accuracy).",
        "",
        matrix(frame),
        "",
    ]
    absent = [name for name in thorough_names() if not frame["suite"].eq(name).any()]
    if absent:
        lines += [f"Not in this run: the measuring suites {', '.join(absent)} (seconds per "
                  "implementation each; `seq-harness run --all-suites` and `seq-harness job` "
                  "run them).", ""]
    errors = errors_matrix(frame[~frame["suite"].isin(measured)])
    if errors:
        lines += ["### Worst absolute output error per suite", "", errors, ""]
    return lines


def cell(group: pd.DataFrame) -> str:
    """One matrix cell: passes out of checks run, failures flagged, not-supported counted."""
    counts = group["outcome"].value_counts()
    passed, failed = int(counts.get(PASSED, 0)), int(counts.get(FAILED, 0))
    unsupported, skipped = int(counts.get(NOT_SUPPORTED, 0)), int(counts.get(SKIPPED, 0))
    ran = passed + failed
    parts = []
    if failed:
        parts.append(f"❌ {failed} of {ran} failed")
    elif ran:
        parts.append(f"✅ {passed}")
    if unsupported:
        parts.append(f"{unsupported} n/s")
    if skipped:
        parts.append(f"{skipped} skipped")
    return " · ".join(parts) or "—"


def worst(errors: pd.Series) -> str:
    """The largest output error the records measured (— when none did)."""
    found = errors.dropna()
    return sci(None if found.empty else float(found.max()))


def by_family(frame: pd.DataFrame) -> pd.DataFrame:
    """The records in the order the verdict reads: family (built-ins first, in their order),
    then implementation."""
    known = {name: i for i, name in enumerate(family_names())}
    rank = frame["family"].map(lambda f: (known.get(f, len(known)), f))
    return frame.assign(_rank=rank).sort_values(["_rank", "impl"], kind="stable").drop(
        columns="_rank")


def matrix(frame: pd.DataFrame) -> str:
    """Implementations x suites: counts per cell, and the worst error of each implementation."""
    frame = by_family(frame[~frame["suite"].isin(measured_names())])
    suites = sorted(dict.fromkeys(frame["suite"]), key=suite_rank)
    by_machine = frame["machine"].nunique() > 1  # several machines: a row per machine
    keys = ["machine", "impl", "family"] if by_machine else ["impl", "family"]
    rows = []
    for values, group in frame.groupby(keys, sort=False):
        named = dict(zip(keys, values))
        row = {"machine": md(named["machine"])} if by_machine else {}
        row.update({"implementation": md(named["impl"]), "family": md(named["family"])})
        in_suites = dict(tuple(group.groupby("suite", sort=False)))
        for suite in suites:
            row[md(suite)] = cell(in_suites[suite]) if suite in in_suites else "—"
        row["worst error"] = worst(group["output_error"])
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def errors_matrix(frame: pd.DataFrame) -> str:
    """Worst absolute output error per implementation x suite (checks that compared outputs
    with the reference)."""
    measured = by_family(frame.dropna(subset=["output_error"]))
    if measured.empty:
        return ""
    suites = sorted(dict.fromkeys(measured["suite"]), key=suite_rank)
    rows = []
    for impl, group in measured.groupby("impl", sort=False):
        row = {"implementation": md(impl)}
        largest = group.groupby("suite", sort=False)["output_error"].max()
        for suite in suites:
            row[md(suite)] = sci(float(largest[suite])) if suite in largest.index else "—"
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
