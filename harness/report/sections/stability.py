"""Gradient stability: the fitted rate and the lag to 1e-6 of every implementation's gradient
norm curve at each initialisation, and the curves themselves as a plot."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.conformance.stability import RADII
from harness.core.families import family, family_names
from harness.core.text import md
from harness.report.plots import plot_curves


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    """Table of rates and lags per implementation x initialisation, and the curves as a PNG
    beside the report (log-scale y, one line per implementation)."""
    rows = frame[(frame["suite"] == "stability") & (frame["check"] == "gradient_norms_over_time")]
    rows = rows[rows["metrics"].map(lambda m: isinstance(m, dict) and "norms" in m)]
    if rows.empty:
        return []
    table = []
    for _, row in rows.iterrows():
        m = row["metrics"]
        table.append({
            "implementation": md(row["impl"]),
            "init": m["init"],
            "rate per step": "—" if m["rate"] is None else f"{m['rate']:.4f}",
            "lag to 1e-6": "never" if m["vanish_lag"] is None else str(m["vanish_lag"]),
            "non-finite": "yes" if m["nonfinite"] else "no",
        })
    wide = pd.DataFrame(table).pivot_table(
        index="implementation", columns="init", values=["rate per step", "lag to 1e-6"],
        aggfunc="first", sort=False,
    )
    wide.columns = [f"{what} ({init})" for what, init in wide.columns]
    order = [f"{what} ({init})" for what in ("rate per step", "lag to 1e-6") for init in RADII
             if f"{what} ({init})" in wide.columns]
    lines = [
        "## Gradient stability",
        "",
        "||dL/dh_t|| for a loss on the last of 200 steps, by lag back in time, at torch's "
        "standard initialisation and with every recurrent gate block rescaled to spectral "
        "radius 0.5, 1.0 and 1.5. *Rate* is the fitted factor per step (below 1 vanishes, "
        "above 1 explodes); *lag to 1e-6* is where the gradient falls below 1e-6 of its "
        "last-step value.",
        "",
        wide[order].to_markdown(disable_numparse=True),
        "",
    ]
    nonfinite = [r for r in table if r["non-finite"] == "yes"]
    if nonfinite:
        lines += ["Non-finite gradients: " + ", ".join(
            f"{r['implementation']} ({r['init']})" for r in nonfinite) + ".", ""]
    if output is not None:
        baselines = {name: family(name).baseline for name in set(rows["family"])
                     if name in family_names()}
        png = plot_curves(rows, output.parent / f"{output.stem}-stability.png", baselines)
        lines += [f"![gradient norm by lag]({os.path.relpath(png, output.parent)})", ""]
    return lines
