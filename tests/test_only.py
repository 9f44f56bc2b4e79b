"""A class may take some constructor arguments one way only (Capabilities.only): a library
built on bias-free projections declares bias=False only and is checked on every case as a
bias-free case; a case that then repeats another is *not supported*, saying which one runs.
An inference-only class never receives a tensor that requires grad."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.core.case import Case
from harness.core.spec import Capabilities
from harness.registry import spec_for_class_path

SUITES = ("shapes", "state", "many-to-one", "many-to-many", "errors")


def run(target: str, family: str, out, *suites: str) -> tuple[int, list[dict]]:
    code = main(["run", "--impl-class", target, "--family", family, *(
        a for s in suites for a in ("--suite", s)), "--workers", "0", "--out", str(out)])
    return code, [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def test_a_bias_free_library_declares_it_and_passes(tmp_path):
    code, records = run("tests.fixtures_only:BiasFreeMinGRU", "mingru", tmp_path, *SUITES)
    failed = [f"{r['check']}[{r['case_id']}]: {r['message']}" for r in records
              if r["outcome"] == "failed"]
    assert failed == [] and code == 0
    passed = [r for r in records if r["outcome"] == "passed"]
    assert len(passed) > 50
    assert all(r["case"]["bias"] is False for r in records if r["outcome"] == "passed")
    said = [r["message"] for r in records if r["outcome"] == "not supported"
            and "takes bias=False" in (r["message"] or "")]
    assert said and all("which runs" in m for m in said)


def test_only_is_validated_and_listed():
    with pytest.raises(ValueError, match=r"only \['hidden_size'\] is invalid"):
        Capabilities(only={"hidden_size": 3})
    with pytest.raises(ValueError, match="only bias=2 is invalid"):
        Capabilities(only={"bias": 2})
    with pytest.raises(ValueError, match="contradicts no_bias=False"):
        Capabilities(only={"bias": False}, no_bias=False)
    caps = Capabilities(only={"bias": False, "num_layers": 1})
    assert caps.adapt(Case(5, 3, 3, 7, num_layers=2)) == Case(5, 3, 3, 7, bias=False)
    spec = spec_for_class_path("tests.fixtures_only:BiasFreeMinGRU", "mingru")
    assert "bias=False only" in spec.capabilities.differences(spec.family_def)


def test_an_inference_only_class_is_never_given_a_tensor_that_requires_grad(tmp_path):
    """Generation feeds a read-out's prediction back as the next input: the class hands it
    to numpy, which refuses a tensor that requires grad."""
    code, records = run("tests.fixtures_only:NumpyGRU", "gru", tmp_path, "many-to-many")
    assert [r["message"] for r in records if r["outcome"] == "failed"] == []
    assert code == 0
    assert any(r["check"] == "one_to_many_generation" and r["outcome"] == "passed"
               for r in records)
