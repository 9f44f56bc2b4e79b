"""The adding problem: best test MSE and the steps to solve it, per implementation and length."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.conformance.adding import CONSTANT_MSE, SOLVED_MSE
from harness.core.text import md


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    """Implementation x T: best test MSE and the steps it took to solve."""
    rows = frame[(frame["suite"] == "adding") & (frame["check"] == "adding_problem")]
    rows = rows[rows["metrics"].map(lambda m: isinstance(m, dict) and "best_mse" in m)]
    if rows.empty:
        return []
    table = []
    for _, row in rows.iterrows():
        m = row["metrics"]
        solved = (f"solved at step {m['steps_to_solve']}" if m["steps_to_solve"] is not None
                  else f"not solved in {m['steps_run']} steps")
        table.append({"implementation": md(row["impl"]), "T": f"T={m['seq_len']}",
                      "result": f"{m['best_mse']:.4f} ({solved})"})
    wide = pd.DataFrame(table).pivot_table(index="implementation", columns="T", values="result",
                                           aggfunc="first", sort=False)
    wide = wide[sorted(wide.columns, key=lambda c: int(c[2:]))]
    first = rows.iloc[0]["metrics"]
    return [
        "## Adding problem",
        "",
        f"Best test MSE ({first['test_size']} held-out sequences) and the step at which it fell "
        f"below {SOLVED_MSE} (solved). Predicting a constant gives {CONSTANT_MSE:.3f}. Every "
        f"implementation starts from its family's same initial weights (hidden size "
        f"{first['hidden_size']}) and sees the same batches of {first['batch']}: Adam at lr "
        f"{first['lr']}, gradient norm clipped to {first['clip']}, evaluation every "
        f"{first['eval_every']} steps, training stops when solved or at the step budget "
        "(600 steps at T=50, 1500 beyond). Seeds: the case's data seed, recorded per run.",
        "",
        wide.to_markdown(disable_numparse=True),
        "",
    ]
