"""gate.json: a gate's verdicts as a file other tools read, beside its base/, head/ and
summary.md.

summary.md is for people; ``history add`` needs the same verdicts as data to record head against
a fixed anchor over many merges (anchor drift), and a CI script may want the status without
parsing markdown. The file holds the gate's status, its alpha and minimum effect, the base ref
(``--base-ref``), both sides' run ids and commits (from their run.json), and per timing its
ratio, interval, verdict, processes per side and the p that decided it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.gate.compare import Summary
from harness.gate.sequential import Decided
from harness.gate.stats import IMPROVEMENT, REGRESSION, Verdict
from harness.records import read_run_info

GATE_FILE = "gate.json"
FORMAT = 1  # the version of this file's layout


@dataclass(frozen=True)
class TimingVerdict:
    """One timing both sides measured: ratio of medians (head over base) and its interval
    (None where too few processes gave none), the verdict (harness.gate.stats's words), the
    p that decided it (regression: head slower; improvement: faster; else the p of held)."""

    impl: str
    base_impl: str
    case_id: str
    phase: str
    ratio: float
    low: float | None
    high: float | None
    verdict: str
    base_processes: int
    head_processes: int
    p: float


@dataclass(frozen=True)
class GateVerdicts:
    """What gate.json holds (see the module docstring)."""

    status: str
    alpha: float
    min_effect: float
    base_ref: str | None
    base_run: str
    base_commit: str | None
    head_run: str
    head_commit: str | None
    timings: tuple[TimingVerdict, ...]
    check_regressions: int = 0


def timing_verdict(v: Verdict) -> TimingVerdict:
    c = v.comparison
    if isinstance(v, Decided):
        p = {REGRESSION: v.p_slower_holm, IMPROVEMENT: v.p_faster_holm}.get(v.verdict, v.p_held)
    else:
        p = v.p_slower_holm if c.ratio >= 1 else v.p_faster_holm
    low, high = (None if math.isnan(x) else float(x) for x in v.interval)
    return TimingVerdict(impl=c.key[0], base_impl=c.base_name or c.key[0], case_id=c.key[1],
                         phase=c.key[2], ratio=float(c.ratio), low=low, high=high,
                         verdict=v.verdict, base_processes=len(c.base),
                         head_processes=len(c.head), p=float(p))


def write_verdicts(summary: Summary, out: str | Path, *, base_ref: str | None, alpha: float,
                   min_effect: float) -> Path:
    """Write out/gate.json for the gate whose sides are out/base and out/head; its path."""
    out = Path(out)
    base, head = read_run_info(out / "base"), read_run_info(out / "head")
    verdicts = GateVerdicts(status=summary.status, alpha=alpha, min_effect=min_effect,
                            base_ref=base_ref, base_run=base.run_id,
                            base_commit=base.git_commit, head_run=head.run_id,
                            head_commit=head.git_commit,
                            timings=tuple(timing_verdict(v) for v in summary.verdicts),
                            check_regressions=len(summary.regressions))
    path = out / GATE_FILE
    path.write_text(json.dumps({"format": FORMAT, **asdict(verdicts)}, indent=2,
                               allow_nan=False) + "\n")
    return path


def read_verdicts(path: str | Path) -> GateVerdicts:
    """A gate.json; ValueError naming the file when it is not one this version reads."""
    path = Path(path)
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        if raw.pop("format") != FORMAT:
            raise ValueError("another format")
        timings = tuple(TimingVerdict(**t) for t in raw.pop("timings"))
        return GateVerdicts(**raw, timings=timings)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{str(path)!r}: not a gate.json this seq-harness reads ({error}); "
                         f"expected the file `seq-harness gate` writes (format {FORMAT})"
                         ) from None
