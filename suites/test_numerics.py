"""numerics: outputs stay finite, and equal the reference's, on large-magnitude inputs (x100)
and on long sequences (T=1000; T=4500 for the families a scan computes)
(harness.conformance.values says how they are compared); and a float32 implementation is as
precise as float32 allows: its distance to the float64 answer stays within a small multiple of
the float32 reference's own, with ordinary, small and saturating
values, the family's weight regimes (Family.weight_regimes: RG-LRU's decays near 1) and over
thousands of steps (harness.conformance.rounding)."""

from __future__ import annotations

import pytest

from harness.conformance.grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.conformance.values import finite_and_close, precise_as_the_reference

SUITE = SuiteInfo(order=70)

def large_grid(fam):
    return [BASE, BASE.with_(num_layers=2, bidirectional=True, with_hx=True),
            BASE.with_(lengths=(5, 2, 4)), BASE.with_(dtype="float64", num_layers=2)]


def long_grid(fam):
    long = BASE.with_(seq_len=1000, batch=2)
    chosen = [long, long.with_(num_layers=2, bidirectional=True),
              long.with_(lengths=(1000, 613), with_hx=True)]
    if fam.recurrence != "matrix":
        # Where parallel scans live (a recurrence linear in h, or diagonal): past the 4,096
        # steps a scan kernel's block, or its grid, holds (the carry from block to block)
        chosen.append(BASE.with_(seq_len=4500, batch=2, with_hx=True))
    return chosen


@cases(large_grid)
def test_large_inputs(subject, check):
    finite_and_close(subject, check, subject.inputs(scale=100.0), "large")


@cases(long_grid)
def test_long_sequence(subject, check):
    finite_and_close(subject, check, None, "long")
    if subject.case.seq_len > 4096:  # a scan's blocks: where its models' slow memory lives too
        for transform in subject.family_def.weight_regimes.values():
            finite_and_close(subject, check, subject.inputs(), "long",
                             weights=transform(subject.weights()))


# label -> (weights x, inputs x): values as drawn; small pre-activations, where a formula that
# cancels (1 - 2 / (1 + e^2x) for tanh) loses its relative precision; saturated gates.
STRESSES = {"as drawn": (1.0, 1.0), "small values": (1e-3, 1e-2), "saturated gates": (8.0, 3.0)}


def precision_grid(fam):
    return [BASE.with_(with_hx=True), BASE.with_(num_layers=2, bidirectional=True),
            BASE.with_(lengths=(5, 2, 4), batch_first=True)]


@cases(precision_grid)
def test_precision_like_the_reference(subject, check):
    """Ordinary, small and saturating values: the implementation's float32 error against the
    float64 answer is at most K times the float32 reference's on the same case."""
    for label, (weights, inputs) in STRESSES.items():
        precise_as_the_reference(subject, check, label, weight_scale=weights,
                                 input_scale=inputs)
    for regime in subject.family_def.weight_regimes:  # weights where the family's models live
        precise_as_the_reference(subject, check, regime, regime=regime)


@pytest.mark.time_limit(3)
@cases(lambda fam: [BASE.with_(seq_len=2000, batch=2, hidden_size=8, with_hx=True)])
def test_precision_over_long_sequences(subject, check):
    """2000 steps: errors that grow with the sequence (a log-space scan over the whole of it; a
    decay off by a relative 1e-4, which the family's weight regimes show) stay within K times
    the float32 reference's."""
    precise_as_the_reference(subject, check, "2000 steps")
    for regime in subject.family_def.weight_regimes:
        precise_as_the_reference(subject, check, f"2000 steps, {regime}", regime=regime)
