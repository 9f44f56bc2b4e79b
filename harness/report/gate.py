"""The gate's summary: a table of verdicts with asv-style change marks, ratios, intervals and
p-values, the checks that regressed, and the status line; printed, written, and appended to
GitHub's step summary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.core.text import md
from harness.gate.compare import Summary
from harness.gate.sequential import Decided
from harness.gate.stats import (
    IMPROVEMENT,
    MARKS,
    REGRESSION,
    UNDECIDED,
    UNJUDGED,
    Verdict,
    geometric_mean,
)


def gate_summary(summary: Summary, *, alpha: float, min_effect: float) -> str:
    """The markdown summary: asv-style change marks, ratio, interval, p-value, geometric mean."""
    verdicts, regressions, unmatched = summary.verdicts, summary.regressions, summary.unmatched
    flags = summary.flags
    lines = [f"## {md(summary.title)}", ""]
    if flags:
        lines += ["**Compared across different environments** (allowed explicitly): "
                  + "; ".join(md(f) for f in flags) + ".", ""]
    sequential = bool(verdicts) and all(isinstance(v, Decided) for v in verdicts)
    if verdicts:
        last = ("processes | p (spent) | verdict |" if sequential else "p (Holm) | verdict |")
        lines += [f"|  | implementation | shape | phase | base ms | head ms | ratio | 95% CI | "
                  f"{last}", "|---" * (11 if sequential else 10) + "|"]
        for v in verdicts:
            c = v.comparison
            impl = c.key[0] if c.base_name == c.key[0] else f"{c.base_name} → {c.key[0]}"
            low, high = v.interval
            lines.append(
                f"| {MARKS[v.verdict]} | {md(impl)} | {md(c.key[1])} | {c.key[2]} | "
                f"{np.median(c.base) * 1e3:.3f} | {np.median(c.head) * 1e3:.3f} | "
                f"{c.ratio:.3f} | {low:.3f}–{high:.3f} | {tail(v)} |")
        mean = geometric_mean([v.comparison.ratio for v in verdicts])
        lines.append(f"|  | **geometric mean** |  |  |  |  | **{mean:.3f}** |  |  |"
                     + ("  |" if sequential else "") + "  |")
        lines += ["", rule(len(verdicts), alpha=alpha, min_effect=min_effect,
                           sequential=sequential), ""]
    if regressions:
        lines += [f"**{len(regressions)} checks passed in BASE and fail in HEAD:**", ""]
        lines += [f"- {md(r.impl)} · {md(r.suite)} · {md(r.check)} · `{md(r.case_id)}`: "
                  f"{md(r.message or '')}" for r in regressions[:50]]
        lines.append("")
    if unmatched:
        lines += ["Not compared:", ""] + [f"- {md(u)}" for u in unmatched] + [""]
    slower = sum(v.verdict == REGRESSION for v in verdicts)
    faster = sum(v.verdict == IMPROVEMENT for v in verdicts)
    unjudged = sum(v.verdict == UNJUDGED for v in verdicts)
    undecided = sum(v.verdict == UNDECIDED for v in verdicts)
    lines += [f"**{summary.status}**: {slower} slower, {faster} faster, "
              f"{len(verdicts) - slower - faster - unjudged - undecided} unchanged"
              + (f", {unjudged} not judged (too few processes)" if unjudged else "")
              + (f", {undecided} undecided" if undecided else "")
              + f" of {len(verdicts)} timings; {len(regressions)} check regressions.", ""]
    return "\n".join(lines)


def tail(v: Verdict) -> str:
    """The last cells of a verdict's row: the p that decided it and the verdict; a sequential
    verdict also says its processes per side and the significance its look spent."""
    c = v.comparison
    if not isinstance(v, Decided):
        return f"{v.p_slower_holm if c.ratio >= 1 else v.p_faster_holm:.2g} | {v.verdict}"
    p = {REGRESSION: v.p_slower_holm, IMPROVEMENT: v.p_faster_holm}.get(v.verdict, v.p_held)
    n = f"{len(c.base)}" if len(c.base) == len(c.head) else f"{len(c.base)} / {len(c.head)}"
    verdict = "no regression ≥ min effect" if v.verdict not in (REGRESSION, IMPROVEMENT,
                                                                 UNDECIDED) else v.verdict
    return f"{n} | {p:.2g} ({v.spent:.2g}) | {verdict}"


COLUMNS = ("*ratio*: head's median over base's; *95% CI*: the ratios by which head's processes "
           "could be scaled for the same rank test to reject neither way (the Hodges-Lehmann "
           "interval, around the median of every head/base ratio: in a skewed sample the ratio "
           "of medians can lie outside it).")


def rule(comparisons: int, *, alpha: float, min_effect: float, sequential: bool) -> str:
    """The paragraph under the table: how the verdicts were reached, and its columns."""
    said = verdicts_rule(comparisons, alpha=alpha, min_effect=min_effect, sequential=sequential)
    return f"{said} {COLUMNS}"


def verdicts_rule(comparisons: int, *, alpha: float, min_effect: float, sequential: bool) -> str:
    if not sequential:
        return (f"Each side: one number per fresh worker process (its fastest block); "
                f"regression = one-sided Mann-Whitney U p < {alpha:g} after Holm's correction "
                f"over {comparisons} comparisons and a ratio above {1 + min_effect:.2f}. "
                "`+` slower, `-` faster.")
    return (f"Each side: one number per fresh worker process (its fastest block), measured in "
            f"looks until every timing is decided. At each look a timing spends its share of "
            f"alpha {alpha:g} (in brackets; linear spending over the processes, split over "
            f"{comparisons} timings): regression = one-sided Mann-Whitney U p below it and a "
            f"ratio above {1 + min_effect:.2f}; improvement the mirror image; *no regression ≥ "
            f"min effect* = head provably less than {min_effect:.0%} slower (the same test "
            f"against base × {1 + min_effect:.2f}); *undecided* = none of these when "
            "processes or budget ran out. `+` slower, `-` faster, `?` undecided.")


def publish(text: str, output: str | os.PathLike | None) -> None:
    """Print the summary, write it to ``output``, and append it to $GITHUB_STEP_SUMMARY."""
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as handle:
            handle.write(text + "\n")
