"""Latency records, decoded once: per-process samples, their statistics, and what is suspect.

bench's report, the gate and calibration all read latency records through here. Statistics are
properties computed from the raw samples, never stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from harness.core.case import Case
from harness.core.families import family as family_named
from harness.core.families import family_names
from harness.core.op_case import case_from_dict
from harness.latency.jobs import FIRST_CALL, LATENCY
from harness.latency.peak import PEAK
from harness.records import FAILED, PASSED, Record

NOISY_IQR = 0.20  # IQR over median above this: the blocks of a timing scatter
NOISY_SPREAD = 1.2  # largest over smallest per-process median above this: processes disagree


@dataclass(frozen=True)
class LatencyStats:
    """All samples of one (implementation, shape, phase), per worker process. Statistics are
    computed from the raw samples, never stored."""

    per_process: tuple[tuple[float, ...], ...]
    flops: int = 0
    peak_bytes: int | None = None
    tokens: int = 0  # B * T of the shape (valid steps for variable lengths)
    case: Case | None = None
    peak_rss_bytes: int | None = None  # the process's peak RSS growth during one call

    @property
    def samples(self) -> list[float]:
        return [s for block in self.per_process for s in block]

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples))

    @property
    def q1_s(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3_s(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def min_s(self) -> float:
        return min(self.samples)

    @property
    def process_medians(self) -> list[float]:
        return [float(np.median(p)) for p in self.per_process if p]

    @property
    def process_spread(self) -> float:
        """Largest over smallest per-process median (1.0 = processes agree)."""
        medians = self.process_medians
        return max(medians) / min(medians) if medians else math.nan

    @property
    def noise(self) -> str | None:
        """Why this timing is not to be trusted as it is (None when nothing says so): blocks
        scattered (IQR over median above 20%) or processes disagreeing (per-process medians
        more than 1.2x apart)."""
        reasons = []
        if self.iqr_s / self.median_s > NOISY_IQR:
            reasons.append(f"IQR {self.iqr_s / self.median_s:.0%} of the median "
                           f"(> {NOISY_IQR:.0%})")
        if self.process_spread > NOISY_SPREAD:
            reasons.append(f"processes {self.process_spread:.2f}x apart (> {NOISY_SPREAD:g}x)")
        return "; ".join(reasons) or None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.median_s

    @property
    def gflops(self) -> float:
        return self.flops / self.median_s / 1e9


def samples_per_process(
    records: Iterable[Record],
) -> dict[tuple[str, str, str], list[tuple[float, ...]]]:
    """(impl, case id, phase) -> the block samples of every worker process whose timing passed
    (the peak sweep left out)."""
    out: dict[tuple[str, str, str], list[tuple[float, ...]]] = {}
    for r in records:
        samples = r.metrics.get("samples_s") if r.outcome == PASSED else None
        if r.suite == LATENCY and r.impl != PEAK and samples:
            out.setdefault((r.impl, r.case_id, r.check), []).append(tuple(samples))
    return out


def timings(records: Iterable[Record]) -> dict[tuple[str, str, str], LatencyStats]:
    """(impl, case_id, phase) -> LatencyStats, from passed latency records."""
    grouped: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.suite == LATENCY and r.outcome == PASSED and r.metrics.get("samples_s"):
            grouped.setdefault((r.impl, r.case_id, r.check), []).append(r)
    out = {}
    for key, group in grouped.items():
        per_process = tuple(tuple(r.metrics["samples_s"]) for r in group)
        impl, _, phase = key
        if impl == PEAK:
            out[key] = LatencyStats(per_process, flops=int(group[0].metrics["flops"]))
            continue
        case = case_from_dict(group[0].case)
        peaks = [r.metrics.get("peak_bytes") for r in group if r.metrics.get("peak_bytes")]
        rss = [r.metrics["peak_rss_bytes"] for r in group
               if r.metrics.get("peak_rss_bytes") is not None]
        family = (family_named(group[0].family) if group[0].family in family_names()
                  else None)
        out[key] = LatencyStats(
            per_process,
            flops=flops_of(family, case, phase, group[0]) if family else 0,
            peak_bytes=max(peaks) if peaks else None,
            tokens=sum(case.effective_lengths),
            case=case,
            peak_rss_bytes=max(rss) if rss else None,
        )
    return out


def flops_of(family, case, phase: str, record: Record) -> int:
    """The family's FLOP formula; an op's by the form its timing recorded (kernel.form)."""
    if family.kind == "op":
        form = (record.metrics.get("kernel") or {}).get("form", "chunk")
        return family.flops(case, phase, form)
    return family.flops(case, phase)


@dataclass(frozen=True)
class FirstCallStats:
    """One implementation's first call on one shape in a fresh process (see
    harness.latency.first_call)."""

    seconds: float
    graphs: int
    graph_breaks: int
    rss_bytes: int | None


def first_calls(records: Iterable[Record]) -> dict[tuple[str, str], FirstCallStats]:
    """(impl, case id) -> its first call, from passed first-call records."""
    out = {}
    for r in records:
        if (r.suite == LATENCY and r.check == FIRST_CALL and r.outcome == PASSED
                and r.metrics.get("first_call_s") is not None):
            m = r.metrics
            out[(r.impl, r.case_id)] = FirstCallStats(
                float(m["first_call_s"]), int(m.get("graphs") or 0),
                int(m.get("graph_breaks") or 0), m.get("rss_bytes"))
    return out


@dataclass(frozen=True)
class PartialFailure:
    """A timing that failed in some worker processes and not in others: the failure depends
    on what ran before it in the process (or on chance), and is worth reading."""

    key: tuple[str, str, str]  # (impl, case id, phase)
    failed: int
    processes: int
    message: str

    def __str__(self) -> str:
        impl, case_id, phase = self.key
        return (f"{impl} {phase} {case_id}: failed in {self.failed} of {self.processes} "
                f"processes ({self.message})")


def partial_failures(records: Iterable[Record]) -> list[PartialFailure]:
    """Timings with both failed and passed records."""
    grouped: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.suite == LATENCY and r.outcome in (PASSED, FAILED):
            grouped.setdefault((r.impl, r.case_id, r.check), []).append(r)
    out = []
    for key, group in grouped.items():
        failed = [r for r in group if r.outcome == FAILED]
        if failed and len(failed) < len(group):
            out.append(PartialFailure(key, len(failed), len(group), failed[0].message or ""))
    return out


def peak_of(measured: dict[tuple[str, str, str], LatencyStats]) -> tuple[float, str] | None:
    """The machine's matmul peak (GFLOP/s) and the sweep point that reached it."""
    points = [(t.gflops, case_id) for (impl, case_id, _), t in measured.items() if impl == PEAK]
    return max(points) if points else None


def reference_impl(family: str) -> str:
    """The registry entry each family's timings are compared with (its baseline)."""
    return family_named(family).baseline if family in family_names() else ""
