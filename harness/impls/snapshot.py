"""Whether weights changed since something was derived from them, judged by their bytes.

An implementation that derives something costly from its weights (an exported ONNX model, a
packed copy) must notice when they change. A version counter does not see every change: a write
through ``.data``, through numpy or through another view leaves it where it was, and a data
pointer says nothing about contents. A byte copy taken when deriving, compared with memcmp on
every call (~0.1 ms for 4 MB), does. The price is one copy of the weights.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


@functools.cache
def libc_memcmp():
    """The C library's memcmp through ctypes (loaded once), or None where it cannot be."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None
    memcmp = library.memcmp
    memcmp.restype = ctypes.c_int
    memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


def same_bytes(a: Tensor, b: Tensor) -> bool:
    """Whether a and b hold the same bytes: same shape, dtype and device, bitwise equal (so -0.0
    differs from 0.0, and a NaN equals the same NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    memcmp = libc_memcmp()
    if memcmp is not None and a.device.type == "cpu" and a.is_contiguous() and b.is_contiguous():
        return memcmp(a.data_ptr(), b.data_ptr(), a.numel() * a.element_size()) == 0
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))


@dataclass(frozen=True)
class Snapshot:
    """A byte copy of some tensors, taken when something was derived from them."""

    copies: tuple[Tensor, ...]

    @classmethod
    def take(cls, tensors: Iterable[Tensor]) -> Snapshot:
        return cls(tuple(t.detach().clone(memory_format=torch.contiguous_format)
                         for t in tensors))

    def matches(self, tensors: Iterable[Tensor]) -> bool:
        """Whether ``tensors`` still hold the bytes of the snapshot, one for one."""
        tensors = tuple(tensors)
        return len(tensors) == len(self.copies) and all(
            same_bytes(t.detach(), c) for t, c in zip(tensors, self.copies))
