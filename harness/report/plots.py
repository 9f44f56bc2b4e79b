"""The report's plots, drawn with matplotlib (Agg) and saved beside the report.

One panel per family, so a family's implementations are compared with each other and with
their reference, not lost among thirty lines: the family's baseline (torch's module or the
reference loop) is drawn dashed in black, every other implementation in its own colour and
marker; every panel has a title, units and a legend placed outside the data.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping
from pathlib import Path

from harness.conformance.stability import RADII
from harness.core.phases import PHASES
from harness.latency.peak import PEAK

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINES = ("-", "--", "-.", ":")


def FuncFormatter(function):
    from matplotlib.ticker import FuncFormatter as Formatter

    return Formatter(function)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def styles(impls: list[str], baseline: str) -> dict[str, dict]:
    """Line style per implementation: the baseline dashed black, the others a colour and a
    marker each (and a line style, so they stay apart without colour too)."""
    colours = itertools.cycle([f"C{i}" for i in range(10)])
    markers, lines = itertools.cycle(MARKERS), itertools.cycle(LINES[:1] + LINES[2:])
    out = {}
    for impl in impls:
        if impl == baseline:
            out[impl] = {"color": "black", "linestyle": "--", "linewidth": 1.6, "marker": None}
        else:
            out[impl] = {"color": next(colours), "linestyle": next(lines), "linewidth": 1.1,
                         "marker": next(markers), "markersize": 3, "markevery": 0.1}
    return out


def legend(axes) -> None:
    """One legend per row of panels, beside its last panel, from whichever panel has lines."""
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            axes[-1].legend(handles, labels, fontsize=6, loc="upper left",
                            bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
            return


def margins(fig, *, right_in: float, top_in: float, left_in: float = 0.65,
            bottom_in: float = 0.45) -> None:
    """Fixed margins in inches (the legends sit in the right one): what tight_layout would
    find, without measuring every tick label of every panel first (seconds on big grids)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left_in / width, right=1 - right_in / width,
                        bottom=bottom_in / height, top=1 - top_in / height,
                        wspace=0.25, hspace=0.45)


def plot_curves(rows, path: Path, baselines: Mapping[str, str]) -> Path:
    """||dL/dh_t|| by lag: a row of panels per family, one panel per initialisation."""
    plt = pyplot()
    from matplotlib import ticker

    families = list(dict.fromkeys(rows["family"]))
    inits = [i for i in RADII if any(m["init"] == i for m in rows["metrics"])]
    fig, axes = plt.subplots(len(families), len(inits), squeeze=False, sharex=True,
                             figsize=(3.4 * len(inits) + 1.8, 2.6 * len(families)))
    for r, name in enumerate(families):
        mine = rows[rows["family"] == name]
        style = styles(list(dict.fromkeys(mine["impl"])), baselines.get(name, ""))
        for c, init in enumerate(inits):
            ax = axes[r][c]
            panel = mine[mine["metrics"].map(lambda m, i=init: m["init"] == i)]
            drawn = False
            for _, row in panel.iterrows():
                norms = [n if n > 0 and math.isfinite(n) else float("nan")
                         for n in row["metrics"]["norms"]]
                ax.semilogy(range(len(norms)), norms, label=row["impl"], **style[row["impl"]])
                drawn = drawn or any(not math.isnan(n) for n in norms)
            if panel.empty:
                ax.text(0.5, 0.5, "not applicable", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes)
            ax.set_title(f"{name} · {init}", fontsize=8)
            if drawn:
                # norms may span hundreds of decades (an exploding initialisation): a few
                # major ticks and no minor ones, or laying out and drawing takes seconds
                ax.yaxis.set_major_locator(ticker.LogLocator(numticks=6))
                ax.yaxis.set_minor_locator(ticker.NullLocator())
                # plain "1e-42" labels: typesetting 10^-42 with mathtext costs a second
                ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:.0e}"))
            ax.grid(True, which="major", alpha=0.3)
            if c == 0:
                ax.set_ylabel("||dL/dh_t||", fontsize=7)
            if r == len(families) - 1:
                ax.set_xlabel("lag (steps back from the loss)", fontsize=7)
            ax.tick_params(labelsize=6)
        legend(axes[r])
    fig.suptitle("Gradient norm by lag, per family (baseline dashed)", fontsize=9)
    margins(fig, right_in=1.8, top_in=0.45)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_latency(measured: dict, families: Mapping[str, str], baselines: Mapping[str, str],
                 output: Path, suffix: str = "") -> list[tuple[Path, str]]:
    """Median latency against sequence length and against hidden size, where the timings vary
    them (other dimensions held at their most common value): a column per family, a row per
    phase."""
    plt = pyplot()
    made = []
    for kind, axes_of_kind in PLOTTED.items():
        rows = [(impl, phase, t.case, t.median_s) for (impl, _, phase), t in measured.items()
                if impl != PEAK and t.case is not None and t.case.lengths is None
                and getattr(t.case, "kind", "module") == kind]
        made += plot_kind(plt, rows, axes_of_kind, families, baselines, output,
                          suffix=("" if kind == "module" else "-ops") + suffix)
    return made


