"""The verdict: one row per implementation — does it conform, how far is it from the reference,
how fast is it against its family's baseline, for sure — sorted so the best choice of each
family comes first, with a sentence per family saying what the run found.

Speed is said per regime (harness.latency.regimes: the standard shape at B=64 and at B=1,
variable lengths, long sequences, ...), never pooled over shapes that disagree: per regime, the
geometric mean over its shapes of the ratio of medians to the family's baseline (torch's module,
or the reference loop), with its 95% bootstrap interval (harness.latency.ratios). The table's
latency and memory columns are at the headline regime, the standard shape at B=64 where it was
timed (the shape the deployment and latency tables show); a timing marked noisy counts against
nothing but is counted here. Speed comes from one machine and thread count (the one with the
most timings) when the report merges several: their samples are never pooled.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.conformance.suites import measured_names
from harness.core.families import family, family_names
from harness.core.phases import PHASES
from harness.core.text import md
from harness.latency.jobs import LATENCY
from harness.latency.peak import PEAK
from harness.latency.ratios import Ratio, geometric_mean_ratio
from harness.latency.regimes import Regime, said_of
from harness.latency.samples import samples_per_process, timings
from harness.records import FAILED, JOB_FILE, NOT_SUPPORTED, PASSED, Record
from harness.report.errors import pooled_of, sci, worst_output_error

PHASE_LABEL = {"inference": "inference", "forward": "forward", "forward_backward": "fwd+bwd"}


def records_of(frame: pd.DataFrame) -> list[Record]:
    fields = Record.__dataclass_fields__
    return [Record.from_dict({k: v for k, v in row.items() if k in fields})
            for row in frame.to_dict("records")]


def conformance(rows: pd.DataFrame) -> tuple[str, int, int]:
    """'✅ 312 · 12% n/s' or '❌ 3 failed', and the failed and passed counts."""
    counts = rows["outcome"].value_counts()
    failed, passed = int(counts.get(FAILED, 0)), int(counts.get(PASSED, 0))
    unsupported = int(counts.get(NOT_SUPPORTED, 0))
    total = failed + passed + unsupported
    if not total:
        return "—", 0, 0
    mark = f"❌ {failed} failed" if failed else (f"✅ {passed}" if passed else "—")
    share = f" · {unsupported / total:.0%} n/s" if unsupported else ""
    return mark + share, failed, passed


def accuracy(rows: pd.DataFrame) -> tuple[str, str]:
    """(rel RMS, max abs) of the outputs and final states over every check of ``rows`` that
    compared them with the reference; — where none did."""
    figures = pooled_of(rows, "output")
    worst = worst_output_error(rows)
    rel = figures["rel_rms"] if figures else None
    return sci(rel), sci(worst if worst is not None else figures and figures["max_abs"])


def task_solved(rows: pd.DataFrame, suite: str, size_key: str) -> str:
    """'✓ 50, 100' (the sizes solved) or '✗' for a training task; '—' if it did not run."""
    done = [r for r in rows[rows["suite"] == suite]["metrics"] if isinstance(r, dict)]
    if not done:
        return "—"
    solved = sorted(m[size_key] for m in done if m.get("steps_to_solve") is not None)
    return f"✓ {', '.join(map(str, solved))}" if solved else "✗"


def regimes_of(records: list[Record]) -> dict[str, Regime]:
    """case_id -> the regime of every timed shape, said over the shapes of it that were timed."""
    return said_of(r.case for r in records if r.case is not None)


def latency_ratios(records: list[Record], impl: str, baseline: str, regime: Regime
                   ) -> dict[str, Ratio | None]:
    """Per phase, the geometric-mean ratio to the baseline over the shapes of ``regime`` both
    timed."""
    samples = samples_per_process(records)
    where = regimes_of(records)
    out: dict[str, Ratio | None] = {}
    for phase in PHASES:
        pairs = [(s, samples[(baseline, case_id, p)])
                 for (name, case_id, p), s in samples.items()
                 if name == impl and p == phase and (baseline, case_id, p) in samples
                 and where.get(case_id) == regime]
        # Shapes timed once on a side have no known uncertainty: left out of the mean while
        # others have one (all of them timed once: a ratio without an interval).
        sampled = [pair for pair in pairs if all(sum(map(len, side)) > 1 for side in pair)]
        out[phase] = geometric_mean_ratio(sampled or pairs) if pairs else None
    return out


def memory_ratio(measured: dict, impl: str, baseline: str, regime: Regime,
                 where: dict[str, Regime]) -> str:
    # A peak of 0 or less is no measurement (a call that freed more than it allocated).
    ratios = [t.peak_bytes / measured[(baseline, case_id, phase)].peak_bytes
              for (name, case_id, phase), t in measured.items()
              if name == impl and (t.peak_bytes or 0) > 0 and (baseline, case_id, phase) in measured
              and (measured[(baseline, case_id, phase)].peak_bytes or 0) > 0
              and where.get(case_id) == regime]
    return "—" if not ratios else f"{math.exp(np.mean(np.log(ratios))):.2f}x"


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    if frame.empty:
        return []
    latency = frame[frame["suite"] == LATENCY]
    setting, others = speed_setting(latency)
    records = records_of(latency[latency["machine"] == setting])
    measured = timings(records)
    where = regimes_of(records)
    checks = frame[~frame["suite"].isin([*measured_names(), "registry"])]
    known = family_names()
    rows, sentences, headlines = [], [], set()
    for name in [f for f in known if f in set(frame["family"])] + sorted(
            set(frame["family"]) - set(known) - {PEAK}):
        baseline = family(name).baseline if name in known else ""
        timed = sorted({where[c] for (i, c, _) in measured if i == baseline and c in where},
                       key=lambda r: r.order)
        headline = timed[0] if timed else None
        if headline is not None:
            headlines.add(headline.label)
        entries = []
        for impl in dict.fromkeys(frame[frame["family"] == name]["impl"]):
            mine = checks[checks["impl"] == impl]
            verdict, failed, passed = conformance(mine)
            by_regime = ({r: latency_ratios(records, impl, baseline, r) for r in timed}
                         if impl != baseline else {})
            noisy = sum(1 for (i, _, _), t in measured.items() if i == impl and t.noise)
            entries.append((impl, verdict, failed, passed,
                            by_regime.get(headline, {}), noisy, mine, by_regime))
        ranked = sorted(entries, key=lambda entry, base=baseline: rank(entry, base))
        timed_phases = {p for (i, c, p) in measured
                        if i == baseline and where.get(c) == headline}
        for impl, verdict, _, _, ratios, noisy, mine, _ in ranked:
            rel_rms, max_abs = accuracy(mine)
            row = {"family": md(name), "implementation": md(impl), "conformance": verdict,
                   "rel RMS": rel_rms, "max abs": max_abs}
            for phase in PHASES:
                ratio = ratios.get(phase)
                row[PHASE_LABEL[phase]] = ("baseline" if impl == baseline and phase in
                                           timed_phases else str(ratio) if ratio else "—")
            row["memory"] = ("baseline" if impl == baseline and timed_phases
                             else memory_ratio(measured, impl, baseline, headline, where))
            row["adding"] = task_solved(mine, "adding", "seq_len")
            row["recall"] = task_solved(mine, "recall", "pairs")
            row["noisy"] = str(noisy) if noisy else ""
            rows.append(row)
        sentences.append(sentence(name, baseline, ranked, timed))
    if not rows:
        return []
    table = pd.DataFrame(rows)
    for column in ("inference", "forward", "fwd+bwd", "memory", "adding", "recall", "noisy"):
        if column in table and (table[column].isin(["—", "", "baseline"])).all():
            table = table.drop(columns=column)
    at = (" at " + " / ".join(sorted(headlines))) if headlines else ""
    pooled = ([f"Speed in this verdict: on {md(setting)} ({others}); timings of different "
               "machines or thread counts are never pooled, and the latency section gives "
               "each.", ""] if others else [])
    return ["## Verdict", "",
            *[line for s in sentences if s for line in s], "", *pooled, *left_out(frame),
            table.to_markdown(index=False, disable_numparse=True), "",
            "Per family, the baseline first, then conforming implementations fastest first. "
            "*conformance*: ✅ every check passed (how many), ❌ how many failed; *n/s* the share "
            "of cases outside what the implementation claims. *rel RMS*, *max abs*: the error "
            "of outputs and final states against the reference over every check that compared "
            "them (RMS of the error over RMS of the reference; the largest absolute error). "
            f"Latency and memory{at} (the headline regime; the sentences above give every "
            "regime timed): the geometric mean over its shapes of the ratio to the "
            "family's baseline, with its 95% interval (below 1.00x is faster; shapes timed "
            "once on a side, as the long grid's slowest, are left out); memory is what "
            "torch's allocator sees (another runtime's, as onnxruntime's, is not: see RSS in "
            "the latency details). *adding*, "
            "*recall*: the sequence lengths and numbers of pairs solved. *noisy*: timings whose "
            "blocks or processes disagree (see the latency details).", ""]


def speed_setting(latency: pd.DataFrame) -> tuple[str | None, str]:
    """The machine (with its thread count, ``harness.report.frame.settings``) whose timings
    the verdict's speed figures come from — the one with the most timings, the first given on
    a tie — and, when there are others, a clause naming them ("" when there are none)."""
    counts = latency["machine"].value_counts(sort=False)
    if counts.empty:
        return None, ""
    chosen = max(counts.index, key=lambda m: (counts[m], -list(counts.index).index(m)))
    rest = [m for m in counts.index if m != chosen]
    if not rest:
        return chosen, ""
    return chosen, (f"{counts[chosen]} of {counts.sum()} timings; also timed on "
                    + ", ".join(md(m) for m in rest))


def left_out(frame: pd.DataFrame) -> list[str]:
    """A sentence when a time budget left checks or timings out, and one naming the timings
    past their grid's own limit: the verdict says less than it could."""
    latency, checks = frame[frame["suite"] == LATENCY], frame[frame["suite"] != LATENCY]

    def flagged(key, rows=latency):
        return rows[rows["metrics"].map(lambda m: isinstance(m, dict) and m.get(key) is True)]

    lines = []
    unchecked = flagged("left_out", checks)
    if not unchecked.empty:
        # the job's directory holds job.json beside checks/ (DIR where the records were moved)
        jobs = {str(p.parent) for p in map(Path, unchecked["run_dir"].dropna())
                if (p.parent / JOB_FILE).exists()}
        where = jobs.pop() if len(jobs) == 1 else "DIR"
        lines += [f"⚠ {len(unchecked)} of {len(checks)} checks were left out by the time "
                  "budget, so the conformance above covers only the checks that ran (`seq-harness "
                  f"job --resume {where} --budget 0` runs the rest).", ""]
    gone = flagged("left_out")
    if not gone.empty:
        shown = gone.iloc[0]["message"] or ""
        lines += [f"⚠ {len(gone)} of {len(latency)} timings were left out by the job's time "
                  f"budget, so the latency above covers only what was timed ({md(shown)}).", ""]
    over = flagged("over_limit")
    if not over.empty:
        named = ", ".join(f"{r.impl} {r.check.replace('_', '+')} at {r.case_id}"
                          for r in over.itertuples())
        lines += [f"⚠ {len(over)} timings were not measured, past their grid's limit per "
                  f"timing: {md(named)} ({md(over.iloc[0]['message'] or '')}).", ""]
    return lines


