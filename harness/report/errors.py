"""The error figures of records, read the same way by every report section.

A check's record keeps the error figures of each quantity it measured (``metrics["error"]``:
``output`` for outputs and final states against the reference, ``gradient`` apart), and the
accuracy suite keeps them per tensor at the standard shape (``metrics["tensors"]``). Sections
never mix quantities: a headline "error" is always an output error, never a gradient error or a
difference of log-norms.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.conformance.figures import pooled
from harness.conformance.suites import suites

ACCURACY = "accuracy"  # the suite measured at the standard shape
STANDARD_CHECK = "error_at_standard_shape"
LARGE_CHECK = "error_with_large_inputs"


def quantity_figures(metrics: object, quantity: str) -> dict | None:
    """The figures of one quantity a record measured, or None."""
    if not isinstance(metrics, dict):
        return None
    found = (metrics.get("error") or {}).get(quantity)
    return found if isinstance(found, dict) and found.get("values") else None


def output_errors(rows: pd.DataFrame) -> list[float | None]:
    """The largest output error each record of ``rows`` measured (None where none)."""
    backward = {s.name for s in suites() if s.info.autograd}
    return [output_error(m, x, s, backward) for m, x, s in
            zip(rows["metrics"], rows["max_error"], rows["suite"])]


def output_error(metrics: object, max_error: object, suite: str, backward: set[str]
                 ) -> float | None:
    """The largest output error a record measured, or None. Records written before error
    figures existed (no ``tolerance_source``) give their max_error, unless their suite is one
    of ``backward`` (it measures gradients: not an output error)."""
    figures = quantity_figures(metrics, "output")
    if figures is not None:
        return float(figures["max_abs"])
    if isinstance(metrics, dict) and "tolerance_source" in metrics:
        return None  # measured, and not an output comparison with the reference
    if suite in backward:
        return None
    if max_error is None or (isinstance(max_error, float) and math.isnan(max_error)):
        return None
    return float(max_error)


def worst_output_error(rows: pd.DataFrame) -> float | None:
    """The largest output error over the records of ``rows``, or None."""
    found = [e for e in output_errors(rows) if e is not None]
    return max(found) if found else None


def pooled_of(rows: pd.DataFrame, quantity: str) -> dict | None:
    """The figures of one quantity pooled over the records of ``rows``."""
    return pooled([f for f in (quantity_figures(m, quantity) for m in rows["metrics"]) if f])


def sci(value: float | None) -> str:
    """1.2e-03, or — for nothing measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.1e}"


def tensors_at(frame: pd.DataFrame, impl: str, check: str) -> dict[str, dict] | None:
    """The per-tensor figures (output, h_n, c_n) of the accuracy suite's check for one
    implementation, or None."""
    rows = frame[(frame["impl"] == impl) & (frame["suite"] == ACCURACY)
                 & (frame["check"] == check)]
    for metrics in rows["metrics"]:
        if isinstance(metrics, dict) and isinstance(metrics.get("tensors"), dict):
            return metrics["tensors"]
    return None


def tolerance_of(frame: pd.DataFrame, impl: str) -> str:
    """The tolerance an implementation's float32 values were held to (shapes suite's comparison
    with the reference), and where it came from: 'atol 0.1 (declared)'; — when not recorded."""
    rows = frame[(frame["impl"] == impl) & (frame["check"] == "values_match_reference")
                 & frame["tolerance"].notna()]
    for _, row in rows.iterrows():
        case = row["case"] if isinstance(row["case"], dict) else {}
        if case.get("dtype", "float32") != "float32":
            continue
        metrics = row["metrics"] if isinstance(row["metrics"], dict) else {}
        source = str(metrics.get("tolerance_source", ""))
        text = f"atol {row['tolerance']:g}" + (f" rtol {row['rtol']:g}" if row["rtol"] else "")
        return f"{text} (declared)" if source.startswith("declared") else text
    return "—"
