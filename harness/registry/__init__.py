"""Every implementation the harness can run: the ``seq_harness.impls`` entry points, classes named
on the command line, and the selection a run covers."""

from harness.registry.classes import resolve_class, spec_for_class_path, split_class_path
from harness.registry.entry_points import GROUP, Registry
from harness.registry.selection import Selection, choose, choose_one, spec_by_origin

__all__ = ["GROUP", "Registry", "Selection", "choose", "choose_one", "resolve_class",
           "spec_by_origin", "spec_for_class_path", "split_class_path"]
