"""harness/impls/snapshot.py: byte-level change detection of weights (what onnxruntime-* re-export
on), including the writes a version counter does not see."""

from __future__ import annotations

import torch

from harness.impls.snapshot import Snapshot, same_bytes


def test_same_bytes_is_bitwise():
    a = torch.tensor([0.0, float("nan"), 1.0])
    assert same_bytes(a, a.clone())  # the same NaN bits are the same bytes
    assert not same_bytes(a, torch.tensor([-0.0, float("nan"), 1.0]))  # -0.0 == 0.0, not bytes
    assert not same_bytes(a, a.double())
    assert not same_bytes(a, a[:2])


def test_same_bytes_compares_non_contiguous_tensors_by_value_layout():
    a = torch.arange(12.0).reshape(3, 4)
    assert same_bytes(a.t(), a.t().contiguous())
    assert not same_bytes(a.t(), a.t().contiguous() + 1)


def test_snapshot_sees_a_write_through_data_that_the_version_counter_does_not():
    weight = torch.nn.Parameter(torch.randn(4, 3))
    snapshot, version = Snapshot.take([weight]), weight._version
    assert snapshot.matches([weight])
    weight.data[0, 0] += 1
    assert weight._version == version  # invisible to the counter...
    assert not snapshot.matches([weight])  # ...not to the bytes
    assert not snapshot.matches([weight, weight])  # a different set of tensors
