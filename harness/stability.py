"""How gradients flow back through time: the vanishing and exploding gradients of the course.

For a loss on the last step, ||dL/dh_t|| is measured at every earlier step t by running the
implementation one step at a time (the contract guarantees that equals the full run) and reading
the gradient that reaches each carried state. Pascanu et al. (2013) bound it by the recurrent
weights' spectral radius to the power of the lag, so the curves are measured at torch's standard
initialisation and with the recurrent weights rescaled to spectral radius 0.5, 1.0 and 1.5.
From each curve: the fitted per-step rate (below 1 vanishes, above 1 explodes), the lag at which
the gradient falls below 1e-6 of its value at the last step, and whether anything became
non-finite.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy import stats
from torch import Tensor

from harness.core.case import Case
from harness.core.contract import Inputs
from harness.gradients import NoGradient

# Initialisations the curves are measured at: torch's standard one, and spectral radii.
RADII: dict[str, float | None] = {"standard": None, "rho0.5": 0.5, "rho1.0": 1.0, "rho1.5": 1.5}
STANDARD = Case(seq_len=200, batch=4, input_size=16, hidden_size=32)
VANISHED = 1e-6  # a gradient below this fraction of its last-step value has vanished


@dataclass(frozen=True)
class Curve:
    """||dL/dh_{T-k}|| for lags k = 0 .. T-1 (k = 0 is the last step, where the loss is).
    reached: whether any gradient reached h_{T-k} at all (a norm of 0 can still be reached)."""

    norms: tuple[float, ...]
    reached: tuple[bool, ...] | None = None

    def unreached_lags(self, other: Curve) -> list[int]:
        """Lags where ``other``'s gradient reached h_t and this curve's did not."""
        if self.reached is None or other.reached is None:
            return []
        return [k for k, (mine, theirs) in enumerate(zip(self.reached, other.reached))
                if theirs and not mine]

    @property
    def nonfinite(self) -> bool:
        return not all(math.isfinite(n) for n in self.norms)

    @property
    def rate(self) -> float | None:
        """exp(slope) of log-norm against lag, over finite non-zero norms: the factor the
        gradient is multiplied by per step back in time."""
        points = [(k, math.log(n)) for k, n in enumerate(self.norms) if math.isfinite(n) and n > 0]
        if len(points) < 3:
            return None
        lags, logs = zip(*points)
        if max(logs) == min(logs):
            return 1.0
        return math.exp(stats.linregress(lags, logs).slope)

    @property
    def vanish_lag(self) -> int | None:
        """The first lag at which the norm is below 1e-6 of the last step's; None if never."""
        last = self.norms[0]
        for lag, norm in enumerate(self.norms):
            if math.isfinite(norm) and norm < VANISHED * last:
                return lag
        return None


def gradient_curve(run, module, case: Case, inputs: Inputs, *, seed: int) -> Curve:
    """Run one step at a time carrying the state; backward from a random gradient on the last
    step's h; read dL/dh_t on each carried h."""
    step = case.with_(seq_len=1, lengths=None)
    time_dim = 1 if case.batch_first else 0
    state, carried, out = inputs.hx, [], None
    for t in range(case.seq_len):
        x_t = inputs.x.narrow(time_dim, t, 1)
        out = run(module, Inputs(x_t, None, state), step)
        if not out.h_n.requires_grad:
            raise NoGradient(f"no gradient reaches h_t: h_n of step {t} was computed without "
                             "autograd (no_grad, detached, or outside torch)")
        out.h_n.retain_grad()
        carried.append(out.h_n)
        state = out.state
    # The loss reads the last state itself, so lag 0 is dL/dh_T = the upstream gradient.
    last = carried[-1]
    generator = torch.Generator().manual_seed(seed)
    upstream = torch.randn(last.shape, generator=generator, dtype=torch.float64)
    (last * upstream.to(last.dtype).to(last.device)).sum().backward()
    norms = [float(h.grad.double().norm()) if h.grad is not None else 0.0 for h in carried]
    reached = [h.grad is not None for h in carried]
    return Curve(tuple(reversed(norms)), tuple(reversed(reached)))


def init_name(case: Case) -> str:
    return "standard" if case.radius is None else f"rho{case.radius:.1f}"


def report_section(frame, output: Path) -> list[str]:
    """Table of rates and lags per implementation x initialisation, and the curves as a PNG
    beside the report (log-scale y, one line per implementation)."""
    import pandas as pd

    from harness.core.text import md

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
    png = plot_curves(rows, output.parent / f"{output.stem}-stability.png")
    lines += [f"![gradient norm by lag]({os.path.relpath(png, output.parent)})", ""]
    return lines


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


def cosine(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    flat_a = torch.cat([t.double().flatten() for t in a])
    flat_b = torch.cat([t.double().flatten() for t in b])
    return float(flat_a @ flat_b / (flat_a.norm() * flat_b.norm()))
