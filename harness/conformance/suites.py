"""The shared suites: where they are, and what each declares about itself.

Every suite file declares its own metadata next to its checks::

    SUITE = SuiteInfo(order=20, opt_in=False, measured=False)

so adding a suite touches one file. The declaration is read from the file's syntax tree, not
by importing it (pytest imports suite files; the harness only needs their facts).

order: where the suite runs and appears in reports (lower first).
opt_in: runs only when named (timings must not share the machine with other checks).
quick: part of the quick verdict that a plain ``seq-harness run`` or ``pytest`` gives in
    seconds. The suites that measure for seconds per implementation — the training tasks,
    accuracy at the standard shape, gradient stability — say ``quick=False``: ``seq-harness
    job`` runs them, and ``run`` or pytest with ``--all-suites`` or when named.
measured: a measurement with its own report section, no column in the pass/fail matrix.
autograd: its checks need a backward pass; for an implementation that declares
    ``autograd: False`` (inference only) they are *not supported*, saying so.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SUITES_PACKAGE = "harness.suites"


@dataclass(frozen=True)
class SuiteInfo:
    """What a suite file declares about itself (see the module docstring)."""

    order: int
    opt_in: bool = False
    quick: bool = True
    measured: bool = False
    autograd: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    info: SuiteInfo


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


def declared(path: Path) -> SuiteInfo:
    """The ``SUITE = SuiteInfo(...)`` of a suite file (keyword literals only); parsed once per
    version of the file (reports and runs ask for every suite many times)."""
    stat = path.stat()
    return declared_in(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def declared_in(path: Path, mtime_ns: int, size: int) -> SuiteInfo:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SUITE"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Call)):
            try:
                return SuiteInfo(**{k.arg: ast.literal_eval(k.value)
                                    for k in node.value.keywords})
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: SUITE is malformed ({error})") from None
    raise ValueError(f"{path}: declares no SUITE = SuiteInfo(order=...)")


def suites() -> list[Suite]:
    """Every suite, in order."""
    found = [Suite(suite_name(p.stem), p, declared(p))
             for p in suite_dir().glob("test_*.py")]
    return sorted(found, key=lambda s: (s.info.order, s.name))


def suite_names() -> list[str]:
    return [s.name for s in suites()]


def opt_in_names() -> list[str]:
    return [s.name for s in suites() if s.info.opt_in]


def thorough_names() -> list[str]:
    """The suites a quick verdict leaves out (``quick=False``), in order."""
    return [s.name for s in suites() if not s.info.quick and not s.info.opt_in]


def measured_names() -> list[str]:
    return [s.name for s in suites() if s.info.measured]


def needs_autograd(path: Path) -> bool:
    """Whether the suite file at ``path`` declares that its checks need a backward pass."""
    return declared(path).autograd


def suite_rank(name: str) -> tuple[int, str]:
    """Sort key: suites in their declared order, unknown names after them."""
    order = {s.name: s.info.order for s in suites()}
    return (order.get(name, 10**6), name)


def chosen_suites(names: Sequence[str], skipped: Sequence[str] = (), *,
                  every: bool = False) -> list[str]:
    """The named suites, less the skipped ones. None named: the quick ones (``every``: every
    suite but the opt-in ones). ValueError naming an unknown suite and the valid ones."""
    known = {s.name: s for s in suites()}
    for name in [*names, *skipped]:
        if name not in known:
            raise ValueError(f"unknown suite {name!r}; valid: {', '.join(known)}")
    chosen = names or [n for n, s in known.items()
                       if not s.info.opt_in and (every or s.info.quick)]
    return [n for n in dict.fromkeys(chosen) if n not in skipped]


def suite_files(names: Sequence[str], skipped: Sequence[str] = (), *,
                every: bool = False) -> list[Path]:
    """The files of the chosen suites (see chosen_suites)."""
    paths = {s.name: s.path for s in suites()}
    return [paths[name] for name in chosen_suites(names, skipped, every=every)]
