"""compile: an implementation that claims torch.compile (``compiled: True``) really compiles.

torch.compile falls back to eager without a word: dynamo skips what it cannot trace (torch's
own RNN modules by default) and the call runs as plain Python. The check starts dynamo afresh
(``torch._dynamo.reset()``: every compiled function of this process compiles again on its next
call), builds the implementation, calls it once and counts what dynamo captured: no graph at all
fails, naming the first graph break. The counts are recorded. Implementations that do not claim
torch.compile are *not supported* here."""

from __future__ import annotations

import pytest

from harness.conformance.grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.dynamo import during

SUITE = SuiteInfo(order=95)


@pytest.mark.time_limit(3)
@cases(lambda fam: [BASE, BASE.with_(training=True, lengths=(5, 3, 1))])
def test_compile_captures_graphs(subject, check):
    if not subject.spec.capabilities.compiled:
        check.not_supported("the implementation does not claim torch.compile (compiled: False)")
    import torch._dynamo

    torch._dynamo.reset()
    module = subject.build()
    _, counts = during(lambda: subject.run(module, subject.inputs()))
    check.metrics.update(graphs=counts.graphs, frames=counts.frames, graph_breaks=counts.breaks,
                         first_break=counts.first_break)
    check.holds("graphs captured", counts.graphs > 0,
                f"torch.compile captured no graph during a call: it ran eagerly "
                f"({counts.describe()})")
