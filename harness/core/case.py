"""What runs: the identity of one configuration an implementation is checked or timed on.

A Case is the grouping key of every record: suites parametrize over cases, records carry them,
reports group by them. It is frozen, hashable and validated on construction, so a bad shape is
refused with a message naming the bad value before any tensor is allocated.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from harness.core.values import integer_at_least, positive_number

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Case:
    """One configuration: torch constructor arguments plus the input that is fed.

    seq_len, batch, input_size: the padded input is (seq_len, batch, input_size), or batch-first.
    batch=None means unbatched input of shape (seq_len, input_size).
    hidden_size, num_layers, bidirectional, batch_first, bias, proj_size, dropout: as torch's.
    lengths: per-sequence valid lengths (variable-length batch, fed packed); None = all seq_len.
        A length of 0 (an empty sequence in a batch) can only be fed as padded input plus
        ``lengths=`` (PackedSequence cannot hold it).
    with_hx: pass a random initial state instead of None.
    training: module mode (dropout only acts in training).
    dtype, device: where and in which precision the implementation runs.
    radius: rescale every recurrent gate block of the reference weights to this spectral radius
        (None keeps torch's default initialisation).
    seed: varies the data of an otherwise identical case.
    """

    seq_len: int
    batch: int | None
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    proj_size: int = 0
    dropout: float = 0.0
    lengths: tuple[int, ...] | None = None
    with_hx: bool = False
    training: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    radius: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        integer_at_least("seq_len", self.seq_len)
        if self.batch is not None:
            integer_at_least("batch", self.batch, minimum=0)
        integer_at_least("input_size", self.input_size)
        integer_at_least("hidden_size", self.hidden_size)
        integer_at_least("num_layers", self.num_layers)
        integer_at_least("proj_size", self.proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size={self.proj_size} is invalid; expected 0 or less than "
                f"hidden_size={self.hidden_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} is invalid; expected 0 <= dropout < 1")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is invalid; valid: {', '.join(DTYPES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is invalid; valid: {', '.join(DEVICES)}")
        if self.lengths is not None:
            self._check_lengths()
        if self.radius is not None:
            positive_number("radius", self.radius)

    def _check_lengths(self) -> None:
        lengths = self.lengths
        if not isinstance(lengths, tuple):
            raise ValueError(f"lengths={lengths!r} is invalid; expected a tuple of integers")
        if self.batch is None:
            raise ValueError("lengths are invalid for unbatched input (batch=None)")
        if len(lengths) != self.batch:
            raise ValueError(
                f"lengths={lengths!r} has {len(lengths)} entries; expected batch={self.batch}"
            )
        for n in lengths:
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= self.seq_len:
                raise ValueError(
                    f"length {n!r} in lengths={lengths!r} is invalid; "
                    f"expected 0 <= length <= seq_len={self.seq_len}"
                )

    # Derived figures -------------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        """Features of h (and of each direction's output): proj_size when projecting."""
        return self.proj_size or self.hidden_size

    @property
    def unbatched(self) -> bool:
        return self.batch is None

    @property
    def varlen(self) -> bool:
        """True when some sequence is shorter than seq_len."""
        return self.lengths is not None and min(self.lengths, default=self.seq_len) < self.seq_len

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def rows(self) -> int:
        """Sequences fed: the batch size, 1 for unbatched input, 0 for an empty batch."""
        return 1 if self.batch is None else self.batch

    @property
    def effective_lengths(self) -> tuple[int, ...]:
        """Valid length of each sequence (seq_len for all when no lengths were given); empty
        for a batch of 0."""
        if self.lengths is not None:
            return self.lengths
        return (self.seq_len,) * self.rows

    @property
    def data_seed(self) -> int:
        """Seed of this case's weights and data: stable across processes and machines."""
        return zlib.crc32(self.id.encode()) ^ self.seed

    @property
    def id(self) -> str:
        """A compact, unique, pytest-id-safe name, e.g. ``T5-B3-I3-H7-L2-bi-len5.3.1-hx``."""
        batch = "u" if self.batch is None else str(self.batch)
        parts = [f"T{self.seq_len}", f"B{batch}", f"I{self.input_size}", f"H{self.hidden_size}"]
        if self.proj_size:
            parts.append(f"P{self.proj_size}")
        if self.num_layers != 1:
            parts.append(f"L{self.num_layers}")
        flags = (
            (self.bidirectional, "bi"),
            (self.batch_first, "bf"),
            (not self.bias, "nobias"),
        )
        parts += [label for on, label in flags if on]
        if self.lengths is not None:
            if len(self.lengths) <= 8:
                parts.append("len" + ".".join(map(str, self.lengths)))
            else:
                digest = zlib.crc32(repr(self.lengths).encode()) & 0xFFFF
                parts.append(f"len{min(self.lengths)}to{max(self.lengths)}h{digest:04x}")
        if self.with_hx:
            parts.append("hx")
        if self.dropout:
            parts.append(f"drop{self.dropout:g}")
        if self.training:
            parts.append("train")
        if self.dtype != "float32":
            parts.append({"float64": "f64", "float16": "f16", "bfloat16": "bf16"}[self.dtype])
        if self.device != "cpu":
            parts.append(self.device)
        if self.radius is not None:
            parts.append(f"rho{self.radius:g}")
        if self.seed:
            parts.append(f"s{self.seed}")
        return "-".join(parts)

    def __str__(self) -> str:
        return self.id

    def with_(self, **changes: Any) -> Case:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def torch_kwargs(self) -> dict[str, Any]:
        """The constructor arguments torch.nn.RNN / LSTM / GRU share."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
        }

    # Serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.lengths is not None:
            data["lengths"] = list(self.lengths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown case fields {unknown}; valid: {sorted(known)}")
        values = dict(data)
        if values.get("lengths") is not None:
            values["lengths"] = tuple(values["lengths"])
        return cls(**values)
