"""The generic signatures of directions and layers: the reverse direction's output, state and
weights, h_n's rows, how a layer's directions are joined (harness.diagnosis.generic gathers
them with the others)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness.core.case import Case
from harness.core.contract import Inputs, Outputs
from harness.diagnosis.signatures import (
    Signature,
    hx_parts,
    replace_hx,
    reversed_in_time,
    with_rows,
)


def reverse_half(o: Outputs, case: Case) -> Outputs:
    """The reverse direction's half of the output put back in processing order."""
    half = o.output.shape[-1] // 2
    back = reversed_in_time(o.output[..., half:], case)
    return Outputs(torch.cat([o.output[..., :half], back], -1), o.h_n, o.c_n)


def direction_major(rows: Tensor) -> Tensor:
    return torch.cat((rows[0::2], rows[1::2]))


def directions_swapped(rows: Tensor) -> Tensor:
    return torch.stack((rows[1::2], rows[0::2]), 1).flatten(0, 1)


def read_direction_major(case: Case) -> Callable[[Tensor], Tensor]:
    """hx's rows as an implementation reading them direction-major sees them: slot (l, d)
    gets row d * L + l (the inverse of direction_major)."""
    shape = (case.num_directions, case.num_layers)
    return lambda rows: rows.unflatten(0, shape).transpose(0, 1).flatten(0, 1)


def forward_weights_reversed(weights: dict[str, Tensor], case: Case) -> dict[str, Tensor]:
    """The reverse direction's parameters replaced by the forward direction's."""
    return {name: weights[name.removesuffix("_reverse")] if name.endswith("_reverse")
            else value for name, value in weights.items()}


def last_layer_everywhere(case: Case) -> Callable[[Tensor], Tensor]:
    d = case.num_directions
    return lambda rows: rows[-d:].repeat(case.num_layers, *([1] * (rows.dim() - 1)))


def reverse_rows_zeroed(inputs: Inputs, case: Case) -> Inputs:
    """hx with every reverse direction's rows (slot l * 2 + 1) zero."""
    forward_only = torch.tensor([d == 0 for _ in range(case.num_layers) for d in range(2)])
    return replace_hx(inputs, tuple(part * forward_only.view(-1, *[1] * (part.dim() - 1))
                                    .to(part) for part in hx_parts(inputs)))


def halves_swapped(x: Tensor) -> Tensor:
    """The two halves of x's last dimension swapped: [reverse, forward] for [forward, reverse]."""
    half = x.shape[-1] // 2
    return torch.cat([x[..., half:], x[..., :half]], -1)


def input_columns_swapped(weights: dict[str, Tensor], case: Case) -> dict[str, Tensor]:
    """weight_ih of every layer after the first with the halves of its columns swapped: the
    weights seeing [reverse, forward] as the reference sees [forward, reverse]."""
    return {name: halves_swapped(value) if name.startswith("weight_ih_l")
            and not name.startswith("weight_ih_l0") else value for name, value in weights.items()}


def layout_signatures() -> list[Signature]:
    return [
        Signature("reverse-from-zeros", "the reverse direction started from zeros (its rows of "
                  "h_0 ignored)", "hx holds a row for every layer and direction: slot l * 2 + 1 "
                  "(the reverse direction) starts from hx[l * 2 + 1]",
                  inputs=reverse_rows_zeroed,
                  applies=lambda case: case.with_hx and case.bidirectional),
        Signature("directions-concatenated-reversed", "each layer's output concatenated as "
                  "[reverse, forward]", "torch concatenates the forward direction's output "
                  "first: torch.cat([forward, reverse], dim=2), between layers too",
                  weights=input_columns_swapped,
                  outputs=lambda o, c, i: Outputs(halves_swapped(o.output), o.h_n, o.c_n),
                  applies=lambda case: case.bidirectional),
        Signature("reverse-output-not-realigned",
                  "the reverse direction's output left in processing order",
                  "the reverse direction runs from the last step: flip its outputs back to "
                  "time order before concatenating them with the forward direction's",
                  outputs=lambda o, c, i: reverse_half(o, c),
                  applies=lambda case: case.bidirectional and case.num_layers == 1
                  and case.seq_len > 1),
        Signature("h-n-directions-swapped", "the two directions swapped in h_n",
                  "h_n rows go (layer 0 forward, layer 0 reverse, layer 1 forward, ...)",
                  outputs=lambda o, c, i: with_rows(o, directions_swapped),
                  applies=lambda case: case.bidirectional),
        Signature("h-n-direction-major", "h_n's rows direction-major (every forward layer, "
                  "then every reverse one)",
                  "torch's h_n is layer-major: (layer 0 forward, layer 0 reverse, layer 1 "
                  "forward, ...)",
                  outputs=lambda o, c, i: with_rows(o, direction_major),
                  applies=lambda case: case.bidirectional and case.num_layers > 1),
        Signature("hx-read-direction-major", "h_0's rows read direction-major (every forward "
                  "layer, then every reverse one)", "torch's hx is layer-major, as h_n is: "
                  "(layer 0 forward, layer 0 reverse, layer 1 forward, ...)",
                  inputs=lambda i, c: replace_hx(i, tuple(
                      read_direction_major(c)(part) for part in hx_parts(i))),
                  applies=lambda case: case.with_hx and case.bidirectional
                  and case.num_layers > 1),
        Signature("reverse-with-forward-weights", "the reverse direction computed with the "
                  "forward direction's weights", "the reverse direction has its own "
                  "parameters: weight_ih_l{k}_reverse, weight_hh_l{k}_reverse and their "
                  "biases", weights=forward_weights_reversed,
                  applies=lambda case: case.bidirectional),
        Signature("h-n-last-layer-only", "every layer's h_n taken from the last layer",
                  "h_n holds each layer's own final state, not the last layer's repeated",
                  outputs=lambda o, c, i: with_rows(o, last_layer_everywhere(c)),
                  applies=lambda case: case.num_layers > 1),
    ]
