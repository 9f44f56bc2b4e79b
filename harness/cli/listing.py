"""``seq-harness list``: the registry — names, families, what differs from torch's contract (the
declared tolerance included), and the entries that cannot run here, with why."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from harness.core.families import load_families
from harness.core.spec import ImplSpec
from harness.registry import Registry


def add_parser(commands) -> None:
    commands.add_parser("list", help="the registry: implementations, families, capabilities")


def tolerance_text(spec: ImplSpec) -> list[str]:
    """'tolerance float32 atol 0.1 (x100 inputs: atol 2.5)' for each declared dtype."""
    if spec.tolerance is None:
        return []
    out = []
    for dtype, bound in spec.tolerance.entries:
        text = f"tolerance {dtype} atol {bound.atol:g}" + (
            f" rtol {bound.rtol:g}" if bound.rtol else "")
        extras = [f"{label}: atol {extra.atol:g}" for label, extra in
                  (("x100 inputs", bound.large), ("long sequences", bound.long)) if extra]
        if extras:
            text += f" ({'; '.join(extras)})"
        out.append(text)
    return out


def command(args: argparse.Namespace, argv: list[str]) -> int:
    registry = Registry.load()
    rows, unavailable = [], {}
    for spec in registry.specs.values():
        why = spec.unavailable()
        if why is not None:
            unavailable[spec.name] = why
        differences = spec.capabilities.differences(spec.family_def) + tolerance_text(spec)
        rows.append([spec.name + (" (unavailable)" if why else ""), spec.family,
                     "; ".join(differences) or "the full contract", spec.description])
    print(tabulate(rows, headers=["name", "family", "differs from torch's contract",
                                  "description"]))
    for name, why in unavailable.items():
        print(f"unavailable {name}: {why}")
    for name, why in registry.broken.items():
        print(f"broken entry point {name}: {why}")
    for name, why in load_families().broken.items():
        print(f"broken family {name}: {why}")
    return 0
