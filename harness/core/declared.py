"""What an implementation declares about itself beyond its capabilities: its tolerance, its
family and the time its first calls may take.

A quantized, compiled or exported model is not torch's float module: it is honestly a few
thousandths away from it, it may spend seconds compiling before its first answer, and its class
knows which family it reproduces. A class says so with class attributes, a registry entry with
ImplSpec fields, and both are read and validated here, so a malformed declaration is one line
naming the bad value before anything runs:

    harness_tolerance = {"float32": {"atol": 5e-2, "rtol": 0.0}}   # per dtype
    harness_family = "lstm"
    harness_check_timeout = 600                                      # seconds

A dtype's entry may add ``"large_inputs": {"atol": ..., "rtol": ...}``: the bound with inputs
x100 (saturating gates), where an int8 model is far less accurate than on ordinary inputs; and
``"long_sequences"``: the bound over hundreds to thousands of steps, where its rounding
accumulates in the state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from harness.core.case import DTYPES

LARGE, LONG = "large_inputs", "long_sequences"  # a dtype's optional extra bounds


@dataclass(frozen=True)
class DeclaredTolerance:
    """|actual - expected| <= atol + rtol * |expected|, as the implementation declares it."""

    atol: float
    rtol: float = 0.0
    large: DeclaredTolerance | None = None  # with inputs x100; None: the same bound
    long: DeclaredTolerance | None = None  # over long sequences; None: the same bound


@dataclass(frozen=True)
class Tolerances:
    """Declared bounds by dtype name (hashable, so an ImplSpec holding it stays hashable)."""

    entries: tuple[tuple[str, DeclaredTolerance], ...]

    def get(self, dtype: str) -> DeclaredTolerance | None:
        return dict(self.entries).get(dtype)

    def as_dict(self) -> dict[str, dict]:
        """{"float32": {"atol": ..., "rtol": ...}}, as a class declares it."""
        out: dict[str, dict] = {}
        for dtype, t in self.entries:
            out[dtype] = {"atol": t.atol, "rtol": t.rtol}
            for key, extra in ((LARGE, t.large), (LONG, t.long)):
                if extra is not None:
                    out[dtype][key] = {"atol": extra.atol, "rtol": extra.rtol}
        return out


def bound(name: str, value: object, where: str) -> float:
    """A finite number >= 0; ValueError naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"{where} {name}={value!r} is invalid; expected a finite number >= 0")
    return float(value)


def parse_tolerance(declared: object, *, where: str = "tolerance") -> Tolerances | None:
    """Tolerances from ``{"float32": {"atol": 1e-3, "rtol": 0.0}}`` (rtol may be left out; a
    DeclaredTolerance is taken as it is, Tolerances as they are); None for None.
    ValueError/TypeError naming the bad dtype, key or value."""
    if declared is None or isinstance(declared, Tolerances):
        return declared
    if not isinstance(declared, Mapping):
        raise TypeError(f"{where}={declared!r} is invalid; expected a mapping from dtype to "
                        "{'atol': float, 'rtol': float}")
    parsed: dict[str, DeclaredTolerance] = {}
    for dtype, entry in declared.items():
        if dtype not in DTYPES:
            raise ValueError(f"{where} names dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        if isinstance(entry, DeclaredTolerance):
            parsed[dtype] = entry
            continue
        extra = {key: parse_bound(entry[key], f"{where}[{dtype!r}][{key!r}]",
                                  keys={"atol", "rtol"})
                 for key in (LARGE, LONG) if isinstance(entry, Mapping) and key in entry}
        parsed[dtype] = parse_bound(entry, f"{where}[{dtype!r}]",
                                    keys={"atol", "rtol", LARGE, LONG},
                                    large=extra.get(LARGE), long=extra.get(LONG))
    return Tolerances(tuple(parsed.items()))


def parse_bound(entry: object, where: str, *, keys: set[str],
                large: DeclaredTolerance | None = None, long: DeclaredTolerance | None = None
                ) -> DeclaredTolerance:
    """One {"atol": ..., "rtol": ...} of a declaration."""
    if not isinstance(entry, Mapping) or "atol" not in entry:
        raise TypeError(f"{where}={entry!r} is invalid; expected {{'atol': float, "
                        "'rtol': float}")
    if bad := sorted(set(entry) - keys):
        raise ValueError(f"{where} has unknown keys {bad}; valid: {', '.join(sorted(keys))}")
    return DeclaredTolerance(bound("atol", entry["atol"], where),
                             bound("rtol", entry.get("rtol", 0.0), where), large, long)


def parse_timeout(declared: object, *, where: str = "check_timeout") -> float | None:
    """Seconds a check may take (a positive number), or None."""
    if declared is None:
        return None
    if isinstance(declared, bool) or not isinstance(declared, (int, float)) or not (
            math.isfinite(declared) and declared > 0):
        raise ValueError(f"{where}={declared!r} is invalid; expected a positive number of "
                         "seconds")
    return float(declared)


def declared_family(cls: type) -> str | None:
    """The family a class names in ``harness_family`` (validated by the ImplSpec), or None."""
    family = getattr(cls, "harness_family", None)
    if family is not None and not isinstance(family, str):
        raise TypeError(f"harness_family={family!r} is invalid; expected a family name")
    return family


def class_declarations(cls: type) -> dict[str, Any]:
    """The ImplSpec fields a class declares: tolerance and check_timeout."""
    return {
        "tolerance": parse_tolerance(getattr(cls, "harness_tolerance", None),
                                     where="harness_tolerance"),
        "check_timeout": parse_timeout(getattr(cls, "harness_check_timeout", None),
                                       where="harness_check_timeout"),
    }


def capabilities_from(cls, declared, *, label: str):
    """An instance of the capabilities dataclass ``cls`` from what a class or an op declares:
    an instance, a mapping of overrides of the full contract (ValueError naming an unknown
    field and the valid ones), or nothing (the whole contract is claimed). ``label`` names the
    capabilities in that error ("capabilities", "op capabilities")."""
    if declared is None:
        return cls()
    if isinstance(declared, cls):
        return declared
    if isinstance(declared, Mapping):
        valid = {f.name for f in fields(cls)}
        if bad := sorted(set(declared) - valid):
            raise ValueError(f"unknown {label} {bad}; valid: {', '.join(sorted(valid))}")
        return replace(cls(), **declared)
    raise TypeError(f"harness_capabilities={declared!r} is invalid; expected {cls.__name__} "
                    "or a mapping")
