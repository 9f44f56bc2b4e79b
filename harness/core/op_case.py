"""What an op runs on: the identity of one configuration of a matrix-state op.

The op counterpart of harness.core.case.Case, and the grouping key of its records: frozen,
hashable, validated on construction (a bad shape is refused naming the bad value), and written
to records with ``kind: "op"`` so a reader knows which of the two it holds (``case_from_dict``).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import torch

from harness.core.case import DEVICES, DTYPES, Case
from harness.core.values import integer_at_least


@dataclass(frozen=True)
class OpCase:
    """One configuration of an op call.

    batch, seq_len, heads, key_dim, value_dim: q and k are (batch, seq_len, heads, key_dim), v
        (batch, seq_len, heads, value_dim).
    lengths: a variable-length batch: the sequences' lengths, concatenated along T with batch 1
        and given as ``cu_seqlens`` (empty sequences allowed); None: batch sequences of seq_len.
    with_state: pass a random initial state (one row per sequence).
    chunk_size: the op's ``chunk_size`` keyword (None: the op's default).
    scale: the op's ``scale`` keyword (None: not passed, the default K^-1/2; Mamba-2's SSD
        mapped onto scalar_decay takes 1).
    final_state: ``output_final_state`` as the call passes it where the op claims a final
        state (False: as a model calls it in training; the op's path without state output).
    stress: how the gates are drawn (the family's gate stresses; "" the ordinary draw).
    dtype, device: where and in which precision the op runs.
    seed: varies the data of an otherwise identical case.
    """

    seq_len: int
    batch: int = 1
    heads: int = 1
    key_dim: int = 16
    value_dim: int = 16
    lengths: tuple[int, ...] | None = None
    with_state: bool = False
    chunk_size: int | None = None
    scale: float | None = None
    final_state: bool = True
    stress: str = ""
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0

    kind: ClassVar[str] = "op"

    def __post_init__(self) -> None:
        integer_at_least("seq_len", self.seq_len, minimum=0)
        for name in ("batch", "heads", "key_dim", "value_dim"):
            integer_at_least(name, getattr(self, name))
        if self.chunk_size is not None:
            integer_at_least("chunk_size", self.chunk_size)
        if not isinstance(self.final_state, bool):
            raise ValueError(f"final_state={self.final_state!r} is invalid; expected True or "
                             "False")
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(
                self.scale, (int, float)) or not 0 < self.scale < float("inf")):
            raise ValueError(f"scale={self.scale!r} is invalid; expected a positive number or "
                             "None (the op's default)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is invalid; valid: {', '.join(DTYPES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is invalid; valid: {', '.join(DEVICES)}")
        if self.lengths is not None:
            if not isinstance(self.lengths, tuple) or not self.lengths:
                raise ValueError(f"lengths={self.lengths!r} is invalid; expected a non-empty "
                                 "tuple of integers")
            if self.batch != 1:
                raise ValueError(f"lengths with batch={self.batch} is invalid; variable lengths "
                                 "are one concatenated batch (batch=1)")
            if any(not isinstance(n, int) or n < 0 for n in self.lengths):
                raise ValueError(f"lengths={self.lengths!r} is invalid; expected integers >= 0")
            if sum(self.lengths) != self.seq_len:
                raise ValueError(f"lengths={self.lengths!r} sum to {sum(self.lengths)}; "
                                 f"expected seq_len={self.seq_len}")

    @property
    def sequences(self) -> int:
        """Sequences in the call: the batch, or the number of variable lengths."""
        return self.batch if self.lengths is None else len(self.lengths)

    @property
    def varlen(self) -> bool:
        """A variable-length batch (its packed-versus-padded comparison is the modules')."""
        return False

    @property
    def effective_lengths(self) -> tuple[int, ...]:
        return self.lengths if self.lengths is not None else (self.seq_len,) * self.batch

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def cu_seqlens(self) -> torch.Tensor | None:
        if self.lengths is None:
            return None
        return torch.tensor([0, *torch.tensor(self.lengths).cumsum(0).tolist()],
                            dtype=torch.int32)

    @property
    def data_seed(self) -> int:
        return zlib.crc32(self.id.encode()) ^ self.seed

    @property
    def id(self) -> str:
        """e.g. ``T63-B2-H4-K16-V16-len0.15.48-state-C16-scale1-f64``."""
        parts = [f"T{self.seq_len}", f"B{self.batch}", f"H{self.heads}", f"K{self.key_dim}",
                 f"V{self.value_dim}"]
        if self.lengths is not None:
            if len(self.lengths) <= 8:
                parts.append("len" + ".".join(map(str, self.lengths)))
            else:
                digest = zlib.crc32(repr(self.lengths).encode()) & 0xFFFF
                parts.append(f"len{len(self.lengths)}x{digest:04x}")
        if self.with_state:
            parts.append("state")
        if self.chunk_size is not None:
            parts.append(f"C{self.chunk_size}")
        if self.scale is not None:
            parts.append(f"scale{self.scale:g}")
        if not self.final_state:
            parts.append("nofinal")
        if self.stress:
            parts.append(self.stress)
        if self.dtype != "float32":
            parts.append({"float64": "f64", "float16": "f16", "bfloat16": "bf16"}[self.dtype])
        if self.device != "cpu":
            parts.append(self.device)
        if self.seed:
            parts.append(f"s{self.seed}")
        return "-".join(parts)

    def __str__(self) -> str:
        return self.id

    def with_(self, **changes: Any) -> OpCase:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind, **asdict(self)}
        if self.lengths is not None:
            data["lengths"] = list(self.lengths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpCase:
        values = {k: v for k, v in data.items() if k != "kind"}
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"unknown op case fields {unknown}; valid: {sorted(known)}")
        if values.get("lengths") is not None:
            values["lengths"] = tuple(values["lengths"])
        return cls(**values)


AnyCase = Case | OpCase


# fields only ops' cases have
OP_ONLY = frozenset({"heads", "key_dim", "value_dim", "chunk_size", "scale", "final_state"})


def case_from_dict(data: dict[str, Any]) -> AnyCase:
    """A record's (or a grid file's) case, whichever kind it is: ``kind: "op"``, or, with no
    kind given, a field only an op's case has (heads, key_dim, ...)."""
    kind = data.get("kind")
    if kind == "op" or (kind is None and OP_ONLY & set(data)):
        return OpCase.from_dict(data)
    return Case.from_dict(data)
