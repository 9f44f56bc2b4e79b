"""Every implementation the harness can run: the ``seq_harness.impls`` entry points, classes named
on the command line, and the selection a run covers.

The names below are imported on first use: resolving implementations imports torch, and
``harness.registry.names`` (is a selection's every name there?) must not."""

__all__ = ["GROUP", "Registry", "Selection", "choose", "choose_one", "resolve_class",
           "spec_by_origin", "spec_for_class_path", "split_class_path"]

_HOMES = {"GROUP": "entry_points", "Registry": "entry_points", "resolve_class": "classes",
          "spec_for_class_path": "classes", "split_class_path": "classes"}


def __getattr__(name: str):
    if name in __all__:
        import importlib

        module = importlib.import_module(f"harness.registry.{_HOMES.get(name, 'selection')}")
        return getattr(module, name)
    raise AttributeError(f"module 'harness.registry' has no attribute {name!r}")
