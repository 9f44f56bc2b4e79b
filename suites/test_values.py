"""values: an op's output and final state equal its family's reference loop — in float32 and
float64 (atol 1e-10), and in bfloat16 where the op declares it (the state in float32), at
lengths around chunk boundaries (1, 15, 63, 64, 65, 100, 1000), head dimensions that are not
powers of two, one and several heads, with and without an initial state, with a scale passed
(1, as the SSD mapping takes it), and without asking for the final state (as a model calls an
op in training); and the same values from non-contiguous inputs. (Module families check their
values in shapes::values_match_reference.)"""

from __future__ import annotations

from harness.conformance.op_checks import outputs_match
from harness.conformance.op_grids import BASE, values
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=8)


@cases(values, kind="op")
def test_matches_reference(subject, check):
    outputs_match(subject, check)


@cases([BASE.with_(seq_len=65), BASE.with_(seq_len=83, batch=1, lengths=(1, 17, 0, 65))],
       kind="op")
def test_non_contiguous_inputs(subject, check):
    """q, k, v and the gates as views of head-first tensors ([B, H, T, ...] transposed, as an
    attention layer's rearrange leaves them) and the initial state stored [N, H, V, K]: the same
    values as the reference. A kernel that indexes memory as if contiguous reads them
    scrambled."""
    inputs = subject.inputs()
    views = inputs.strided()
    if views.q.is_contiguous() or views.gates[0].is_contiguous():
        check.fail("the harness failed to build non-contiguous inputs")
    outputs_match(subject, check, views)
