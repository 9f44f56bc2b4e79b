"""What torch.nn.RNN/LSTM/GRU do with their input before any maths, done the same way for the
from-scratch layers: padded, batch-first, unbatched or packed input to one time-major layout,
lengths checked, hx validated with torch's own error types, and a packed output rebuilt in the
caller's batch order. The errors suite holds implementations to exactly these errors."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

State = tuple[Tensor, ...]  # (h,) or (h, c); each (B, features)


def time_major(
    input: Tensor | PackedSequence, lengths: Tensor | None, *, mode: str, batch_first: bool,
    input_size: int,
) -> tuple[Tensor, Tensor | None, bool]:
    """(x (T, B, in), lengths (B,) on the CPU or None, batched) from any input torch takes."""
    if isinstance(input, PackedSequence):
        x, lengths = pad_packed_sequence(input)  # (T, B, in), lengths in the caller's order
        batched = True
    else:
        if input.dim() not in (2, 3):
            raise ValueError(f"{mode}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and batch_first:
            x = x.transpose(0, 1)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
            if not batched or lengths.shape != (x.shape[1],):
                raise ValueError(
                    f"lengths must be a (batch,) tensor for 3-D input, got shape "
                    f"{tuple(lengths.shape)} for input {tuple(input.shape)}"
                )
    if x.size(-1) != input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {input_size}, "
            f"got {x.size(-1)}"
        )
    if x.shape[0] == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    return x, lengths, batched


def validated_state(state: State, *, rows: int, batch: int, sizes: tuple[int, ...],
                    batched: bool) -> State:
    """hx as (L*D, B, features) tensors, refused as torch refuses it: wrong rank for the input,
    or any dimension off."""
    if not batched:
        if any(s.dim() != 2 for s in state):
            dims = ", ".join(f"{s.dim()}-D" for s in state)
            raise RuntimeError(
                f"For unbatched 2-D input, hx should also be 2-D but got ({dims}) tensor"
            )
        state = tuple(s.unsqueeze(1) for s in state)
    elif any(s.dim() != 3 for s in state):
        dims = ", ".join(f"{s.dim()}-D" for s in state)
        raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got ({dims})")
    for i, (s, size) in enumerate(zip(state, sizes)):
        expected = (rows, batch, size)
        if tuple(s.shape) != expected:
            raise RuntimeError(f"Expected hidden[{i}] size {expected}, got {list(s.shape)}")
    return state


def repack(output: Tensor, lengths: Tensor, *, like: PackedSequence) -> PackedSequence:
    """Pack output (T, B, F) with the same batch order and indices as the input ``like``."""
    order = like.sorted_indices
    if order is not None:
        output = output.index_select(1, order)
        lengths = lengths.index_select(0, order.cpu())
    packed = pack_padded_sequence(output, lengths.cpu(), enforce_sorted=True)
    return PackedSequence(
        packed.data, packed.batch_sizes, like.sorted_indices, like.unsorted_indices
    )
