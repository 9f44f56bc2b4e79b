"""BASE against HEAD: which timings and which checks regressed, from two results directories.

Results from different machines (by fingerprint), torch versions, thread counts or Python
versions are refused unless explicitly allowed, and then flagged. A check that passed in BASE
and fails in HEAD is a regression whatever the timings say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.core.machine import differences
from harness.gate.sequential import Progress, undecided_line
from harness.gate.stats import (
    REGRESSION,
    UNDECIDED,
    UNJUDGED,
    Comparison,
    Verdict,
    judge,
    process_statistic,
    undetectable_message,
)
from harness.latency.jobs import LATENCY
from harness.latency.samples import samples_per_process
from harness.records import FAILED, PASSED, Record, RunInfo, load_run


def per_process(records: Iterable[Record]) -> dict[tuple[str, str, str], list[float]]:
    """(implementation, case id, phase) -> one statistic per worker process."""
    return {key: [process_statistic(s) for s in samples]
            for key, samples in samples_per_process(records).items()}


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
    passed = {r.key for r in base if r.suite != LATENCY and r.outcome == PASSED}
    return [r for r in head if r.suite != LATENCY and r.outcome == FAILED and r.key in passed]


def mismatches(base: RunInfo, head: RunInfo) -> list[str]:
    """What differs between the two runs' machines and software, each as one phrase."""
    out = []
    for name, what in (("processor", "machine"), ("cuda", "GPU"), ("torch", "torch version"),
                       ("threads", "thread count"), ("python", "Python version")):
        if getattr(base, name) != getattr(head, name):
            out.append(f"{what}: {getattr(base, name)!r} vs {getattr(head, name)!r}")
    shown = {"CPU", "GPU"}  # already named above when they differ
    return out + [d for d in differences(base.fingerprint, head.fingerprint)
                  if d.split(":")[0] not in shown]


def status_of(verdicts: Sequence[Verdict], regressions: Sequence[Record]) -> str:
    """REGRESSION, or INCONCLUSIVE when a timing could not be judged or is undecided, or OK."""
    if regressions or any(v.verdict == REGRESSION for v in verdicts):
        return "REGRESSION"
    return ("INCONCLUSIVE" if any(v.verdict in (UNJUDGED, UNDECIDED) for v in verdicts)
            else "OK")


@dataclass(frozen=True)
class Summary:
    """What a comparison found: the verdict on every timing both sides have, the checks that
    regressed, the timings only one side has, what differs between the environments (when
    allowed), the status (REGRESSION, INCONCLUSIVE when some timing has too few processes to be
    judged, or OK) and, when inconclusive, one line saying why."""

    title: str
    verdicts: list[Verdict]
    regressions: list[Record]
    unmatched: list[str]
    status: str
    unjudged: str | None = None
    flags: list[str] = field(default_factory=list)


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
    """BASE against HEAD. ValueError for unusable input (not results, different environments
    without allow_mismatch, nothing to compare)."""
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
    has_checks = any(r.suite != LATENCY for r in base_records)
    if not comparisons and not has_checks:
        raise ValueError(f"nothing to compare: {base_dir} and {head_dir} share no timings "
                         "and hold no checks")
    verdicts = judge(comparisons, alpha=alpha, min_effect=min_effect) if comparisons else []
    return Summary(title or f"seq-harness compare: {base_dir} → {head_dir}", verdicts,
                   regressions, unmatched, status_of(verdicts, regressions),
                   unjudged_line(verdicts, alpha=alpha), flags if allow_mismatch else [])


def gate_dirs(base_dir, head_dir, progress: Progress, *, min_effect: float, stopped: str,
              title: str) -> Summary:
    """A sequential gate's summary: its verdicts (``progress``), the checks that regressed and
    the timings only one side has; ``stopped`` says why measuring ended, for the line that
    names undecided timings."""
    base_records = list(load_run(base_dir)[1])
    head_records = list(load_run(head_dir)[1])
    _, unmatched = pair(per_process(base_records), per_process(head_records))
    regressions = check_regressions(base_records, head_records)
    verdicts = list(progress.decisions)
    return Summary(title, verdicts, regressions, unmatched, status_of(verdicts, regressions),
                   undecided_line(progress, min_effect=min_effect, why=stopped))
