"""The course's padding/packing recipe as registry entries.

Each class is torch's module with one addition: forward takes padded input plus ``lengths`` and
runs pack_padded_sequence(enforce_sorted=False) -> module -> pad_packed_sequence. This is how most
users feed variable-length batches, and its cost against plain padded input is what the varlen
latency grid measures.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class PackingMixin:
    """forward(padded, hx=None, *, lengths=None): pack -> torch's forward -> unpack.

    lengths=None means every sequence is full length; the input is packed either way, so the
    packing path is what runs. The output is padded back to the input's length with zeros.
    Two guards that the bare recipe lacks, both found by the suites:
    - an empty batch (which pack_padded_sequence cannot pack) runs unpacked;
    - the padded call is validated as torch validates padded input. torch's LSTM (2.13) skips
      that validation for a PackedSequence: with full-length sequences it silently accepts a
      wrong input size, extra hx rows or a larger hx batch, and returns an answer.
    """

    batch_first: bool

    def forward(self, input: Tensor, hx=None, *, lengths: Tensor | None = None):
        time_dim = 1 if self.batch_first else 0
        if input.dim() != 3:
            raise ValueError(
                f"{type(self).__name__} expects padded 3-D input, got {input.dim()}D instead"
            )
        batch = input.size(1 - time_dim)
        if batch == 0:
            return super().forward(input, hx)  # type: ignore[misc]
        # torch's own checks of the padded call (input size; hx rank, rows, batch, features),
        # which its LSTM skips for a PackedSequence.
        if hx is None:
            self.check_input(input, None)  # type: ignore[attr-defined]
        else:
            self.check_forward_args(input, hx, None)  # type: ignore[attr-defined]
        if lengths is None:
            lengths = torch.full((batch,), input.size(time_dim), dtype=torch.int64)
        packed = pack_padded_sequence(
            input, torch.as_tensor(lengths).cpu(), batch_first=self.batch_first,
            enforce_sorted=False,
        )
        output, state = super().forward(packed, hx)  # type: ignore[misc]
        output, _ = pad_packed_sequence(
            output, batch_first=self.batch_first, total_length=input.size(time_dim)
        )
        return output, state


class PackedRNN(PackingMixin, nn.RNN):
    """nn.RNN behind the course's pack -> RNN -> unpack recipe."""


class PackedLSTM(PackingMixin, nn.LSTM):
    """nn.LSTM behind the course's pack -> LSTM -> unpack recipe."""


class PackedGRU(PackingMixin, nn.GRU):
    """nn.GRU behind the course's pack -> GRU -> unpack recipe."""
