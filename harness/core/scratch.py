"""Scratch memory poisoned during a call: torch.empty, empty_like and Tensor.new_empty hand out
NaN-filled memory (fla's conftest does the same), so an op that reads memory it never wrote
returns NaN there. The poisoning suite checks with it and the diagnosis' behaviours name it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor


@contextlib.contextmanager
def poisoned_scratch(fill: float = float("nan")) -> Iterator[None]:
    """torch.empty, empty_like and Tensor.new_empty hand out memory filled with ``fill``
    (floating point dtypes; NaN by default): an op that reads memory it never wrote returns NaN,
    or, with two fills, two answers."""
    originals = torch.empty, torch.empty_like, torch.Tensor.new_empty

    def poison(tensor: Tensor) -> Tensor:
        if tensor.is_floating_point() or tensor.is_complex():
            with torch.no_grad():
                tensor.fill_(fill)
        return tensor

    def empty(*args, **kwargs):
        return poison(originals[0](*args, **kwargs))

    def empty_like(*args, **kwargs):
        return poison(originals[1](*args, **kwargs))

    def new_empty(self, *args, **kwargs):
        return poison(originals[2](self, *args, **kwargs))

    torch.empty, torch.empty_like, torch.Tensor.new_empty = empty, empty_like, new_empty
    try:
        yield
    finally:
        torch.empty, torch.empty_like, torch.Tensor.new_empty = originals
