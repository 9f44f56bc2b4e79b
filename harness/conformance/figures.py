"""Error figures as plain numbers: the relative RMS of a comparison and several checks' figures
pooled into one. Kept apart from the tensors they are measured on (harness.conformance.accuracy),
so that a report reads and pools them without importing torch."""

from __future__ import annotations

import math


def relative(error_sq: float, reference_sq: float) -> float:
    """sqrt(error_sq / reference_sq): 0 when both are 0, inf when only the reference is."""
    if reference_sq > 0:
        return math.sqrt(error_sq / reference_sq)
    return 0.0 if error_sq == 0 else math.inf


def pooled(figures: list[dict]) -> dict[str, float | int] | None:
    """The figures of several checks as one: the largest max_abs and p99_abs, rel_rms over every
    value of all of them; None for none."""
    if not figures:
        return None
    error_sq = sum(f.get("error_sq", 0.0) for f in figures)
    reference_sq = sum(f.get("reference_sq", 0.0) for f in figures)
    return {"max_abs": max(f["max_abs"] for f in figures),
            "rel_rms": relative(error_sq, reference_sq),
            "p99_abs": max(f["p99_abs"] for f in figures),
            "values": sum(f.get("values", 0) for f in figures),
            "error_sq": error_sq, "reference_sq": reference_sq}
