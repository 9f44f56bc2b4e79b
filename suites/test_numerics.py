"""numerics: outputs stay finite, and equal the reference's, on large-magnitude inputs (x100)
and on long sequences (T=1000) (harness.conformance.values says how they are compared)."""

from __future__ import annotations

from harness.conformance.grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.conformance.values import finite_and_close

SUITE = SuiteInfo(order=70)

def large_grid(fam):
    return [BASE, BASE.with_(num_layers=2, bidirectional=True, with_hx=True),
            BASE.with_(lengths=(5, 2, 4)), BASE.with_(dtype="float64", num_layers=2)]


def long_grid(fam):
    long = BASE.with_(seq_len=1000, batch=2)
    return [long, long.with_(num_layers=2, bidirectional=True),
            long.with_(lengths=(1000, 613), with_hx=True)]


@cases(large_grid)
def test_large_inputs(subject, check):
    finite_and_close(subject, check, subject.inputs(scale=100.0), "large")


@cases(long_grid)
def test_long_sequence(subject, check):
    finite_and_close(subject, check, subject.inputs(), "long")
