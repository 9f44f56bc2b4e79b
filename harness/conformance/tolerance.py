"""Which tolerance a comparison is held to: resolved in one place.

A value check compares an implementation with its family's reference. By default it is held to
the family's tolerance for the case (``Tolerance.for_case``); an implementation that is
honestly not float — int8 weights, another runtime — declares its own bound per dtype
(``harness_tolerance`` on a class, ``ImplSpec.tolerance`` in the registry), and a one-off run may
set one for every implementation with ``--atol``/``--rtol``. The command line wins over the
declaration, the declaration over the family default.

Quantities differ in what they may be loosened by:

- ``output``: outputs and final states against the reference (and the implementation against
  itself): the declared tolerance applies as it is;
- ``large``: inputs x100 (the numerics and accuracy suites): the family default also allows
  a relative error (saturated gates accumulate rounding); a declared tolerance applies as it
  is, or its ``large_inputs`` bound where it declares one;
- ``long``: hundreds to thousands of steps: the same family default as ``large``; a declared
  tolerance as it is, or its ``long_sequences`` bound where it declares one;
- ``gradient``: the family's gradient default (1e-4 float32 at the conformance sizes), or the
  declared tolerance where it is looser — a declaration never tightens a gradient check below
  the default;
- ``strict``: exact properties (outputs at padded steps are zeros): always the family default,
  never loosened.

Shapes, dtypes, error types and the explicitly exact comparisons (zero gradient at padding,
inputs left unmodified) carry their own bounds and never ask here.
"""

from __future__ import annotations

from harness.conformance.checks import Check, Tolerance
from harness.conformance.override import Override
from harness.core.case import Case
from harness.core.families import Family
from harness.core.spec import ImplSpec

QUANTITIES = ("output", "large", "long", "gradient", "strict")
LARGE_RTOL = {"float32": 1e-5, "float64": 1e-12}  # numerics: on top of the case's atol

FAMILY, DECLARED, COMMAND_LINE = "family default", "declared", "--atol/--rtol"


def family_default(case: Case, family: Family, quantity: str) -> Tolerance:
    """The tolerance a quantity is held to when nothing is declared: the family's for the
    case's dtype, with a relative part added for large inputs and long sequences; gradients
    1e-4 absolute in float32 (1e-10 in float64) with the family's relative part."""
    base = Tolerance.for_case(case, family)
    if quantity in ("large", "long"):
        return base.scaled(rtol=max(base.rtol, LARGE_RTOL.get(case.dtype, 0.0)))
    if quantity == "gradient":  # backward sums over every step and row
        return Tolerance(1e-10 if case.dtype == "float64" else 1e-4, base.rtol)
    return base


def declared(case: Case, spec: ImplSpec, override: Override | None, *, quantity: str = "output"
             ) -> tuple[Tolerance, str] | None:
    """The tolerance declared for the case's dtype and where it comes from, or None."""
    if override is not None and override.given:
        base = Tolerance.for_case(case, spec.family_def)
        return (Tolerance(base.atol if override.atol is None else override.atol,
                          override.rtol or 0.0), COMMAND_LINE)
    entry = None if spec.tolerance is None else spec.tolerance.get(case.dtype)
    if entry is None:
        return None
    extra = {"large": entry.large, "long": entry.long}.get(quantity)
    if extra is not None:
        entry = extra
    return Tolerance(entry.atol, entry.rtol), f"{DECLARED} by {spec.name}"


def tolerance_for(case: Case, spec: ImplSpec, override: Override | None = None, *,
                  quantity: str = "output") -> tuple[Tolerance, str]:
    """(the tolerance, its source) of one quantity for one implementation on one case."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity {quantity!r} is invalid; valid: {', '.join(QUANTITIES)}")
    default = family_default(case, spec.family_def, quantity)
    found = None if quantity == "strict" else declared(case, spec, override, quantity=quantity)
    if found is None:
        return default, FAMILY
    tol, source = found
    if quantity == "gradient":
        if tol.atol <= default.atol and tol.rtol <= default.rtol:
            return default, FAMILY
        return Tolerance(max(tol.atol, default.atol), max(tol.rtol, default.rtol)), source
    return tol, source


def check_tolerances(case: Case, spec: ImplSpec, override: Override | None = None
                     ) -> tuple[Tolerance, str, dict[str, Tolerance]]:
    """What a Check needs: the value tolerance, its source, and every other quantity's bound."""
    tol, source = tolerance_for(case, spec, override)
    others = {q: tolerance_for(case, spec, override, quantity=q)[0]
              for q in QUANTITIES if q != "output"}
    return tol, source, others


def check_for(case: Case, spec: ImplSpec, override: Override | None = None, *,
              always_rounding: bool = False) -> Check:
    """The Check of one implementation on one case, held to the tolerances resolved here."""
    tol, source, others = check_tolerances(case, spec, override)
    return Check(tol, reference_name=spec.family_def.reference_label, tolerances=others,
                 source=source, always_rounding=always_rounding)
