"""``seq-harness list``: the registry — names, families, what differs from torch's contract."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from harness.core.families import load_families
from harness.registry import Registry


def add_parser(commands) -> None:
    commands.add_parser("list", help="the registry: implementations, families, capabilities")


def command(args: argparse.Namespace, argv: list[str]) -> int:
    registry = Registry.load()
    rows = [[spec.name, spec.family,
             "; ".join(spec.capabilities.differences(spec.family_def)) or "the full contract",
             spec.description] for spec in registry.specs.values()]
    print(tabulate(rows, headers=["name", "family", "differs from torch's contract",
                                  "description"]))
    for name, why in registry.broken.items():
        print(f"broken entry point {name}: {why}")
    for name, why in load_families().broken.items():
        print(f"broken family {name}: {why}")
    return 0
