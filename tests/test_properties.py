"""Property-based tests: the case builder and the report under random shapes and records.

How many examples run, and whether they are random, is the hypothesis profile's business
(tests/conftest.py): derandomized in CI, many fresh ones under ``tox -e explore``.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.core.case import DTYPES, Case
from harness.records import OUTCOMES, Record, RecordWriter, RunInfo, write_run_info
from harness.report import render

sizes = st.integers(min_value=-3, max_value=40)


@st.composite
def case_fields(draw):
    seq_len = draw(sizes)
    batch = draw(st.one_of(st.none(), sizes))
    lengths = None
    if draw(st.booleans()) and isinstance(batch, int) and 0 <= batch <= 6:
        lengths = tuple(draw(st.integers(-1, 45)) for _ in range(batch))
    return {
        "seq_len": seq_len, "batch": batch, "input_size": draw(sizes),
        "hidden_size": draw(sizes), "num_layers": draw(st.integers(-1, 4)),
        "proj_size": draw(st.integers(-1, 8)), "dropout": draw(st.floats(-0.5, 1.5)),
        "lengths": lengths, "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "dtype": draw(st.sampled_from([*DTYPES, "int8"])),
    }


def valid(f):
    ok = f["seq_len"] >= 1 and f["input_size"] >= 1 and f["hidden_size"] >= 1
    ok = ok and f["num_layers"] >= 1 and (f["batch"] is None or f["batch"] >= 0)
    ok = ok and 0 <= f["proj_size"] < f["hidden_size"] and 0 <= f["dropout"] < 1
    ok = ok and f["dtype"] in DTYPES
    if f["lengths"] is not None:
        ok = ok and all(0 <= n <= f["seq_len"] for n in f["lengths"])
    return ok


@given(case_fields())
@example({"seq_len": 1, "batch": 0, "input_size": 1, "hidden_size": 1, "num_layers": 1,
          "proj_size": 0, "dropout": 0.0, "lengths": None, "bidirectional": False,
          "batch_first": False, "dtype": "float32"})  # a batch of 0 has no lengths
def test_a_case_is_built_exactly_when_its_fields_are_valid(fields):
    if valid(fields):
        case = Case(**fields)
        assert Case.from_dict(case.to_dict()) == case
        assert re.fullmatch(r"[A-Za-z0-9.\-]+", case.id)  # safe in pytest ids and -k
        assert len(case.effective_lengths) == (case.batch if case.batch is not None else 1)
    else:
        with pytest.raises(ValueError) as raised:
            Case(**fields)
        assert "invalid" in str(raised.value) or "entries" in str(raised.value)


@given(st.lists(case_fields().filter(valid), min_size=2, max_size=6, unique_by=repr))
def test_distinct_cases_have_distinct_ids(many):
    cases = {Case(**f) for f in many}
    assert len({c.id for c in cases}) == len(cases)


names = st.text(min_size=1, max_size=20)


# Each example renders a whole report: a fifth of the profile's examples.
@settings(max_examples=max(1, settings.default.max_examples // 5),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(names, names, st.sampled_from(OUTCOMES), st.text(max_size=60),
                          st.one_of(st.none(), st.floats(0, 1e3))), min_size=1, max_size=12))
def test_report_tables_keep_their_shape_whatever_the_names(tmp_path_factory, rows):
    directory = tmp_path_factory.mktemp("run")
    write_run_info(directory, RunInfo("run|1", "now", "0", "torch", "3.11", "linux", "cpu", 1,
                                      None, None, ["seq-harness", "run"]))
    writer = RecordWriter(directory)
    for impl, suite, outcome, message, error in rows:
        writer.write(Record(impl=impl, family="gru", suite=suite, check="c|heck\nx",
                            outcome=outcome, case_id="T5", message=message, max_error=error,
                            nodeid=f"suites/test_x.py::test_c[{impl}:T5]"))
    writer.close()
    text = render([directory])
    for table in re.findall(r"(?:^\|.*\|$\n?)+", text, flags=re.M):
        lines = table.strip("\n").split("\n")
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, table
    assert f"{len(rows)} records over" in text
