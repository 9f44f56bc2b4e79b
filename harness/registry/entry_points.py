"""The registry: every implementation published in the ``seq_harness.impls`` entry-point group.

The built-ins are published there too, exactly as a third party publishes its own. An entry
point that fails to load does not take the others down: it is kept as a broken entry and
reported as a failed check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from harness.core.families import family_names
from harness.core.spec import ImplSpec
from harness.core.text import one_line

GROUP = "seq_harness.impls"


@dataclass(frozen=True)
class Registry:
    """Entries by name, in display order, plus entry points that failed to load (name -> why)."""

    specs: Mapping[str, ImplSpec]
    broken: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, group: str = GROUP) -> Registry:
        specs: dict[str, ImplSpec] = {}
        broken: dict[str, str] = {}
        for ep in entry_points(group=group):
            try:
                loaded = ep.load()
                if callable(loaded) and not isinstance(loaded, ImplSpec):
                    loaded = loaded()
                found = [loaded] if isinstance(loaded, ImplSpec) else list(loaded)
                for spec in found:
                    if not isinstance(spec, ImplSpec):
                        raise TypeError(f"expected ImplSpec, got {type(spec).__name__}")
                    if spec.name in specs:
                        raise ValueError(f"duplicate implementation name {spec.name!r}")
                    specs[spec.name] = spec
            except Exception as error:  # a broken plug-in must not hide the others
                broken[ep.name] = f"entry point {ep.value!r} failed to load: {one_line(error)}"
        order = family_names()
        ranked = sorted(specs.values(), key=lambda s: (order.index(s.family), s.name))
        return cls({s.name: s for s in ranked}, broken)

    def select(self, names: Iterable[str]) -> list[ImplSpec]:
        """The named entries, in the order given; a ValueError names any unknown one."""
        chosen = []
        for name in names:
            if name not in self.specs:
                if name in self.broken:
                    raise ValueError(f"implementation {name!r} is broken: {self.broken[name]}")
                valid = ", ".join(self.specs) or "(none installed)"
                raise ValueError(f"unknown implementation {name!r}; valid: {valid}")
            if self.specs[name] not in chosen:
                chosen.append(self.specs[name])
        return chosen
