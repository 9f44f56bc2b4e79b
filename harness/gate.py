"""Regression verdicts a CI job can block a merge on: statistics over fresh worker processes.

A one-run-against-one-run percentage (pytest-benchmark's --benchmark-compare-fail) mistakes the
noise between processes for change. Here every side of a comparison is several fresh worker
processes; each process contributes one number, the minimum of its per-iteration block times
(the statistic that varies least between processes: per-process medians vary several times more
on shared machines). A timing has regressed only when both
- a one-sided Mann-Whitney U test over those per-process numbers says head > base at p < alpha,
  after Holm's correction across all comparisons of the run, and
- the ratio of the medians of the per-process numbers, head over base, exceeds 1 + min_effect;
improvement is the mirror image. The ratio gets a bootstrap 95% confidence interval (resampling
processes). A conformance or gradient check that passed in BASE and fails in HEAD is a regression
whatever the timings say. Results from different machines, torch versions, thread counts or
devices are refused unless explicitly allowed, and then flagged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.records import FAILED, PASSED, Record, RunInfo

REGRESSION, IMPROVEMENT, UNCHANGED = "regression", "improvement", "no significant change"
UNJUDGED = "too few processes to judge"
MARKS = {REGRESSION: "+", IMPROVEMENT: "-", UNCHANGED: " ", UNJUDGED: "?"}
CHECK_REGRESSION = "check regression"


def process_statistic(samples: Sequence[float]) -> float:
    """One number per worker process: its fastest block (per-iteration seconds)."""
    return float(min(samples))


def smallest_p(n_base: int, n_head: int) -> float:
    """The smallest one-sided Mann-Whitney U p-value ``n_base`` against ``n_head`` processes can
    give (every head number above every base number), computed as the verdicts compute p:
    1 / C(n_base + n_head, n_base) where scipy's test is exact, e.g. 1/70 for 4 against 4."""
    if min(n_base, n_head) < 1:
        return 1.0
    base, head = np.arange(n_base, dtype=float), np.arange(n_head, dtype=float) + n_base
    return float(stats.mannwhitneyu(head, base, alternative="greater").pvalue)


def attainable_p(n_base: int, n_head: int, comparisons: int) -> float:
    """The smallest p any comparison of a run can reach after Holm's correction over
    ``comparisons`` (Holm multiplies the smallest p by their number)."""
    return min(1.0, comparisons * smallest_p(n_base, n_head))


def processes_needed(comparisons: int, alpha: float, *, limit: int = 1000) -> int:
    """The fewest processes per side with which ``comparisons`` timings can reach p < alpha."""
    for n in range(2, limit):
        if attainable_p(n, n, comparisons) < alpha:
            return n
    raise ValueError(f"alpha {alpha:g} is out of reach for {comparisons} comparisons")


