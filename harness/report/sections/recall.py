"""Associative recall: held-out accuracy and the steps to solve it, per implementation and
number of key-value pairs, with each implementation's family beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.conformance.recall import SOLVED_ACCURACY, VOCAB_HALF
from harness.core.text import md


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    rows = frame[(frame["suite"] == "recall") & (frame["check"] == "associative_recall")]
    rows = rows[rows["metrics"].map(lambda m: isinstance(m, dict) and "best_accuracy" in m)]
    if rows.empty:
        return []
    table = []
    for _, row in rows.iterrows():
        m = row["metrics"]
        solved = (f"solved at step {m['steps_to_solve']}" if m["steps_to_solve"] is not None
                  else f"not in {m['steps_run']} steps")
        table.append({"implementation": md(row["impl"]), "family": md(row["family"]),
                      "pairs": f"{m['pairs']} pairs", "result":
                      f"{m['best_accuracy']:.0%} ({solved})"})
    wide = pd.DataFrame(table).pivot_table(index=["family", "implementation"], columns="pairs",
                                           values="result", aggfunc="first", sort=False)
    wide = wide[sorted(wide.columns, key=lambda c: int(c.split()[0]))].reset_index()
    first = rows.iloc[0]["metrics"]
    return [
        "## Associative recall",
        "",
        f"Multi-query associative recall (MQAR): N key-value pairs, then the N keys in a random "
        f"order; the accuracy of naming each key's value on {first['test_size']} held-out "
        f"sequences, and the step at which it reached {SOLVED_ACCURACY:.0%} (solved). Guessing "
        f"gives {1 / VOCAB_HALF:.0%}. Embedding and hidden size {first['hidden_size']}, batches "
        f"of {first['batch']}, Adam at lr {first['lr']}, evaluation every "
        f"{first['eval_every']} steps; within a family every implementation starts from the "
        "same weights and sees the same data.",
        "",
        wide.to_markdown(index=False, disable_numparse=True),
        "",
    ]
