"""Deployment: every variant next to its family's torch reference, in the figures a person picks a
deployment from — how far from float (standard shape), how much of the contract holds, how fast
per phase at the standard shape and at B=1 (median over the reference's), what the first call
costs, and how much memory a call holds."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.conformance.suites import measured_names
from harness.core.phases import PHASES
from harness.core.text import md
from harness.latency.grids import LATENCY_GRIDS
from harness.latency.jobs import LATENCY
from harness.latency.samples import first_calls, reference_impl, timings
from harness.records import FAILED, NOT_SUPPORTED, PASSED, Record
from harness.report.errors import STANDARD_CHECK, sci, tensors_at, tolerance_of
from harness.report.plots import plot_tradeoff

SHAPES = LATENCY_GRIDS["standard"].cases  # B=64 first, then B=1


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    latency = frame[frame["suite"] == LATENCY]
    machines = list(dict.fromkeys(latency["machine"]))
    rows = latency[latency["machine"] == machines[0]] if machines else latency
    records = [Record.from_dict({k: v for k, v in r.items() if k in Record.__dataclass_fields__})
               for r in rows.to_dict("records")]
    measured, first = timings(records), first_calls(records)
    tables, points = [], {}
    for family in dict.fromkeys(frame["family"]):
        table = family_table(frame, family, measured, first)
        if table:
            tables += [f"### {md(family)}", "", table, ""]
            points[family] = tradeoff(frame, family, measured)
    if not tables:
        return []
    points = {family: found for family, found in points.items() if found}
    if output is not None and points:
        png = plot_tradeoff(points, output.parent / f"{output.stem}-deployment.png")
        tables += [f"![speed against accuracy]({os.path.relpath(png, output.parent)})", ""]
    shape = SHAPES[0]
    return ["## Deployment", "",
            "Each implementation next to its family's torch module (first row). *rel RMS*, *max "
            "abs*, *p99*: output errors at the standard shape (the accuracy suite); *checks*: "
            "the conformance suites (passed of run; n/s: not supported); the phase columns: "
            f"median latency over the reference's at the standard shape ({shape.id}) and at "
            "B=1 (below 1.00x is faster; n/s: not supported, — not timed); *first call*: "
            "construction + compile/export + one inference call in a fresh process, at the "
            "standard shape; *peak MB*: torch's allocator high-water mark of one inference "
            "call; *RSS MB*: the process's peak RSS growth during the first call (memory any "
            "runtime holds)." + (f" Timings from {md(machines[0])}." if len(machines) > 1
                                 else ""), "", *tables]


def checks_cell(frame: pd.DataFrame, impl: str) -> str:
    rows = frame[(frame["impl"] == impl) & ~frame["suite"].isin([*measured_names(), LATENCY])]
    if rows.empty:
        return "—"
    counts = rows["outcome"].value_counts()
    passed, failed = int(counts.get(PASSED, 0)), int(counts.get(FAILED, 0))
    unsupported = int(counts.get(NOT_SUPPORTED, 0))
    text = f"❌ {failed} of {passed + failed}" if failed else f"✅ {passed}"
    return text + (f" · {unsupported} n/s" if unsupported else "")


def tradeoff(frame: pd.DataFrame, family: str, measured: dict
             ) -> list[tuple[str, float, float]]:
    """(implementation, output rel RMS, inference latency over the reference) at the standard
    shape, for every implementation of the family with both figures, the reference included."""
    reference, standard = reference_impl(family), SHAPES[0].id
    theirs = measured.get((reference, standard, "inference"))
    found = []
    for impl in dict.fromkeys(frame.loc[frame["family"] == family, "impl"]):
        mine = measured.get((impl, standard, "inference"))
        out = (tensors_at(frame, impl, STANDARD_CHECK) or {}).get("output", {})
        error = 0.0 if impl == reference else out.get("rel_rms")
        if mine is not None and theirs is not None and error is not None:
            found.append((impl, float(error), mine.median_s / theirs.median_s))
    return found if len(found) > 1 else []


def ratio_cell(impl: str, reference: str, case_id: str, phase: str, measured: dict,
               frame: pd.DataFrame) -> str:
    mine, theirs = measured.get((impl, case_id, phase)), measured.get((reference, case_id, phase))
    if mine is not None and theirs is not None:
        return f"{mine.median_s / theirs.median_s:.2f}x"
    unsupported = frame[(frame["impl"] == impl) & (frame["suite"] == LATENCY)
                        & (frame["check"] == phase) & (frame["case_id"] == case_id)
                        & (frame["outcome"] == NOT_SUPPORTED)]
    return "n/s" if not unsupported.empty else "—"


def family_table(frame: pd.DataFrame, family: str, measured: dict, first: dict) -> str:
    reference = reference_impl(family)
    shapes = {shape.id for shape in SHAPES}
    members = list(dict.fromkeys(frame.loc[frame["family"] == family, "impl"]))
    timed = [i for i in members if any(key[0] == i and key[1] in shapes for key in measured)]
    # With timings at the standard shapes, the implementations that were timed; without, every
    # implementation with accuracy figures.
    impls = timed or [i for i in members if tensors_at(frame, i, STANDARD_CHECK) is not None]
    if len(impls) < 2 or reference not in impls:
        return ""
    impls = [reference] + sorted(i for i in impls if i != reference)
    standard = SHAPES[0].id
    rows = []
    for impl in impls:
        out = (tensors_at(frame, impl, STANDARD_CHECK) or {}).get("output", {})
        row = {"implementation": md(impl), "tolerance": md(tolerance_of(frame, impl)),
               "rel RMS": sci(out.get("rel_rms")), "max abs": sci(out.get("max_abs")),
               "p99": sci(out.get("p99_abs")), "checks": checks_cell(frame, impl)}
        for phase in PHASES:
            for shape in SHAPES:
                column = f"{phase.replace('_', '+')} B={shape.batch}"
                row[column] = ratio_cell(impl, reference, shape.id, phase, measured, frame)
        call = first.get((impl, standard))
        inference = measured.get((impl, standard, "inference"))
        row["first call"] = "—" if call is None else f"{call.seconds:.2f} s"
        row["peak MB"] = ("—" if inference is None or inference.peak_bytes is None
                          else f"{inference.peak_bytes / 2**20:.1f}")
        row["RSS MB"] = ("—" if call is None or call.rss_bytes is None
                         else f"{call.rss_bytes / 2**20:.1f}")
        rows.append(row)
    table = pd.DataFrame(rows)
    idle = [c for c in table.columns if (table[c] == "—").all()]  # phases not timed
    return table.drop(columns=idle).to_markdown(index=False, disable_numparse=True)
