"""A deterministic split of a run's work over N machines (``--shard K/N``).

A CI matrix of N runners each runs one shard; the N results directories together hold exactly
the records of one run (the report and ``history add`` merge directories). Work is assigned by
a stable hash (CRC-32) of what identifies it, never by position, so a shard holds the same
checks on every machine and the split does not move when one entry is added: a check by its
record key, a timing by (implementation, shape, phase) — both worker processes of a timing stay
on one machine, since its interval compares them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"--shard {self.index}/{self.count} is invalid; expected K/N with "
                             "1 <= K <= N, e.g. 1/2")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'K/N'; ValueError naming the bad value otherwise."""
        index, slash, count = str(text).partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard {text!r} is invalid; expected K/N with 1 <= K <= N, "
                             "e.g. 1/2")
        return cls(int(index), int(count))

    def holds(self, *key: object) -> bool:
        """Whether the work identified by ``key`` is this shard's."""
        digest = zlib.crc32("\x1f".join(str(part) for part in key).encode())
        return digest % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_option(text: str) -> Shard:
    """The ``type`` of a --shard option: argparse and pytest report its ValueError as a usage
    error naming the value."""
    import argparse

    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
