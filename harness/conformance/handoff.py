"""What the controller of a run with worker processes learns from its workers, so that it never
imports torch.

Under pytest-xdist the controller runs no check: it schedules them, counts them for the progress
line, and writes the records of registry entries that failed to load and of checks whose worker
died. Resolving the implementations (loading every entry point), describing the machine
(torch's build, ISA level and GPU for run.json) and reading the suites' modules would each
import torch into it: over two seconds on a 2-vCPU machine, spent before the first worker
starts, in a verdict of about ten. So the workers, which import torch anyway, do that work and
leave what the controller needs in the results directory:

- ``handoff.json``, written by every worker when its collection is done (the same content from
  each): the implementations (family, origin, compiled or not), the entries that failed to
  load, the cost class of every suite test function, or the usage error that stopped the
  selection (the controller then ends the run with it, exit 2);
- ``run.json``, collected by the first worker to get there, from ``run.pending.json``: what
  only the controller knows, the run id and the command line.

Written whole and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.conformance.stash import REFUSED, SELECTION

HANDOFF_FILE = "handoff.json"
PENDING_FILE = "run.pending.json"


@dataclass(frozen=True)
class Entry:
    """What the controller needs of one selected implementation."""

    family: str
    origin: str = ""
    compiled: bool = False


@dataclass(frozen=True)
class Handoff:
    """A worker's selection and collection, as the controller reads them."""

    entries: Mapping[str, Entry] = field(default_factory=dict)
    broken: Mapping[str, str] = field(default_factory=dict)  # entry point -> why it failed
    costs: Mapping[str, float] = field(default_factory=dict)  # "path::test" -> cost class
    error: str | None = None  # the usage error that stopped the selection

    def to_json(self) -> str:
        return json.dumps({"entries": {n: vars(e) for n, e in self.entries.items()},
                           "broken": dict(self.broken), "costs": dict(self.costs),
                           "error": self.error})

    @classmethod
    def from_json(cls, text: str) -> Handoff:
        data = json.loads(text)
        return cls({n: Entry(**e) for n, e in data["entries"].items()}, data["broken"],
                   data["costs"], data["error"])

    def cost(self, nodeid: str) -> float:
        """The cost class (time_limit factor) of a check known by its node id; 1 if unknown."""
        return self.costs.get(nodeid.partition("[")[0], 1.0)


def hands_off(config: pytest.Config) -> bool:
    """Whether this process is the xdist controller of a run with a results directory: the one
    that hands off to its workers what would import torch (see the module docstring)."""
    return (not hasattr(config, "workerinput") and config.getoption("results_dir") is not None
            and config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None)))


def written(path: Path, text: str) -> str:
    """A temporary file beside ``path`` holding ``text``, whole; its name."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return temporary


def replace_file(path: Path, text: str) -> None:
    """``path`` holds ``text``, whole, at once (a temporary file renamed over it)."""
    os.replace(written(path, text), path)


def create_file(path: Path, text: str) -> bool:
    """``path`` holds ``text``, whole, unless another process created it first (False)."""
    temporary = written(path, text)
    try:
        os.link(temporary, path)  # fails if the file exists: the first writer wins
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)


def write_handoff(directory: str | os.PathLike, handoff: Handoff) -> None:
    replace_file(Path(directory) / HANDOFF_FILE, handoff.to_json())


def read_handoff(directory: str | os.PathLike) -> Handoff | None:
    """The handoff a worker left in ``directory``, or None where none has yet."""
    try:
        return Handoff.from_json((Path(directory) / HANDOFF_FILE).read_text())
    except FileNotFoundError:
        return None


def forget_handoff(directory: str | os.PathLike) -> None:
    """Remove an earlier session's handoff (a resumed run's), before any worker writes one."""
    (Path(directory) / HANDOFF_FILE).unlink(missing_ok=True)


def write_pending(directory: str | os.PathLike, run_id: str, argv: list[str]) -> None:
    """What run.json will say that only the controller knows: the run id and command line."""
    replace_file(Path(directory) / PENDING_FILE, json.dumps({"run_id": run_id, "argv": argv}))


def read_pending(directory: str | os.PathLike) -> tuple[str, list[str]] | None:
    try:
        data = json.loads((Path(directory) / PENDING_FILE).read_text())
    except FileNotFoundError:
        return None
    return data["run_id"], data["argv"]


def run_id_for(config, *, describe: bool) -> str:
    """The run id of the records a session (its pytest ``config``) writes into its results
    directory: run.json's; else, without
    ``describe`` (the controller, which leaves run.json to its workers), the pending one,
    written first where no command did; else run.json is created here from the pending run id
    and command line, describing this process's torch and machine (the first process to get
    there writes it; the others read it)."""
    from harness.records import RUN_FILE, RunInfo, new_run_id, read_run_info

    directory = Path(config.getoption("results_dir"))
    directory.mkdir(parents=True, exist_ok=True)
    argv = ["pytest", *config.invocation_params.args]
    if (directory / RUN_FILE).is_file():
        return read_run_info(directory).run_id
    pending = read_pending(directory)
    if not describe:
        if pending is None:
            pending = (new_run_id(), argv)
            write_pending(directory, *pending)
        return pending[0]
    from harness.core.precision import set_tf32

    set_tf32(config.getoption("tf32"))  # before describing: run.json says what checks ran
    run_id, argv = pending or (None, argv)
    threads = config.getoption("threads")
    info = RunInfo.collect(run_id=run_id, argv=argv, threads=threads if threads > 0 else None)
    if create_file(directory / RUN_FILE, info.to_json() + "\n"):
        (directory / PENDING_FILE).unlink(missing_ok=True)
        return info.run_id
    return read_run_info(directory).run_id


def hand_off(config, items) -> None:
    """A worker's handoff, once its collection is done: its selection (none where no suite
    test asked for one), the collected ``items``' cost classes and the usage error that stopped
    the selection."""
    from harness.conformance.collection import expected_cost
    selection, error = config.stash.get(SELECTION, None), config.stash.get(REFUSED, None)

    specs = selection.specs if selection is not None else ()
    entries = {s.name: Entry(s.family, s.origin,
                             bool(getattr(s.capabilities, "compiled", False))) for s in specs}
    costs = {}
    for item in items:
        if (cost := expected_cost(item)) != 1.0:
            costs[item.nodeid.partition("[")[0]] = cost
    broken = dict(selection.broken) if selection is not None else {}
    write_handoff(config.getoption("results_dir"), Handoff(entries, broken, costs, error))
