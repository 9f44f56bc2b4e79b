"""A reference's twin, and calls several checks make alike, computed once per process.

A family's implementations are checked on the same cases against the same reference with the
same weights and inputs, so each would compute the same twin (the reference in the other
precision, at the case's point and at NEARBY nudged ones, below). At T=2000 a
loop reference's seven runs take over a second, for every implementation of the family that
the worker checks. ``shared`` keeps the last few, keyed by what the twin depends on, compared
by content: the reference (its family's name and builder), the case, its mode and a digest of
the weights and inputs. What else a check asks of the reference alike for every implementation
(torch's dropout statistics over 64 training calls) is kept the same way, under a reference key
of its own. So are the calls a case's checks share (``shared_call``): one fresh call of an
implementation on the case's inputs, which its shapes, its h_n rows and its values are read from,
and the reference's on the same inputs, the same for every implementation of the family.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from harness.core.contract import Outputs, Twin

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


def copied(outputs: Outputs) -> Outputs:
    """The outputs as tensors of their own, cut from any graph: what an implementation returns
    may be a view of a buffer its next call writes."""
    c_n = None if outputs.c_n is None else outputs.c_n.detach().clone()
    return Outputs(outputs.output.detach().clone(), outputs.h_n.detach().clone(), c_n,
                   outputs.twin)


@dataclass(frozen=True, eq=False)
class SharedCall:
    """One call that several checks of a case ask for alike: what it runs (``what``: the
    implementation's name or the family's reference; ``owner``: the id of the ImplSpec, which
    ``compute`` holds, so the id is its own while the call is kept), the case, and how to
    compute it (not compared)."""

    what: tuple[str, ...]
    owner: int
    case: object  # a Case or an OpCase, hashable
    compute: Callable[[], Outputs] = field(repr=False)

    @property
    def identity(self) -> tuple:
        return (self.what, self.owner, self.case)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedCall) and self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)


# Shared calls kept per process: a suite's checks run a case's after one another and a family's
# implementations one after another; each keeps a few small output tensors.
CALLS_KEPT = 1024


def shared_call(key: SharedCall) -> Outputs:
    """The outputs for ``key``, computed by the first check that asks for them in this
    process (an exception is not kept: the next check computes it again). In training with
    dropout every call draws anew: nothing is shared."""
    if getattr(key.case, "training", False) and getattr(key.case, "dropout", 0) > 0:
        return key.compute()
    return kept_call(key)


@functools.lru_cache(maxsize=CALLS_KEPT)
def kept_call(key: SharedCall) -> Outputs:
    return key.compute()


NEARBY = 3  # further samples of a case's rounding, each at a nudged point
NUDGE = 2.0 ** -20  # relative size of the nudge: a few float32 units in the last place


def nudged(tensor: Tensor, generator: torch.Generator) -> Tensor:
    """``tensor`` times (1 + NUDGE u), u uniform in [-1, 1): the same problem, rounded anew
    (zeros, such as padded steps, stay zeros)."""
    noise = torch.rand(tensor.shape, generator=generator, dtype=torch.float64) * 2 - 1
    return (tensor.detach().double() * (1 + NUDGE * noise)).to(tensor.dtype)
