"""Tolerances: where a value check's bound came from — the family's atol, or the case's own
rounding (max(atol, K x the rounding), harness.conformance.rounding) — and by how much the case's
conditioning moved it. In an ordinary run the rounding is measured only where a check exceeded
the atol; with ``--rounding always`` every comparison measures it, and the table shows every
check's tolerance before and after."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.conformance.rounding import K
from harness.core.text import md
from harness.report.errors import sci


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per record whose rounding was measured by a comparison with the reference (the
    precision checks, which have no atol, apart)."""
    rows = []
    for record in frame.to_dict("records"):
        metrics = record.get("metrics")
        if not isinstance(metrics, dict) or metrics.get("atol_before") is None:
            continue
        before, rounding = metrics["atol_before"], metrics.get("rounding") or 0.0
        error = record.get("max_error")
        decided = error is not None and error > before  # the atol alone would have failed it
        rows.append({"family": record["family"], "suite": record["suite"],
                     "check": record["check"], "case": record["case_id"],
                     "impl": record["impl"], "before": before,
                     "after": max(before, K * rounding), "rounding": rounding,
                     "ratio": metrics.get("rounding_ratio") if decided else None,
                     "outcome": record["outcome"]})
    return pd.DataFrame(rows)


def ratio(group: pd.DataFrame) -> str:
    """The largest error / rounding among comparisons the atol alone would have failed ("—"
    where none did: below the atol the ratio of two tiny numbers says nothing)."""
    found = group["ratio"].dropna()
    return "—" if found.empty else sci(found.max())


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    rows = measured(frame)
    if rows.empty:
        return []
    per_check = []
    for (suite, check), group in rows.groupby(["suite", "check"], sort=True):
        loosened = group[group["after"] > group["before"]]
        per_check.append({
            "check": md(f"{suite}::{check}"), "comparisons": len(group),
            "atol before": ", ".join(sci(v) for v in sorted(set(group["before"]))),
            "largest rounding": sci(group["rounding"].max()),
            "loosened": f"{len(loosened)} of {len(group)}",
            "largest after": sci(group["after"].max()),
            "largest error / rounding": ratio(group),
        })
    widened = rows[rows["after"] > rows["before"]].sort_values("after", ascending=False)
    lines = ["## Tolerances", "",
             f"Where a value check's bound came from. Each comparison with the reference is held "
             f"to max(atol, {K:g} x the case's rounding): the rounding is how far the reference "
             "moves between float32 and float64 with the same weights and inputs (the largest "
             "over the case and three nearby points), so a well-conditioned case keeps the "
             "family's atol and an ill-conditioned one (saturated gates, an unbounded "
             "recurrence) is judged on its own scale. *largest error / rounding*: how many "
             "roundings the implementations were from the float64 answer, among the comparisons "
             "whose error exceeded the atol (the ones the rounding decided); a correct one "
             f"stays within {K:g}. Measured on "
             + ("every comparison (`--rounding always`)." if len(rows) > len(widened)
                else "the comparisons that exceeded the atol."), "",
             pd.DataFrame(per_check).to_markdown(index=False, disable_numparse=True), ""]
    if not widened.empty:
        grouped = []
        for (fam, suite, check, case), group in widened.groupby(
                ["family", "suite", "check", "case"], sort=False):
            grouped.append({"family": md(fam), "check": md(f"{suite}::{check}"),
                            "case": md(case), "before": sci(group["before"].max()),
                            "after": sci(group["after"].max()),
                            "implementations": len(group),
                            "largest error / rounding": ratio(group),
                            "failed": int((group["outcome"] == "failed").sum())})
        lines += ["### Loosened by the case's rounding", "",
                  "Every case whose bound the rounding raised above the atol, largest first.", "",
                  pd.DataFrame(grouped).to_markdown(index=False, disable_numparse=True), ""]
    return lines