def rank(entry, baseline: str):
    """The baseline first, then conforming entries fastest first (forward+backward, else
    inference), then the others."""
    impl, _, failed, passed, ratios, _, _, _ = entry
    timed = ratios.get("forward_backward") or ratios.get("inference")
    return (impl != baseline, failed > 0 or not passed, timed.value if timed else math.inf,
            impl)


def fastest(phase: str, baseline: str, conforming, regime: Regime) -> str:
    """Which of the conforming implementations and the baseline is fastest in a phase and
    regime, for sure: 'X, 0.51x (0.50–0.55) of B' when X's interval is below 1.00x, 'B (the
    closest, X, 1.20x (…))' when it is above, a tie when it reaches 1.00x; '' when nothing was
    timed."""
    timed = sorted((e[7][regime][phase].value, e[0], e[7][regime][phase]) for e in conforming
                   if e[7].get(regime, {}).get(phase))
    if not timed:
        return ""
    _, impl, ratio = timed[0]
    if not ratio.has_interval:
        return f"{md(impl)}, {ratio} of {md(baseline)}: not for sure"
    if ratio.high < 1:
        return f"{md(impl)}, {ratio} of {md(baseline)}"
    if ratio.low > 1:
        return f"{md(baseline)} (the closest, {md(impl)}, is {ratio})"
    return f"{md(impl)} and {md(baseline)} tie ({ratio})"


