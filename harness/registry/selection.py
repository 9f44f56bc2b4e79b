"""What a run covers: which implementations, resolved from the options every command shares
(--impl, --impl-class, --family).

Resolution happens once, before anything runs, so bad input is one clear line (exit 2), never a
traceback halfway through a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.core.spec import ImplSpec
from harness.registry.classes import spec_for_class_path
from harness.registry.entry_points import Registry


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
    skipped: Sequence[str] = (),
) -> Selection:
    """No --impl and no --impl-class: the whole registry (broken entries included, to be
    reported), less the ``skipped`` entries. --impl-class alone: only those classes. Raises
    ValueError/TypeError on bad input."""
    if family is not None and not impl_classes:
        raise ValueError(f"--family {family!r} is only meaningful with --impl-class MODULE:CLASS")
    registry = registry or Registry.load()
    if unknown := sorted(set(skipped) - set(registry.specs) - set(registry.broken)):
        raise ValueError(f"--skip-impl {unknown[0]!r} is not a registry entry; valid: "
                         f"{', '.join(registry.specs)}")
    if skipped and (impls or impl_classes):
        raise ValueError("--skip-impl leaves entries out of the whole registry: it does not go "
                         "with --impl or --impl-class")
    if not impls and not impl_classes:
        return Selection(tuple(s for s in registry.specs.values() if s.name not in skipped),
                         {k: v for k, v in registry.broken.items() if k not in skipped})
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


def choose_one(
    *,
    impl: str | None = None,
    impl_class: str | None = None,
    family: str | None = None,
    registry: Registry | None = None,
) -> ImplSpec:
    """Exactly one implementation: a registry entry, or ``--impl-class`` (with ``--family``).
    ValueError/TypeError naming what is wrong."""
    if (impl is None) == (impl_class is None):
        raise ValueError(
            "name one implementation: a registry entry (see seq-harness list) or "
            "--impl-class MODULE:CLASS --family FAMILY"
        )
    return choose(impls=[impl] if impl is not None else [],
                  impl_classes=[impl_class] if impl_class is not None else [],
                  family=family, registry=registry).specs[0]


def spec_by_origin(name: str, origin: str, family: str) -> ImplSpec:
    """The implementation a record or a job names: its --impl-class path (an origin of the form
    MODULE:CLASS), or else the registry entry of that name."""
    if origin and ":" in origin:
        return choose_one(impl_class=origin, family=family)
    return choose_one(impl=name)
