"""The families torch does not have, against torch's GRU: what a parallel minGRU (or a scan of
RG-LRU, or a fused IndRNN) buys on this machine, per shape and phase. The papers' headline
speedups are against a sequential loop on a GPU; here every figure is a ratio of medians
measured side by side in the same run, on the machine the report names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.core.text import md
from harness.latency.jobs import LATENCY
from harness.latency.ratios import ratio
from harness.latency.samples import samples_per_process
from harness.report.sections.verdict import records_of

YARDSTICK = "torch-gru"


def shape_order(case_id: str) -> tuple[int, ...]:
    """T256-B2-I64-H64 before T1024-B2-I64-H64: by the numbers in the id."""
    return tuple(int("".join(c for c in part if c.isdigit()) or 0)
                 for part in case_id.split("-"))
TORCH_FAMILIES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    latency = frame[frame["suite"] == LATENCY]
    if latency.empty or latency["machine"].nunique() > 1:
        return []
    samples = samples_per_process(records_of(latency))
    families = dict(zip(latency["impl"], latency["family"]))
    rows = []
    for (impl, case_id, phase), mine in samples.items():
        gru = samples.get((YARDSTICK, case_id, phase))
        if gru is None or families.get(impl) in TORCH_FAMILIES:
            continue
        rows.append({"shape": case_id, "phase": phase.replace("_", "+"),
                     "implementation": md(impl), "family": md(families[impl]),
                     "ratio": str(ratio(mine, gru))})
    if not rows:
        return []
    shapes = sorted({r["shape"] for r in rows}, key=shape_order)
    table = pd.DataFrame(rows).pivot_table(index=["family", "implementation", "phase"],
                                           columns="shape", values="ratio", aggfunc="first")
    table = table[shapes].reset_index().rename(columns={s: md(s) for s in shapes})
    return ["## Against torch's GRU", "",
            f"Each implementation of a family torch does not have, timed against {YARDSTICK} "
            "at the same shape in the same run: the ratio of medians with its 95% interval "
            "(below 1.00x is faster). A parallel scan does the same work in fewer sequential "
            "steps; on a CPU that pays off on long sequences at small width, not at the "
            "standard shape.", "",
            table.to_markdown(index=False, disable_numparse=True), ""]
