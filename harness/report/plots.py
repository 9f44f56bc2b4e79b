"""The report's plots, drawn with matplotlib (Agg) and saved beside the report."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from harness.conformance.stability import RADII
from harness.core.phases import PHASES
from harness.latency.peak import PEAK


def plot_curves(rows, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    inits = [i for i in RADII if any(r["init"] == i for r in rows["metrics"])]
    fig, axes = plt.subplots(1, len(inits), figsize=(4.2 * len(inits), 3.8), sharey=True,
                             squeeze=False)
    for ax, init in zip(axes[0], inits):
        for _, row in rows[rows["metrics"].map(lambda m, i=init: m["init"] == i)].iterrows():
            norms = [n if n > 0 and math.isfinite(n) else float("nan")
                     for n in row["metrics"]["norms"]]
            ax.semilogy(range(len(norms)), norms, label=row["impl"], linewidth=1)
        ax.set_title(init)
        ax.set_xlabel("lag (steps back from the loss)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("||dL/dh_t||")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(measured: dict, families: dict, output: Path,
                 suffix: str = "") -> list[tuple[Path, str]]:
    """Median latency against hidden size and against sequence length, where the grid varies
    them (other dimensions held at their most common value); one line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    # (impl, phase, case, median) of fixed-length shapes: packed ones are compared in the tables.
    rows = [(impl, phase, t.case, t.median_s) for (impl, _, phase), t in measured.items()
            if impl != PEAK and t.case is not None and t.case.lengths is None]
    made = []
    for axis, label in (("hidden_size", "hidden size"), ("seq_len", "sequence length")):
        values = {getattr(c, axis) for _, _, c, _ in rows}
        if len(values) < 2:
            continue
        others = [k for k in ("seq_len", "batch", "hidden_size") if k != axis]
        common = {k: statistics.mode([getattr(c, k) for _, _, c, _ in rows]) for k in others}
        lines: dict[str, dict[str, list]] = {}  # phase -> implementation -> (x, median) points
        for impl, phase, case, median in rows:
            if all(getattr(case, k) == common[k] for k in others):
                lines.setdefault(phase, {}).setdefault(impl, []).append(
                    (getattr(case, axis), median))
        phases = [p for p in PHASES
                  if any(len(points) >= 2 for points in lines.get(p, {}).values())]
        if not phases:
            continue
        fig, axes = plt.subplots(1, len(phases), figsize=(4.5 * len(phases), 3.8), squeeze=False)
        for ax, phase in zip(axes[0], phases):
            for impl, points in sorted(lines[phase].items()):
                if len(points) >= 2:
                    ax.plot(*zip(*sorted(points)), marker="o", label=impl, linewidth=1)
            ax.set_yscale("log")
            ax.set_title(phase.replace("_", "+"))
            ax.set_xlabel(label)
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("median seconds")
        axes[0][-1].legend(fontsize=6)
        fixed = ", ".join(f"{k}={v}" for k, v in common.items())
        fig.suptitle(f"latency against {label} ({fixed})", fontsize=9)
        fig.tight_layout()
        path = output.parent / f"{output.stem}-latency-{axis}{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append((path, label))
    return made
