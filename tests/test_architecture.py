"""The house rules of harness/, checked from the source: imports point one way, from the core
contract up to the command line; no module imports from a stage above its own, and no cycle;
every module is small and says why it exists; the names users import keep working."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "harness"

# Stages, lowest first. A module may import from its own package and from lower stages only.
STAGES = {
    "harness": 0, "harness.core": 1,
    "harness.records": 2, "harness.registry": 2, "harness.families": 2, "harness.spec": 2,
    "harness.diagnosis": 2.5,
    "harness.impls": 3, "harness.conformance": 3, "harness.latency": 3, "harness.profiling": 3,
    "harness.gate": 4,
    "harness.history": 4.5,
    "harness.report": 5,
    "harness.job": 6,
    "harness.cli": 7, "harness.__main__": 8,
}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def stage_of(module: str) -> str:
    """The longest STAGES key that is the module or a package above it."""
    return max((s for s in STAGES if module == s or module.startswith(s + ".")), key=len)


def resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """Every harness module ``module`` imports, at any depth of its code (lazy imports too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = resolve(name) if name.startswith("harness") else None
            # a package's __init__ re-exporting its own modules is not a dependency
            if target and target != module and not (
                    path.name == "__init__.py" and target.startswith(module + ".")):
                found.add(target)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_no_module_imports_from_a_stage_above_its_own():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if stage_of(t) != stage_of(m) and STAGES[stage_of(t)] >= STAGES[stage_of(m)]]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                return [*path, m, t]
            if t not in state and (cycle := visit(t, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The two tests above could pass on a checker that finds nothing: it does find these."""
    assert "harness.core.contract" in GRAPH["harness.core.subject"]
    assert stage_of("harness.report.sections.latency") == "harness.report"
    assert STAGES[stage_of("harness.cli.run")] > STAGES[stage_of("harness.conformance.session")]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_is_small_and_says_why_it_exists(module):
    path = MODULES[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path}: {len(text.splitlines())} lines"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{path} opens with no docstring"
    assert path.stem not in ("utils", "util", "helpers", "misc")


@pytest.mark.parametrize(("module", "names"), [
    ("harness.spec", ["ImplSpec", "Capabilities", "load_with_method", "spec_from_class"]),
    ("harness.registry", ["Registry", "GROUP", "choose", "choose_one"]),
    ("harness.cli", ["main", "build_parser"]),
    ("harness.report", ["render", "write_report"]),
])
def test_public_names_keep_working(module, names):
    imported = importlib.import_module(module)
    assert all(hasattr(imported, n) for n in names)


def test_every_package_is_in_the_wheel():
    """pyproject lists packages by name (suites/ ships as harness.suites): a package left out
    imports in a clone and is missing from `pip install .`."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    packages = {module_name(p) for p in ROOT.rglob("__init__.py")} | {"harness.suites"}
    assert packages - listed == set()
