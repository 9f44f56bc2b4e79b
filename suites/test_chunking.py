"""chunking: an op that works in chunks gives the reference's answer at every chunk size it
accepts (1, 16, 32, 64), at a length that is no multiple of any (T=100): the tail chunk, the
state carried across each boundary and the cumulative decay restarted at each chunk's start."""

from __future__ import annotations

from harness.conformance.op_checks import outputs_match
from harness.conformance.op_grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=12)


@cases(lambda fam: [BASE.with_(seq_len=100, chunk_size=c) for c in (1, 16, 32, 64)]
       + [BASE.with_(seq_len=100, chunk_size=16, stress="s1", with_state=False)], kind="op")
def test_chunk_size_invariance(subject, check):
    outputs_match(subject, check)
