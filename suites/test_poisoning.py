"""poisoning: during the op's call, torch.empty, empty_like and Tensor.new_empty hand out
NaN-filled memory (fla's conftest does the same): an op that reads memory it never wrote — a
tail chunk never computed, a buffer summed into before it is cleared — returns NaN there."""

from __future__ import annotations

from harness.conformance.op_grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.scratch import poisoned_scratch

SUITE = SuiteInfo(order=14)


@cases(lambda fam: [BASE.with_(seq_len=100), BASE.with_(seq_len=65, chunk_size=16),
                    BASE.with_(seq_len=83, batch=1, lengths=(1, 17, 0, 65))], kind="op")
def test_reads_only_what_it_wrote(subject, check):
    inputs = subject.inputs()
    with poisoned_scratch():
        got = subject.run(inputs)
    for name, tensor in got.named().items():
        check.finite(f"{name} (scratch memory NaN-filled)", tensor)
    want = subject.run_reference(inputs, final=got.state is not None)
    check.outputs_close(subject.comparable(got, want), want)