def sentence(name: str, baseline: str, entries, regimes: list[Regime]) -> list[str]:
    """What the run found for one family, in words: which implementations conform, then per
    regime timed and per phase which is fastest for sure (see ``fastest``); a bullet and its
    sub-bullets."""
    others = [e for e in entries if e[0] != baseline]
    if not others:
        return []
    conforming = [e for e in others if e[2] == 0 and e[3] > 0]
    failing = [md(e[0]) for e in others if e[2] > 0]
    unchecked = [e for e in others if e[6].empty]  # timed only: no check in this run
    idle = [md(e[0]) for e in others if e[2] == 0 and e[3] == 0 and not e[6].empty]
    notes = ([f"{', '.join(failing)} {'fails' if len(failing) == 1 else 'fail'}"]
             if failing else []) + (
        [f"{', '.join(idle)}: nothing claimed runs here"] if idle else []) + (
        [f"{', '.join(md(e[0]) for e in unchecked)}: not checked in this run"]
        if unchecked else [])
    if len(unchecked) == len(others):
        lines = [f"- **{md(name)}**: conformance not checked in this run (timings only)."]
    else:
        lines = [f"- **{md(name)}**: {len(conforming)} of {len(others) - len(unchecked)} "
                 "implementations conform"
                 + (f" ({'; '.join(notes)})" if notes else "") + "."]
    for regime in regimes:
        # speed is said of what conforms, or of what this run did not check at all (a bench)
        parts = [f"{PHASE_LABEL[phase]}: {said}" for phase in ("inference", "forward_backward")
                 if (said := fastest(phase, baseline, conforming + unchecked, regime))]
        if parts:
            lines.append(f"  - {regime.label}: " + "; ".join(parts) + ".")
    return lines
