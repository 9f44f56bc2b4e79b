"""Validators of numbers that come from users (options, case fields, grid files): each refuses a
bad value with one line naming it and what would be valid. ``flag`` names the value as a
command-line option (``--workers 0``) rather than a field (``batch=-1``)."""

from __future__ import annotations


def shown(name: str, value: object, flag: bool) -> str:
    return f"{name} {value}" if flag else f"{name}={value!r}"


def integer_at_least(name: str, value: object, minimum: int = 1, *, flag: bool = False) -> None:
    """ValueError unless ``value`` is an integer >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{shown(name, value, flag)} is invalid; expected an integer >= "
                         f"{minimum}")


def positive_number(name: str, value: object, *, flag: bool = False) -> None:
    """ValueError unless ``value`` is a finite number above 0."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and 0 < value < float("inf")):
        raise ValueError(f"{shown(name, value, flag)} is invalid; expected a positive number")


def chosen_among(name: str, value: object, valid) -> frozenset:
    """A declared set (dtypes, devices) as a frozenset; TypeError unless a set-like of strings,
    ValueError naming what is unknown and the valid choices."""
    if isinstance(value, str) or not isinstance(value, (set, frozenset, list, tuple)):
        raise TypeError(f"capabilities {name}={value!r} is invalid; expected a set")
    if bad := sorted(set(value) - set(valid)):
        raise ValueError(f"capabilities {name} {bad} unknown; valid: {', '.join(valid)}")
    return frozenset(value)
