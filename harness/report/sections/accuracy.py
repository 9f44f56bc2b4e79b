"""Accuracy: how far from float each implementation is — at the standard shape (ordinary inputs
and inputs x100), and per suite — as measurements: max abs, relative RMS and 99th percentile
errors of outputs and final states against torch's module; gradients apart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.conformance.suites import suite_rank
from harness.core.text import md
from harness.report.errors import (
    ACCURACY,
    LARGE_CHECK,
    STANDARD_CHECK,
    pooled_of,
    sci,
    tensors_at,
    tolerance_of,
)


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    standard, per_suite = standard_table(frame), suite_table(frame)
    if not standard and not per_suite:
        return []
    lines = ["## Accuracy", "",
             "How far from float: errors against torch's module of the same family with the same "
             "weights. *rel RMS* is ||ref - impl||_2 / ||ref||_2, *p99* the 99th percentile "
             "absolute error; *tolerance* what the value checks were held to (declared by the "
             "implementation, or the family default). Gradients and stability's log-norms are "
             "never counted as output errors.", ""]
    if standard:
        lines += ["### At the standard shape", "",
                  "T=100, B=64, I=H=512 (the accuracy suite), output and final states; inputs "
                  f"x100 saturate the gates ({large_shape(frame)}).", "", standard, ""]
    if per_suite:
        lines += ["### Per suite", "",
                  "Each cell: the largest absolute error · the relative RMS error of outputs and "
                  "final states over every comparison with the reference in the suite's checks; "
                  "*gradients*: the same for the gradients suite's gradients.", "",
                  per_suite, ""]
    return lines


def large_shape(frame: pd.DataFrame) -> str:
    """The shape the x100 figures were measured at (B=8 unless the run used --scale full)."""
    rows = frame[(frame["suite"] == ACCURACY) & (frame["check"] == LARGE_CHECK)]
    found = sorted({c for c in rows["case_id"] if c})
    return ", ".join(found) or "not measured"


def standard_table(frame: pd.DataFrame) -> str:
    rows = []
    for impl in dict.fromkeys(frame["impl"]):
        ordinary = tensors_at(frame, impl, STANDARD_CHECK)
        if ordinary is None:
            continue
        large = tensors_at(frame, impl, LARGE_CHECK) or {}
        out = ordinary.get("output", {})
        states = [ordinary[n]["max_abs"] for n in ("h_n", "c_n") if n in ordinary]
        rows.append({
            "implementation": md(impl),
            "tolerance": md(tolerance_of(frame, impl)),
            "rel RMS": sci(out.get("rel_rms")),
            "max abs": sci(out.get("max_abs")),
            "p99": sci(out.get("p99_abs")),
            "final state max abs": sci(max(states) if states else None),
            "x100 rel RMS": sci(large.get("output", {}).get("rel_rms")),
            "x100 max abs": sci(large.get("output", {}).get("max_abs")),
        })
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else ""


def cell(figures: dict | None) -> str:
    if figures is None:
        return "—"
    return f"{sci(figures['max_abs'])} · {sci(figures['rel_rms'])}"


def suite_table(frame: pd.DataFrame) -> str:
    measured = frame[frame["metrics"].map(lambda m: isinstance(m, dict) and "error" in m)]
    if measured.empty:
        return ""
    # The accuracy suite has its own table above (its x100 inputs would hide the ordinary).
    suites = sorted({s for s in measured["suite"] if s not in ("gradients", ACCURACY)},
                    key=suite_rank)
    rows = []
    for impl, group in measured.groupby("impl", sort=False):
        row = {"implementation": md(impl)}
        for suite in suites:
            row[md(suite)] = cell(pooled_of(group[group["suite"] == suite], "output"))
        row["gradients"] = cell(pooled_of(group[group["suite"] == "gradients"], "gradient"))
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
