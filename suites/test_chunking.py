"""chunking: an op that works in chunks gives the reference's answer at every chunk size it
accepts (1, 16, 32, 64), at a length that is no multiple of any (T=100): the tail chunk, the
state carried across each boundary and the cumulative decay restarted at each chunk's start;
and at 128, over two whole chunks and a tail (T=300), and at 48, three 16-blocks: work done
in blocks within a chunk (a triangular inverse by levels of 16 x 16 blocks) must hold beyond
the sizes tried first and at sizes that are no power of two."""

from __future__ import annotations

import torch

from harness.conformance.op_checks import outputs_match
from harness.conformance.op_grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=12)


@cases(lambda fam: [BASE.with_(seq_len=100, chunk_size=c) for c in (1, 16, 32, 64)]
       + [BASE.with_(seq_len=100, chunk_size=16, stress="s1", with_state=False),
          BASE.with_(seq_len=300, chunk_size=128),
          BASE.with_(seq_len=100, chunk_size=48)], kind="op")
def test_chunk_size_invariance(subject, check):
    outputs_match(subject, check)


SIZES = (1, 16, 32, 64)


@cases(lambda fam: [BASE.with_(seq_len=100, chunk_size=16)], kind="op")
def test_chunk_size_takes_effect(subject, check):
    """chunk_size changes the computation: over the sizes the op takes among 1, 16, 32 and 64,
    o and the final state are not all bitwise equal (they are equal up to rounding, which
    chunk_size_invariance checks). All bitwise equal: the op ignores the keyword (a chunk
    length fixed inside, the keyword swallowed), and the invariance checks compared one
    computation four times."""
    sizes = [size for size in SIZES if subject.spec.capabilities.takes_chunk(size)]
    if len(sizes) < 2:
        check.not_supported(f"the op takes {len(sizes)} of the chunk sizes {SIZES}: nothing to "
                            "vary")
    inputs = subject.inputs()
    results = [subject.run(inputs, chunk_size=size).named() for size in sizes]
    for name, tensor in results[0].items():
        check.count(f"{name} at chunk sizes {sizes}", tensor.numel() * len(sizes))
    first, *others = results
    if all(torch.equal(other[name], first[name]) for other in others for name in first):
        check.fail(f"chunk_size has no effect: o and the final state are bitwise equal at chunk "
                   f"sizes {', '.join(map(str, sizes))} — the op ignores its chunk_size keyword "
                   "(honour it, or declare the sizes it honours: harness_capabilities "
                   "chunk_sizes)")
