"""values: an op's output and final state equal its family's reference loop — in float32 and
float64 (atol 1e-10), at lengths around chunk boundaries (1, 15, 63, 64, 65, 100, 1000), head
dimensions that are not powers of two, one and several heads, with and without an initial
state, with a scale passed (1, as the SSD mapping takes it), and without asking for the final
state (as a model calls an op in training). (Module families check their
values in shapes::values_match_reference.)"""

from __future__ import annotations

from harness.conformance.op_checks import outputs_match
from harness.conformance.op_grids import values
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=8)


@cases(values, kind="op")
def test_matches_reference(subject, check):
    outputs_match(subject, check)
