"""parallel-vs-reference: every implementation equals its family's reference loop, forward and
backward — outputs, final state, and the gradients with respect to the input, the initial state
and every parameter — at lengths on both sides of the chunk sizes a parallel implementation
works in (1, 15, 16, 17, 63, 64, 65, 129); an implementation that scans in chunks equals it at
every chunk size, at lengths that are not multiples of the chunk, with variable lengths and in
both directions."""

from __future__ import annotations

import dataclasses
import functools

from harness.conformance.gradients import match_reference
from harness.conformance.grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.subject import Subject

SUITE = SuiteInfo(order=85, autograd=True)

LENGTHS = (1, 15, 16, 17, 63, 64, 65, 129)
CHUNK_SIZES = (1, 2, 3, 5, 16, 64)


def boundary_grid(fam):
    small = BASE.with_(batch=2, input_size=4, hidden_size=5, with_hx=True)
    return [small.with_(seq_len=t) for t in LENGTHS]


@cases(boundary_grid)
def test_lengths_around_chunk_boundaries_match_reference(subject, check):
    match_reference(subject, check, subject.inputs())


def chunk_grid(fam):
    base = BASE.with_(seq_len=37, batch=3, input_size=4, hidden_size=5, with_hx=True)
    return [base, base.with_(lengths=(37, 20, 3), bidirectional=True),
            base.with_(num_layers=2, dtype="float64")]


@cases(chunk_grid)
def test_chunk_size_invariance(subject, check):
    """Built at every chunk size (its ``chunk_size=`` argument), the implementation equals the
    reference loop forward and backward."""
    spec = subject.spec
    if not spec.capabilities.chunked:
        check.not_supported("the implementation does not work in chunks (capabilities: "
                            "chunked=False)")
    for size in CHUNK_SIZES:
        sized = dataclasses.replace(spec, factory=functools.partial(spec.factory,
                                                                    chunk_size=size))
        at_size = Subject(sized, subject.case)
        check.note(f"chunk_size={size}")
        match_reference(at_size, check, at_size.inputs())
