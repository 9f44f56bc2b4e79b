"""The conformance matrix: implementations x suites, what passed, what failed, what is not
supported, and the worst error per suite."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.conformance.suites import measured_names, suite_rank
from harness.core.text import md
from harness.records import FAILED, NOT_SUPPORTED, PASSED, SKIPPED


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    """The matrix and the worst-error table (a run of timings only says so)."""
    if frame.empty:
        return []
    measured = measured_names()
    if frame["suite"].isin(measured).all():
        return ["## Conformance", "", "This run has timings only.", ""]
    lines = [
        "## Conformance",
        "",
        "Each cell counts the checks of one suite on one implementation: ✅ all passed, "
        "❌ failures out of those run; *n/s* are cases outside what the implementation "
        "claims, or that compared nothing (not counted as passes). Worst error is the largest "
        "absolute difference from the torch reference of the family with the same weights.",
        "",
        matrix(frame),
        "",
    ]
    errors = errors_matrix(frame[~frame["suite"].isin(measured)])
    if errors:
        lines += ["### Worst absolute error per suite", "", errors, ""]
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


def worst(series: pd.Series) -> str:
    values = series.dropna()
    return "—" if values.empty else f"{values.max():.1e}"




def matrix(frame: pd.DataFrame) -> str:
    """Implementations x suites: counts per cell, and the worst error of each implementation."""
    frame = frame[~frame["suite"].isin(measured_names())]
    suites = sorted(dict.fromkeys(frame["suite"]), key=suite_rank)
    by_machine = frame["machine"].nunique() > 1  # several machines: a row per machine
    keys = ["machine", "impl", "family"] if by_machine else ["impl", "family"]
    rows = []
    for values, group in frame.groupby(keys, sort=False):
        named = dict(zip(keys, values))
        row = {"machine": md(named["machine"])} if by_machine else {}
        row.update({"implementation": md(named["impl"]), "family": md(named["family"])})
        for suite in suites:
            in_suite = group[group["suite"] == suite]
            row[md(suite)] = cell(in_suite) if len(in_suite) else "—"
        row["worst error"] = worst(group["max_error"])
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def errors_matrix(frame: pd.DataFrame) -> str:
    """Worst absolute error per implementation x suite (checks that compare numbers)."""
    measured = frame.dropna(subset=["max_error"])
    if measured.empty:
        return ""
    table = measured.pivot_table(index="impl", columns="suite", values="max_error",
                                 aggfunc="max", sort=False)
    table = table[sorted(table.columns, key=suite_rank)]
    table = table.map(lambda v: "—" if pd.isna(v) else f"{v:.1e}")
    table.index = [md(i) for i in table.index]
    table.columns = [md(c) for c in table.columns]
    return table.to_markdown(disable_numparse=True)
