"""A reference's twin, computed once per process for the same reference, weights and inputs.

A family's implementations are checked on the same cases against the same reference with the
same weights and inputs, so each would compute the same twin (the reference in the other
precision, at the case's point and at NEARBY nudged ones: harness.core.subject). At T=2000 a
loop reference's seven runs take over a second, for every implementation of the family that
the worker checks. ``shared`` keeps the last few, keyed by what the twin depends on, compared
by content: the reference (its family's name and builder), the case, its mode and a digest of
the weights and inputs.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from harness.core.contract import Twin

KEPT = 32  # twins kept per process (each holds a few small output tensors)


def digest(named: Iterable[tuple[str, Tensor | None]]) -> bytes:
    """A content digest of named tensors: names, dtypes, shapes and bytes (None as absent)."""
    hasher = hashlib.blake2b(digest_size=20)
    for name, tensor in named:
        hasher.update(name.encode())
        if tensor is None:
            hasher.update(b"none")
            continue
        tensor = tensor.detach().cpu().contiguous()
        hasher.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        hasher.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return hasher.digest()


@dataclass(frozen=True, eq=False)
class TwinKey:
    """What a twin depends on (``reference``: the family's name and its builder's qualified
    name; ``case``: the case, hashable; ``digest``: of the weights and inputs) and how to compute
    it (``compute``, not compared: any subject's computation of an equal key gives the same)."""

    reference: tuple[str, ...]
    case: object
    training: bool
    digest: bytes
    compute: Callable[[], Twin] = field(repr=False)

    @property
    def identity(self) -> tuple:
        return (self.reference, self.case, self.training, self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TwinKey) and self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)


@functools.lru_cache(maxsize=KEPT)
def shared(key: TwinKey) -> Twin:
    """The twin for ``key``, computed by the first subject that asks for it in this process."""
    return key.compute()


def builder_name(build: Callable) -> str:
    return f"{getattr(build, '__module__', '')}.{getattr(build, '__qualname__', repr(build))}"
