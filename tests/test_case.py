"""Unit tests of harness/case.py: validation, ids, serialisation and data seeds of a Case."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from collections import defaultdict

import pytest

from harness.conformance import grids
from harness.conformance.suites import suite_dir
from harness.core.case import Case
from harness.core.families import load_families

BASE = Case(seq_len=5, batch=3, input_size=3, hidden_size=7)


@pytest.mark.parametrize(
    ("changes", "named", "valid"),
    [
        ({"seq_len": 0}, "seq_len=0", ">= 1"),
        ({"batch": -1}, "batch=-1", ">= 0"),
        ({"input_size": 0}, "input_size=0", ">= 1"),
        ({"num_layers": 0}, "num_layers=0", ">= 1"),
        ({"proj_size": 7}, "proj_size=7", "hidden_size=7"),
        ({"proj_size": 9}, "proj_size=9", "hidden_size=7"),
        ({"dropout": 1.0}, "dropout=1.0", "dropout < 1"),
        ({"dropout": -0.1}, "dropout=-0.1", "0 <= dropout"),
        ({"dtype": "float128"}, "'float128'", "float32, float64"),
        ({"device": "tpu"}, "'tpu'", "cpu, cuda"),
        ({"lengths": (5, 3)}, "lengths=(5, 3)", "batch=3"),
        ({"lengths": (5, -1, 3)}, "length -1", "0 <= length"),
        ({"lengths": (5, 6, 3)}, "length 6", "seq_len=5"),
        ({"lengths": [5, 3, 1]}, "[5, 3, 1]", "tuple"),
        ({"batch": None, "lengths": (5,)}, "batch=None", "unbatched"),
    ],
)
def test_invalid_field_is_refused_naming_value_and_valid_range(changes, named, valid):
    with pytest.raises(ValueError) as raised:
        Case(**{**BASE.to_dict(), **changes})
    message = str(raised.value)
    assert named in message
    assert valid in message


def test_with_validates_again():
    with pytest.raises(ValueError, match="seq_len=0"):
        BASE.with_(seq_len=0)


def test_valid_edge_values_are_accepted():
    assert Case(seq_len=1, batch=0, input_size=1, hidden_size=2, proj_size=1).batch == 0
    assert BASE.with_(dropout=0.99, lengths=(1, 5, 5)).varlen
    assert not BASE.with_(lengths=(5, 5, 5)).varlen


@pytest.mark.parametrize(("batch", "rows", "lengths"), [(0, 0, ()), (None, 1, (4,)),
                                                        (3, 3, (4, 4, 4))])
def test_rows_and_lengths_of_empty_unbatched_and_full_batches(batch, rows, lengths):
    case = Case(seq_len=4, batch=batch, input_size=1, hidden_size=2)
    assert case.rows == rows
    assert case.effective_lengths == lengths


# Ids --------------------------------------------------------------------------------------------


def _from_grid(grid, kind: str = "module"):
    """A grid's cases for every family of the kind it is for (a module grid is never asked
    about an op family, as the collection never asks it)."""
    if not callable(grid):
        return list(grid)
    return [case for fam in load_families().by_name.values() if fam.kind == kind
            for case in grid(fam)]


def all_grid_cases() -> set[Case]:
    """Every Case of harness.conformance.grids and of every suite's grids (``cases`` marks and
    *grid* functions), for every family of the grid's kind (module cases, op cases), on both
    devices."""
    found = list(grids.layouts()) + [grids.BASE]
    for fam in load_families().by_name.values():
        if fam.kind != "module":
            continue
        for batch_first in (None, False, True):
            found += grids.varlen(fam, batch_first=batch_first)
    for path in sorted(suite_dir().glob("test_*.py")):
        module = importlib.import_module(f"harness.suites.{path.stem}")
        for name, obj in vars(module).items():
            kind = "op" if name.startswith("op_") else "module"
            if inspect.isfunction(obj) and "grid" in name and obj.__module__ == module.__name__:
                found += _from_grid(obj, kind)
            for mark in getattr(obj, "pytestmark", []):
                if mark.name == "cases":
                    found += _from_grid(mark.args[0], mark.kwargs.get("kind", "module"))
    return {case.with_(device=device) for case in found for device in ("cpu", "cuda")}


def test_grid_ids_are_unique_and_pytest_safe():
    cases = all_grid_cases()
    assert len(cases) > 100  # the collection really found the suites' grids
    by_id = defaultdict(set)
    for case in cases:
        by_id[case.id].add(case)
        assert re.fullmatch(r"[A-Za-z0-9.\-]+", case.id), case.id
    clashes = {i: c for i, c in by_id.items() if len(c) > 1}
    assert not clashes
    assert len({case.data_seed for case in cases}) == len(cases)


@pytest.mark.parametrize(
    "changes",
    [{"seed": 1}, {"dtype": "float64"}, {"device": "cuda"}, {"training": True},
     {"dropout": 0.5}, {"with_hx": True}, {"bias": False}, {"batch_first": True},
     {"bidirectional": True}, {"num_layers": 2}, {"proj_size": 3}, {"batch": None},
     {"lengths": (5, 3, 1)}, {"lengths": (5, 1, 3)}],
)
def test_every_field_changes_the_id(changes):
    assert BASE.with_(**changes).id != BASE.id


def test_long_lengths_get_distinct_ids():
    a = Case(seq_len=9, batch=9, input_size=1, hidden_size=2, lengths=(9, 8, 7, 6, 5, 4, 3, 2, 1))
    b = a.with_(lengths=(9, 8, 7, 6, 5, 4, 3, 1, 2))
    assert a.id != b.id
    assert str(a) == a.id


# Serialisation and seeds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [BASE, BASE.with_(lengths=(2, 5, 3), with_hx=True, dtype="float64", seed=4),
     BASE.with_(batch=None, proj_size=2, dropout=0.25, training=True, device="cuda")],
)
def test_to_dict_from_dict_round_trip(case):
    data = case.to_dict()
    assert Case.from_dict(data) == case
    if case.lengths is not None:
        assert data["lengths"] == list(case.lengths)  # JSON-friendly


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match="hiden_size"):
        Case.from_dict({**BASE.to_dict(), "hiden_size": 3})


def test_data_seed_is_stable_for_equal_cases_and_differs_otherwise():
    a = Case(seq_len=5, batch=3, input_size=3, hidden_size=7, lengths=(2, 5, 3))
    b = Case.from_dict(dict(a.to_dict()))
    assert a is not b
    assert a.data_seed == b.data_seed
    assert a.data_seed != a.with_(seed=1).data_seed
    assert a.data_seed != a.with_(lengths=(3, 5, 2)).data_seed
    assert a.data_seed != a.with_(hidden_size=8).data_seed


def test_data_seed_is_the_same_in_another_process():
    """Not derived from hash(), which differs per process (PYTHONHASHSEED)."""
    case = BASE.with_(lengths=(2, 5, 3), dtype="float64")
    code = ("from harness.core.case import Case; "
            f"print(Case.from_dict({case.to_dict()!r}).data_seed)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True, timeout=60)
    assert int(done.stdout) == case.data_seed


def test_progress_says_done_of_total_and_an_eta_at_most_every_so_often():
    from harness.core.progress import Progress, duration

    now = [0.0]
    said = []
    progress = Progress(10, "checks", every_s=5, emit=said.append, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 1.5
        progress.step()
    assert said == ["seq-harness: 4/10 checks (40%), 6s elapsed, ETA 9s"]
    now[0] += 100
    progress.step(6)
    assert said[-1] == "seq-harness: 10/10 checks (100%), 1m46s elapsed, done"
    assert duration(3725) == "1h02m"


def test_progress_weighs_checks_by_their_cost_class():
    """The long checks run first: the ETA weighs what is left by what each cost class took,
    and is unknown while a class with checks left has none finished."""
    from types import SimpleNamespace

    from harness.conformance.progress_line import ProgressLine
    from harness.core.progress import Progress

    line = ProgressLine(SimpleNamespace())
    line.know({f"long{i}": 10.0 for i in range(2)} | {f"short{i}": 1.0 for i in range(100)})
    now, said = [0.0], []
    line.progress = Progress(102, "checks", every_s=0, emit=said.append, clock=lambda: now[0],
                             share_left=line.share_left)

    def finish(nodeid: str, seconds: float) -> None:
        now[0] += seconds / 2  # two workers
        line.pytest_runtest_logreport(SimpleNamespace(when="call", passed=True, nodeid=nodeid,
                                                      duration=seconds))

    finish("long0", 10.0)
    finish("long1", 10.0)
    assert line.share_left() is None and said[-1].endswith("ETA unknown")  # no short one yet
    for i in range(50):
        finish(f"short{i}", 0.2)
    # 20 s of long checks and 10 s of short ones done in 15 s; 10 s of short ones are left: a
    # quarter of the work, 5 s (the share of the count, 50 of 102 left, would say 14 s)
    assert abs(line.share_left() - 0.25) < 1e-9
    assert said[-1] == "seq-harness: 52/102 checks (51%), 15s elapsed, ETA 5s"
