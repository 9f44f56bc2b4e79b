"""What a run covers: which implementations and which suites, resolved from the options that
``pytest`` and ``seq-harness run`` share (--impl, --impl-class/--family, --suite).

Resolution happens once, before anything runs, so bad input is one clear line (exit 2), never a
traceback halfway through a run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.spec import ImplSpec
from harness.registry import Registry, spec_for_class_path

SUITES_PACKAGE = "harness.suites"
# The order suites run and appear in reports: from the contract's surface to its corners.
SUITE_ORDER = ("shapes", "padding", "many-to-one", "many-to-many", "state", "errors", "numerics",
               "gradients", "stability", "adding", "latency")
# Suites that run only when named: timings must not share the machine with other checks.
OPT_IN = ("latency",)


def suite_dir() -> Path:
    """Where the shared suites are: installed with the wheel as harness.suites, or, when
    ``harness`` itself is imported from a source checkout, the checkout's suites/ folder."""
    found = importlib.util.find_spec(SUITES_PACKAGE)
    if found is not None and found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    checkout = Path(importlib.util.find_spec("harness").origin).parent.parent / "suites"
    if (checkout / "__init__.py").is_file():
        return checkout
    raise ValueError(
        f"the suites package {SUITES_PACKAGE!r} is not installed; install seq-harness "
        "(pip install .)"
    )


def suite_name(module_name: str) -> str:
    """suites/test_many_to_one.py -> 'many-to-one'."""
    stem = module_name.rsplit(".", 1)[-1]
    return stem.removeprefix("test_").replace("_", "-")


def suite_rank(name: str) -> tuple[int, str]:
    """Sort key: known suites in SUITE_ORDER, any others after them by name."""
    return (SUITE_ORDER.index(name) if name in SUITE_ORDER else len(SUITE_ORDER), name)


def suite_names() -> list[str]:
    return sorted((suite_name(p.stem) for p in suite_dir().glob("test_*.py")), key=suite_rank)


def suite_files(names: Sequence[str]) -> list[Path]:
    """The files of the named suites (all of them, in SUITE_ORDER, for an empty selection)."""
    directory = suite_dir()
    valid = suite_names()
    names = names or valid
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown suite {name!r}; valid: {', '.join(valid)}")
    return [directory / f"test_{name.replace('-', '_')}.py" for name in dict.fromkeys(names)]


@dataclass(frozen=True)
class Selection:
    """The implementations a run covers, and entry points that failed to load (name -> why)."""

    specs: tuple[ImplSpec, ...]
    broken: dict[str, str] = field(default_factory=dict)


def choose(
    *,
    impls: Sequence[str] = (),
    impl_classes: Sequence[str] = (),
    family: str | None = None,
    registry: Registry | None = None,
) -> Selection:
    """No --impl and no --impl-class: the whole registry (broken entries included, to be
    reported). --impl-class alone: only those classes. Raises ValueError/TypeError on bad input."""
    if family is not None and not impl_classes:
        raise ValueError(f"--family {family!r} is only meaningful with --impl-class MODULE:CLASS")
    registry = registry or Registry.load()
    if not impls and not impl_classes:
        return Selection(tuple(registry.specs.values()), dict(registry.broken))
    specs = registry.select(impls)
    for path in impl_classes:
        spec = spec_for_class_path(path, family)
        clash = next((s for s in specs if s.name == spec.name), None)
        if clash is not None:
            raise ValueError(
                f"--impl-class {path!r} is named {spec.name!r}, which is already selected "
                f"({clash.origin or 'registry'}); set a harness_name attribute on the class"
            )
        specs.append(spec)
    return Selection(tuple(specs))