# Per kind of subject: the dimensions a latency plot may vary, with their axis labels, and the
# dimensions held at their most common value.
PLOTTED = {
    "module": ((("seq_len", "sequence length T"), ("hidden_size", "hidden size H")),
               ("seq_len", "batch", "hidden_size")),
    "op": ((("seq_len", "sequence length T"),), ("seq_len", "batch", "heads", "key_dim")),
}


def plot_kind(plt, rows, axes_of_kind, families, baselines, output: Path, *, suffix: str
              ) -> list[tuple[Path, str]]:
    made = []
    plotted, dimensions = axes_of_kind
    for axis, label in plotted:
        others = [k for k in dimensions if k != axis]
        if len({getattr(c, axis) for _, _, c, _ in rows}) < 2:
            continue
        common = {k: statistics.mode([getattr(c, k) for _, _, c, _ in rows]) for k in others}
        lines: dict[tuple[str, str], dict[str, list]] = {}  # (family, phase) -> impl -> points
        for impl, phase, case, median in rows:
            if all(getattr(case, k) == common[k] for k in others):
                lines.setdefault((families[impl], phase), {}).setdefault(impl, []).append(
                    (getattr(case, axis), median * 1e3))
        panels = {key: impls for key, impls in lines.items()
                  if sum(len(p) >= 2 for p in impls.values())}
        names = list(dict.fromkeys(f for f, _ in panels))
        phases = [p for p in PHASES if any(q == p for _, q in panels)]
        if not panels:
            continue
        fig, axes = plt.subplots(len(phases), len(names), squeeze=False,
                                 figsize=(3.3 * len(names) + 1.8, 2.8 * len(phases)))
        for r, phase in enumerate(phases):
            for c, name in enumerate(names):
                ax = axes[r][c]
                impls = panels.get((name, phase), {})
                style = styles(sorted(impls), baselines.get(name, ""))
                for impl, points in sorted(impls.items()):
                    if len(points) >= 2:
                        ax.plot(*zip(*sorted(points)), label=impl,
                                **{**style[impl], "markevery": 1})
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_title(f"{name} · {phase.replace('_', '+')}", fontsize=8)
                ax.grid(True, alpha=0.3)
                ax.tick_params(labelsize=6)
                if c == 0:
                    ax.set_ylabel("median ms", fontsize=7)
                if r == len(phases) - 1:
                    ax.set_xlabel(label, fontsize=7)
        for c in range(len(names)):  # a family's legend under its column
            handles, labels = [], []
            for r in range(len(phases)):
                for handle, text in zip(*axes[r][c].get_legend_handles_labels()):
                    if text not in labels:
                        handles.append(handle)
                        labels.append(text)
            axes[-1][c].legend(handles, labels, fontsize=6, loc="upper center", ncol=2,
                               bbox_to_anchor=(0.5, -0.25), borderaxespad=0)
        fixed = ", ".join(f"{k}={v}" for k, v in common.items())
        fig.suptitle(f"Latency against {label} ({fixed}), per family (baseline dashed)",
                     fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=1.5)
        path = output.parent / f"{output.stem}-latency-{axis}{suffix}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append((path, label))
    return made


EXACT = 1e-9  # where an error of exactly zero is drawn on a log axis


def plot_tradeoff(points: Mapping[str, list[tuple[str, float, float]]], path: Path) -> Path:
    """Speed against accuracy: a panel per family, one point per implementation — its output
    error (rel RMS, log) against its latency over the family's reference; the reference sits at
    (exact, 1.00x)."""
    plt = pyplot()
    names = list(points)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(3.6 * columns, 3.0 * rows))
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        for (impl, error, ratio), colour, marker in zip(
                points[name], itertools.cycle([f"C{i}" for i in range(10)]),
                itertools.cycle(MARKERS)):
            x = max(error, EXACT)
            ax.scatter([x], [ratio], color=colour, marker=marker, s=30, zorder=3)
            ax.annotate(impl, (x, ratio), xytext=(4, 3), textcoords="offset points",
                        fontsize=6)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, zorder=1)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}x"))
        ax.margins(x=0.35, y=0.25)
        ax.set_title(f"{name} · inference, standard shape", fontsize=8)
        ax.set_xlabel(f"output rel RMS error (exact drawn at {EXACT:g})", fontsize=7)
        ax.set_ylabel("latency / reference (below 1 is faster)", fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=6)
    fig.suptitle("Speed against accuracy (dashed: the reference's latency)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
