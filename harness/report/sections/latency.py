"""Latency: on the report's page, a compact table per phase at the standard shapes and plots of
latency against hidden size and sequence length; beside it, per phase, implementation x shape with
median, spread, ratio to torch, throughput, roofline fraction and peak memory, noisy and suspect
figures marked, first calls and packed versus padded. Timings from different machines are never
merged: a section each."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.core.phases import PHASES
from harness.core.text import md
from harness.latency.grids import LATENCY_GRIDS
from harness.latency.jobs import LATENCY
from harness.latency.peak import PEAK
from harness.latency.samples import (
    NOISY_IQR,
    NOISY_SPREAD,
    first_calls,
    partial_failures,
    peak_of,
    reference_impl,
    timings,
)
from harness.records import Record
from harness.report.plots import plot_latency


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    """The latency section: on the report's page, one compact table per phase at the standard
    shapes and the plots; every figure of every shape in a details file beside the report
    (``latency.md`` for a README.md, else ``<stem>-latency.md``), or in collapsed blocks when
    the report is not written to a file. Timings from different machines are never merged."""
    latency = frame[frame["suite"] == LATENCY]
    machines = list(dict.fromkeys(latency["machine"]))
    page, details = [], []
    for number, machine in enumerate(machines):
        rows = latency[latency["machine"] == machine]
        records = [Record.from_dict({k: v for k, v in row.items()
                                     if k in Record.__dataclass_fields__})
                   for row in rows.to_dict("records")]
        title = f"Latency on {machine}" if len(machines) > 1 else "Latency"
        suffix = f"-{number}" if len(machines) > 1 else ""
        page += compact_section(records, output, title=title, suffix=suffix)
        details += machine_section(records, title=title)
    if not details:
        return page
    if output is None:
        return [*page, "<details><summary>Every shape and figure</summary>", "", *details,
                "</details>", ""]
    path = details_path(output)
    path.write_text("\n".join([
        "# seq-harness latency details", "",
        f"Every timing behind [the report]({output.name}), per phase and shape.", "",
        *details]))
    return [*page, f"Every shape and figure (IQR, spread, throughput, % of the machine's peak, "
                   f"memory, kernel, first calls, packed versus padded): [{path.name}]"
                   f"({path.name}).", ""]


def details_path(output: Path) -> Path:
    return output.parent / ("latency.md" if output.stem == "README"
                            else f"{output.stem}-latency.md")


def shown_shapes(measured: dict) -> list[str]:
    """The shapes of the compact tables: the standard grid's where timed, else the one shape
    every timing shares (none when the timings vary it)."""
    timed = list(dict.fromkeys(case_id for (impl, case_id, _) in measured if impl != PEAK))
    standard = [c.id for c in LATENCY_GRIDS["standard"].cases if c.id in timed]
    return standard or (timed if len(timed) == 1 else [])


def compact_section(records: list[Record], output: Path | None, *, title: str,
                    suffix: str) -> list[str]:
    """Per phase, implementation x standard shape: median and ratio to the family's baseline,
    noisy figures marked; then the plots."""
    measured = timings(records)
    families = {r.impl: r.family for r in records}
    shapes = shown_shapes(measured)
    lines = [f"## {md(title)}", ""]
    tables, noisy = [], 0
    for phase in PHASES:
        rows = {}
        for (impl, case_id, p), t in measured.items():
            if p != phase or impl == PEAK or case_id not in shapes:
                continue
            row = rows.setdefault(impl, {"family": md(families[impl]),
                                         "implementation": md(impl)})
            reference = measured.get((reference_impl(families[impl]), case_id, phase))
            mark = f" {SUSPECT}" if t.noise else ""
            noisy += bool(t.noise)
            row[f"{case_id} ms"] = f"{t.median_s * 1e3:.2f}{mark}"
            row[f"{case_id} ratio"] = (f"{t.median_s / reference.median_s:.2f}x"
                                       if reference else "—")
        if rows:
            table = pd.DataFrame(list(rows.values())).fillna("—")
            table = table.sort_values(["family", "implementation"], kind="stable")
            tables += [f"### {phase.replace('_', '+')}", "",
                       table.to_markdown(index=False, disable_numparse=True), ""]
    if tables:
        lines += ["Median milliseconds per call at " + " and ".join(md(s) for s in shapes)
                  + " (T-B-I-H), and the ratio to the family's baseline (below 1.00x is "
                  f"faster). {SUSPECT} marks a noisy timing (the blocks scatter or the worker "
                  f"processes disagree): {noisy} here.", "", *tables]
    if output is not None:
        baselines = {f: reference_impl(f) for f in set(families.values())}
        for png, what in plot_latency(measured, families, baselines, output, suffix=suffix):
            lines += [f"![latency against {what}]({os.path.relpath(png, output.parent)})", ""]
    return lines if len(lines) > 2 else []


SUSPECT = "⚠"  # marks a figure not to be trusted as printed; the legend line says why


def kernel_label(kernel: dict | None) -> str:
    """'AVX512 · oneDNN GEMM': the ISA torch dispatched to, and the GEMM library the
    implementation chose where it says."""
    if not isinstance(kernel, dict):
        return "—"
    parts = [str(kernel.get("gpu") or kernel.get("cpu_capability") or "?")]
    if kernel.get("gemm_backend"):
        parts.append({"aten": "BLAS", "onednn": "oneDNN"}.get(kernel["gemm_backend"],
                                                              kernel["gemm_backend"]) + " GEMM")
    return " · ".join(parts)


def machine_section(records: list[Record], *, title: str) -> list[str]:
    """Per phase: implementation x shape with median, spread, ratio to torch, throughput,
    roofline fraction and peak memory, noisy and suspect figures marked; timings that failed in
    some processes only; first calls; packed versus padded."""
    measured = timings(records)
    peak = peak_of(measured)
    families = {r.impl: r.family for r in records}
    kernels = {(r.impl, r.case_id, r.check): kernel_label(r.metrics.get("kernel"))
               for r in records if r.metrics.get("kernel")}
    lines = [f"## {md(title)}", "",
             "Medians over every timed block of every worker process (torch.utils.benchmark "
             "blocked_autorange; a call of 50 ms or more is one block by itself; one process at a "
             "time). *IQR* is the interquartile range over "
             "the median; *spread* the largest over the smallest per-process median; *ratio* is "
             "the median over the family's baseline (torch's module for torch's families, the "
             "reference loop for the others); *% peak* is GFLOP/s (analytic matmul FLOPs, the "
             "family's formula) over this machine's matmul peak (below); *peak MB* is the "
             "tensor memory high-water mark of one call as torch's allocator sees it; *RSS MB* "
             "the growth of the process's peak resident memory during one call (memory another "
             "runtime holds shows here; memory kept from earlier calls does not); *kernel* is "
             "the instruction set torch dispatched to and, where the implementation reports "
             "it, the GEMM library it chose (aten's BLAS or oneDNN).", ""]
    if peak is not None:
        gflops, point = peak
        backend = next(r.metrics.get("backend") for r in records
                       if r.impl == PEAK and r.case_id == point)
        lines += [f"Machine peak: {gflops:.1f} GFLOP/s float32, reached by {md(backend)} on a "
                  f"{point.rsplit('-', 1)[1]}-square GEMM: the best of a sweep of GEMM sizes "
                  "and backends timed in every worker process of this run.", ""]
    noisy = suspect = 0
    for phase in PHASES:
        rows = []
        for (impl, case_id, p), t in measured.items():
            if p != phase or impl == PEAK:
                continue
            reference = measured.get((reference_impl(families[impl]), case_id, phase))
            share = t.gflops / peak[0] if peak else None
            marks = []
            if t.noise:
                marks.append(f"{SUSPECT} noisy: {t.noise}")
                noisy += 1
            if share is not None and share > 1:
                marks.append(f"{SUSPECT} above the machine peak")
                suspect += 1
            rows.append({
                "implementation": md(impl),
                "shape": md(case_id),
                "median ms": f"{t.median_s * 1e3:.3f}",
                "IQR": f"{t.iqr_s / t.median_s:.1%}",
                "spread": f"{t.process_spread:.3f}",
                "ratio": f"{t.median_s / reference.median_s:.2f}x" if reference else "—",
                "tokens/s": f"{t.tokens_per_s:,.0f}",
                "GFLOP/s": f"{t.gflops:.2f}",
                "% peak": "—" if share is None else (
                    f"{SUSPECT} {share:.0%}" if share > 1 else f"{share:.0%}"),
                "peak MB": "—" if t.peak_bytes is None else f"{t.peak_bytes / 2**20:.1f}",
                "RSS MB": mb(t.peak_rss_bytes),
                "kernel": md(kernels.get((impl, case_id, p), "—")),
                "note": md("; ".join(marks)),
            })
        if not rows:
            continue
        table = pd.DataFrame(rows).sort_values(["shape", "implementation"], kind="stable")
        if not table["note"].str.len().any():
            table = table.drop(columns="note")
        lines += [f"### {phase.replace('_', '+')}", "",
                  table.to_markdown(index=False, disable_numparse=True), ""]
    timed = sum(1 for (impl, _, _) in measured if impl != PEAK)
    lines += [f"{SUSPECT} marks a figure not to be trusted as printed: *noisy* when the blocks "
              f"scatter (IQR above {NOISY_IQR:.0%} of the median) or the processes disagree "
              f"(spread above {NOISY_SPREAD:g}); *above the machine peak* when a timing's "
              "GFLOP/s exceeds the peak measured in the same run (the FLOP count or the timing "
              f"is off). This run: {noisy} of {timed} timings noisy, {suspect} above the peak.",
              ""]
    partial = partial_failures(records)
    if partial:
        lines += ["### Timings that failed in some processes only", "",
                  "The same timing passed in other worker processes: the failure depends on "
                  "what ran before it in the process, or on chance.", ""]
        lines += [f"- {md(p)}" for p in partial] + [""]
    lines += first_call_table(records, measured)
    lines += packed_versus_padded(measured)
    return lines


def mb(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.1f}"


def first_call_table(records: list[Record], measured: dict) -> list[str]:
    """Per implementation and shape: the first call in a fresh process next to the steady
    state, the graphs torch.compile captured, and the memory it took."""
    rows = []
    for (impl, case_id), first in first_calls(records).items():
        steady = measured.get((impl, case_id, "inference"))
        rows.append({
            "implementation": md(impl), "shape": md(case_id),
            "first call s": f"{first.seconds:.3f}",
            "inference median ms": "—" if steady is None else f"{steady.median_s * 1e3:.3f}",
            "first / steady": "—" if steady is None else f"{first.seconds / steady.median_s:.0f}x",
            "graphs": str(first.graphs), "graph breaks": str(first.graph_breaks),
            "RSS MB": mb(first.rss_bytes),
        })
    if not rows:
        return []
    table = pd.DataFrame(rows).sort_values(["shape", "implementation"], kind="stable")
    return ["### First call", "",
            "Construction, weight loading, compile/export/script and one inference call, timed "
            "once in a worker process that ran nothing before (with an empty inductor cache: a "
            "cold compile); *graphs*: what torch.compile captured during it (0: nothing "
            "compiled); *RSS MB*: the process's peak resident memory growth during it.", "",
            table.to_markdown(index=False, disable_numparse=True), ""]


def packed_versus_padded(measured: dict) -> list[str]:
    """Where a grid times a variable-length batch (fed packed) and the same batch padded to its
    longest sequence, the cost of each way per valid token."""
    rows = []
    for (impl, _, phase), packed in measured.items():
        case = packed.case
        if impl == PEAK or case is None or not case.varlen:
            continue
        padded = measured.get((impl, case.with_(lengths=None).id, phase))
        if padded is None:
            continue
        valid = sum(case.lengths)
        rows.append({
            "implementation": md(impl), "phase": phase.replace("_", "+"),
            "shape": md(case.id),
            "padded ms": f"{padded.median_s * 1e3:.3f}",
            "packed ms": f"{packed.median_s * 1e3:.3f}",
            "packed / padded": f"{packed.median_s / padded.median_s:.2f}x",
            "valid tokens/s padded": f"{valid / padded.median_s:,.0f}",
            "valid tokens/s packed": f"{valid / packed.median_s:,.0f}",
        })
    if not rows:
        return []
    table = pd.DataFrame(rows).sort_values(["shape", "phase", "implementation"], kind="stable")
    return ["### Variable lengths: packed versus padded", "",
            "The same batch (lengths uniform in [T/3, T]) fed packed (or with lengths=, for "
            "entries that pack internally) and padded to its longest sequence. Packing skips "
            "the padded steps and pays for sorting and bookkeeping; below 1.00x it wins.", "",
            table.to_markdown(index=False, disable_numparse=True), "",
            "A packed GRU's forward+backward is slow because of torch itself: on the CPU its "
            "packed path takes one slice of the input projection per time step, and the "
            "backward of each slice zero-fills and adds a gradient the size of the whole "
            "projection (O(T) full passes; at the standard shape, about 4x the padded call). "
            "torch's LSTM escapes it only when every length is equal (its oneDNN kernel). "
            "Figures and a standalone reproduction: docs/packed-gru-backward.md in the "
            "seq-harness repository.", ""]