def undetectable_message(n_base: int, n_head: int, comparisons: int, alpha: float) -> str:
    """One line: why nothing can be flagged with these sample sizes, and what would do."""
    sides = f"{n_base}" if n_base == n_head else f"{n_base} base and {n_head} head"
    return (f"{sides} processes per side cannot detect a change: over {comparisons} "
            f"comparison{'s' if comparisons != 1 else ''} the smallest attainable p after Holm's "
            f"correction is {attainable_p(n_base, n_head, comparisons):.3g}, not below alpha "
            f"{alpha:g}; {processes_needed(comparisons, alpha)} or more processes per side are "
            "needed")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One (implementation, shape, phase) timed on both sides."""

    key: tuple[str, str, str]  # (implementation, case id, phase); implementation as in HEAD
    base: tuple[float, ...]  # per-process statistics
    head: tuple[float, ...]
    base_name: str = ""

    @property
    def ratio(self) -> float:
        return float(np.median(self.head) / np.median(self.base))

    @property
    def p_slower(self) -> float:
        return float(stats.mannwhitneyu(self.head, self.base, alternative="greater").pvalue)

    @property
    def p_faster(self) -> float:
        return float(stats.mannwhitneyu(self.head, self.base, alternative="less").pvalue)

    def interval(self, *, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
        """Bootstrap percentile interval of the ratio of medians, resampling processes."""
        if len(self.base) < 2 or len(self.head) < 2:
            return (math.nan, math.nan)
        result = stats.bootstrap(
            (np.asarray(self.head), np.asarray(self.base)),
            lambda h, b, axis: np.median(h, axis=axis) / np.median(b, axis=axis),
            vectorized=True, paired=False, n_resamples=2000, confidence_level=confidence,
            method="percentile", random_state=np.random.default_rng(seed),
        )
        return (float(result.confidence_interval.low), float(result.confidence_interval.high))


@dataclass(frozen=True)
class Verdict:
    comparison: Comparison
    p_slower_holm: float
    p_faster_holm: float
    verdict: str
    interval: tuple[float, float]


def judge(comparisons: Sequence[Comparison], *, alpha: float, min_effect: float) -> list[Verdict]:
    """Verdicts for all comparisons of a run (Holm's correction across them)."""
    slower = holm([c.p_slower for c in comparisons])
    faster = holm([c.p_faster for c in comparisons])
    verdicts = []
    for c, p_up, p_down in zip(comparisons, slower, faster):
        if attainable_p(len(c.base), len(c.head), len(comparisons)) >= alpha:
            verdict = UNJUDGED  # no outcome of this many processes could be significant
        elif p_up < alpha and c.ratio > 1 + min_effect:
            verdict = REGRESSION
        elif p_down < alpha and c.ratio < 1 / (1 + min_effect):
            verdict = IMPROVEMENT
        else:
            verdict = UNCHANGED
        verdicts.append(Verdict(c, p_up, p_down, verdict, c.interval()))
    return verdicts


def per_process(records: Iterable[Record]) -> dict[tuple[str, str, str], list[float]]:
    """(implementation, case id, phase) -> one statistic per worker process."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        samples = r.metrics.get("samples_s") if r.outcome == PASSED else None
        if r.suite == "latency" and r.impl != "peak" and samples:
            out.setdefault((r.impl, r.case_id, r.check), []).append(process_statistic(samples))
    return out


def pair(base: dict, head: dict) -> tuple[list[Comparison], list[str]]:
    """Comparisons of the keys both sides timed, and a line per key only one side has. When
    each side times exactly one implementation under different names (base A, head B), they are
    compared with each other."""
    base_impls = {k[0] for k in base}
    head_impls = {k[0] for k in head}
    rename = {}
    if len(base_impls) == 1 and len(head_impls) == 1 and base_impls != head_impls:
        rename = {next(iter(base_impls)): next(iter(head_impls))}
    base = {(rename.get(k[0], k[0]), k[1], k[2]): v for k, v in base.items()}
    base_name = {v: k for k, v in rename.items()}
    comparisons, unmatched = [], []
    for key in sorted(set(base) | set(head)):
        if key in base and key in head:
            comparisons.append(Comparison(key, tuple(base[key]), tuple(head[key]),
                                          base_name.get(key[0], key[0])))
        else:
            side = "BASE" if key in base else "HEAD"
            unmatched.append(f"{key[0]} {key[2]} {key[1]}: timed only in {side}, not compared")
    return comparisons, unmatched


def check_regressions(base: Iterable[Record], head: Iterable[Record]) -> list[Record]:
    """Checks (not timings) that passed in BASE and fail in HEAD."""
    passed = {r.key for r in base if r.suite != "latency" and r.outcome == PASSED}
    return [r for r in head if r.suite != "latency" and r.outcome == FAILED and r.key in passed]


def mismatches(base: RunInfo, head: RunInfo) -> list[str]:
    """What differs between the two runs' machines and software, each as one phrase."""
    from harness.core.machine import differences

    out = []
    for field, what in (("processor", "machine"), ("cuda", "GPU"), ("torch", "torch version"),
                        ("threads", "thread count"), ("python", "Python version")):
        if getattr(base, field) != getattr(head, field):
            out.append(f"{what}: {getattr(base, field)!r} vs {getattr(head, field)!r}")
    shown = {"CPU", "GPU"}  # already named above when they differ
    return out + [d for d in differences(base.fingerprint, head.fingerprint)
                  if d.split(":")[0] not in shown]


def geometric_mean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else math.nan


def render(verdicts: Sequence[Verdict], regressions: Sequence[Record], unmatched: Sequence[str],
           flags: Sequence[str], *, alpha: float, min_effect: float, title: str) -> str:
    """The markdown summary: asv-style change marks, ratio, interval, p-value, geometric mean."""
    from harness.core.text import md

    lines = [f"## {md(title)}", ""]
    if flags:
        lines += ["**Compared across different environments** (allowed explicitly): "
                  + "; ".join(md(f) for f in flags) + ".", ""]
    if verdicts:
        lines += ["|  | implementation | shape | phase | base ms | head ms | ratio | 95% CI | "
                  "p (Holm) | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
        for v in verdicts:
            c = v.comparison
            impl = c.key[0] if c.base_name == c.key[0] else f"{c.base_name} → {c.key[0]}"
            p = v.p_slower_holm if c.ratio >= 1 else v.p_faster_holm
            low, high = v.interval
            lines.append(
                f"| {MARKS[v.verdict]} | {md(impl)} | {md(c.key[1])} | {c.key[2]} | "
                f"{np.median(c.base) * 1e3:.3f} | {np.median(c.head) * 1e3:.3f} | "
                f"{c.ratio:.3f} | {low:.3f}–{high:.3f} | {p:.2g} | {v.verdict} |")
        mean = geometric_mean([v.comparison.ratio for v in verdicts])
        lines.append(f"|  | **geometric mean** |  |  |  |  | **{mean:.3f}** |  |  |  |")
        lines += ["", f"Each side: one number per fresh worker process (its fastest block); "
                  f"regression = one-sided Mann-Whitney U p < {alpha:g} after Holm's correction "
                  f"over {len(verdicts)} comparisons and a ratio above {1 + min_effect:.2f}. "
                  "`+` slower, `-` faster.", ""]
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
    status = status_of(verdicts, regressions)
    lines += [f"**{status}**: {slower} slower, {faster} faster, "
              f"{len(verdicts) - slower - faster - unjudged} unchanged"
              + (f", {unjudged} not judged (too few processes)" if unjudged else "")
              + f" of {len(verdicts)} timings; {len(regressions)} check regressions.", ""]
    return "\n".join(lines)


def status_of(verdicts: Sequence[Verdict], regressions: Sequence[Record]) -> str:
    """REGRESSION, or INCONCLUSIVE when a timing could not be judged, or OK."""
    if regressions or any(v.verdict == REGRESSION for v in verdicts):
        return "REGRESSION"
    return "INCONCLUSIVE" if any(v.verdict == UNJUDGED for v in verdicts) else "OK"


@dataclass(frozen=True)
class Summary:
    """A comparison's markdown, its status (REGRESSION, INCONCLUSIVE when some timing has too
    few processes to be judged, or OK) and, when inconclusive, one line saying why."""

    text: str
    status: str
    unjudged: str | None = None


def unjudged_line(verdicts: Sequence[Verdict], *, alpha: float) -> str | None:
    """One line naming why some timings could not be judged (None when all could)."""
    unjudged = [v.comparison for v in verdicts if v.verdict == UNJUDGED]
    if not unjudged:
        return None
    c = min(unjudged, key=lambda c: min(len(c.base), len(c.head)))
    return (f"{len(unjudged)} of {len(verdicts)} timings not judged: "
            + undetectable_message(len(c.base), len(c.head), len(verdicts), alpha))


def compare_dirs(base_dir, head_dir, *, alpha: float, min_effect: float, allow_mismatch: bool,
                 title: str | None = None) -> Summary:
    """The summary of BASE against HEAD. ValueError for unusable input (not results, different
    environments without allow_mismatch, nothing to compare)."""
    from harness.records import load_run

    base_info, base_records = load_run(base_dir)
    head_info, head_records = load_run(head_dir)
    flags = mismatches(base_info, head_info)
    if flags and not allow_mismatch:
        raise ValueError(
            f"{base_dir} and {head_dir} come from different environments ("
            + "; ".join(flags) + "); timings are only compared on one machine with the same "
            "software (--allow-mismatch compares them anyway, flagged)"
        )
    comparisons, unmatched = pair(per_process(base_records), per_process(head_records))
    regressions = check_regressions(base_records, head_records)
    has_checks = any(r.suite != "latency" for r in base_records)
    if not comparisons and not has_checks:
        raise ValueError(f"nothing to compare: {base_dir} and {head_dir} share no timings "
                         "and hold no checks")
    verdicts = judge(comparisons, alpha=alpha, min_effect=min_effect) if comparisons else []
    text = render(verdicts, regressions, unmatched, flags if allow_mismatch else [],
                  alpha=alpha, min_effect=min_effect,
                  title=title or f"seq-harness compare: {base_dir} → {head_dir}")
    return Summary(text, status_of(verdicts, regressions),
                   unjudged_line(verdicts, alpha=alpha))


def publish(text: str, output: str | None) -> None:
    """Print the summary, write it to ``output``, and append it to $GITHUB_STEP_SUMMARY."""
    import os
    from pathlib import Path

    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as handle:
            handle.write(text + "\n")
