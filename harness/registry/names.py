"""Whether a run's selection names things that exist, told without importing them: registry
entries and families by their entry points' names, a ``MODULE:CLASS`` path by its module's file
and the names its top level defines.

The command that drives worker processes asks this first. Where the names are confirmed, it
imports nothing of the implementations, nor torch, and starts its workers at once (each resolves
the selection exactly: harness.conformance.handoff). Where they are not, it resolves them
exactly itself before anything runs (harness.registry.choose), so bad input is still one line,
and a name the quick route cannot see (an entry point that publishes several entries, a class
made at run time) is still accepted.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

IMPLS_GROUP = "seq_harness.impls"  # harness.registry.GROUP
FAMILIES_GROUP = "seq_harness.families"  # harness.core.families.GROUP


def confirmed(*, impls: Sequence[str] = (), impl_classes: Sequence[str] = (),
              family: str | None = None, skipped: Sequence[str] = ()) -> bool:
    """True when every name is confirmed; False where only harness.registry.choose can tell
    (it then says what is wrong, or accepts it)."""
    if (family is not None and not impl_classes) or (skipped and (impls or impl_classes)):
        return False
    entries = {ep.name for ep in entry_points(group=IMPLS_GROUP)}
    if any(name not in entries for name in (*impls, *skipped)):
        return False
    if family is not None and family not in {ep.name for ep in
                                             entry_points(group=FAMILIES_GROUP)}:
        return False
    return all(defined(path) for path in impl_classes)


def defined(path: str) -> bool:
    """Whether ``MODULE:NAME`` names a Python source file whose top level defines NAME (its
    parent packages are imported to find it, as ``python -m`` would; the current directory is
    importable)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        return False
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None)
    if origin is None or not origin.endswith(".py"):
        return False
    try:
        tree = ast.parse(Path(origin).read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    return attr.split(".")[0] in top_level_names(tree.body)


def top_level_names(body: list[ast.stmt]) -> set[str]:
    """Names bound by module-level statements (inside if/try/with blocks too)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        for block in ("body", "orelse", "finalbody", "handlers"):
            if isinstance(node, (ast.If, ast.Try, ast.With)) and hasattr(node, block):
                inner = getattr(node, block)
                names |= top_level_names([s for h in inner for s in h.body]
                                         if block == "handlers" else inner)
    return names
