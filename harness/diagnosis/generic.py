"""The generic signatures every module family gets, for its layout: the initial state, time
order, directions and layers, padding, chunked scans, biases, weight matrices, gate orders and
precision (harness.diagnosis.signatures says what a signature is)."""

from __future__ import annotations

import importlib

import torch
from torch import Tensor

from harness.core.case import Case
from harness.core.contract import Inputs, Outputs
from harness.diagnosis.directions import layout_signatures
from harness.diagnosis.signatures import (
    Runner,
    Signature,
    from_time_major,
    hx_parts,
    replace_hx,
    reversed_in_time,
    to_time_major,
    valid_mask,
    with_rows,
)
from harness.diagnosis.weights import (
    bias_signatures,
    gate_order_signatures,
    matrix_signatures,
    precision_signatures,
)


def first_row_everywhere(inputs: Inputs, case: Case) -> Inputs:
    """Every layer and direction started from hx's first row (layer 0, forward)."""
    return replace_hx(inputs, tuple(part[:1].expand_as(part) for part in hx_parts(inputs)))


def state_signatures(has_cell: bool) -> list[Signature]:
    found = [Signature(
        "h0-ignored", "the initial state ignored (every sequence starts from zeros)",
        "forward receives hx but starts from zeros: check that hx reaches the first step",
        inputs=lambda inputs, case: replace_hx(inputs, None)),
        Signature("h0-first-row-everywhere", "every layer and direction started from h_0's "
                  "first row", "hx holds one row per layer and direction (layer-major): "
                  "slot l * D + d starts from hx[l * D + d]", inputs=first_row_everywhere,
                  applies=lambda case: case.with_hx
                  and case.num_layers * case.num_directions > 1)]
    if has_cell:
        found += [
            Signature("c0-ignored", "c_0 ignored (the cell state starts from zeros)",
                      "hx is (h_0, c_0): check that c_0 reaches the first step",
                      inputs=lambda i, c: replace_hx(i, (hx_parts(i)[0],
                                                        torch.zeros_like(hx_parts(i)[1])))),
            Signature("h0-c0-swapped", "h_0 and c_0 swapped",
                      "torch's hx is (h_0, c_0) in that order, and so is (h_n, c_n)",
                      inputs=lambda i, c: replace_hx(i, hx_parts(i)[::-1]),
                      applies=lambda case: case.h_out == case.hidden_size),
            Signature("h-n-c-n-swapped", "(c_n, h_n) returned instead of (h_n, c_n)",
                      "torch returns output, (h_n, c_n): h_n first",
                      outputs=lambda o, c, i: Outputs(o.output, o.c_n, o.h_n),
                      applies=lambda case: case.h_out == case.hidden_size),
        ]
    return found


def time_signatures() -> list[Signature]:
    return [
        Signature("runs-backwards", "the sequence processed from its last step to its first",
                  "a forward layer reads x_0 first: check the loop's direction (and flips "
                  "meant for the reverse direction only)",
                  inputs=lambda i, c: Inputs(reversed_in_time(i.x, c), i.lengths, i.hx),
                  outputs=lambda o, c, i: Outputs(reversed_in_time(o.output, c), o.h_n, o.c_n),
                  applies=lambda case: not case.bidirectional and case.seq_len > 1),
        Signature("output-time-reversed", "the output in reverse time order",
                  "output[t] is the state after step t: check the order outputs are stacked in",
                  outputs=lambda o, c, i: Outputs(reversed_in_time(o.output, c), o.h_n, o.c_n),
                  applies=lambda case: case.seq_len > 1),
    ]


def masked(o: Outputs, case: Case) -> Tensor:
    return from_time_major(to_time_major(o.output, case) * valid_mask(case, o.output), case)


def unmasked_run(run: Runner, inputs: Inputs, case: Case) -> Outputs:
    """The reference over every step of the padded input, lengths ignored."""
    return run(Inputs(inputs.x, None, inputs.hx), case.with_(lengths=None))


def state_through_padding(run: Runner, inputs: Inputs, case: Case) -> Outputs:
    unmasked = unmasked_run(run, inputs, case)
    return Outputs(masked(unmasked, case), unmasked.h_n, unmasked.c_n)


def reverse_through_padding(run: Runner, inputs: Inputs, case: Case) -> Outputs:
    plain, unmasked = run(inputs, case), unmasked_run(run, inputs, case)
    half = plain.output.shape[-1] // 2
    output = torch.cat([plain.output[..., :half], masked(unmasked, case)[..., half:]], -1)
    pick = lambda a, b: torch.stack((a[0::2], b[1::2]), 1).flatten(0, 1)  # noqa: E731
    c_n = None if plain.c_n is None else pick(plain.c_n, unmasked.c_n)
    return Outputs(output, pick(plain.h_n, unmasked.h_n), c_n)


def h_n_at_last_padded_step(o: Outputs, case: Case, inputs: Inputs) -> Outputs:
    last = to_time_major(o.output, case)[-1]  # (B, D * h_out), zeros past a sequence's end
    h_n = o.h_n.clone()
    h_n[0] = last[..., :case.h_out]
    return Outputs(o.output, h_n, o.c_n)


def padding_carries_last_output(o: Outputs, case: Case, inputs: Inputs) -> Outputs:
    tm = to_time_major(o.output, case).clone()  # (T, B, F)
    mask = valid_mask(case, tm)
    for t in range(1, tm.shape[0]):
        tm[t] = torch.where(mask[t], tm[t], tm[t - 1])
    return Outputs(from_time_major(tm, case), o.h_n, o.c_n)


def sorted_state(o: Outputs, case: Case, inputs: Inputs) -> Outputs:
    order = torch.sort(torch.tensor(case.lengths), descending=True).indices
    return with_rows(o, lambda rows: rows.index_select(1, order.to(rows.device)))


def sorted_cell_state(o: Outputs, case: Case, inputs: Inputs) -> Outputs:
    order = torch.sort(torch.tensor(case.lengths), descending=True).indices
    return Outputs(o.output, o.h_n, o.c_n.index_select(1, order.to(o.c_n.device)))


def unsorted(case: Case) -> bool:
    """Whether the case's lengths are not already longest first (their packed order differs)."""
    return list(case.lengths) != sorted(case.lengths, reverse=True)


def padding_signatures(has_cell: bool) -> list[Signature]:
    varlen = lambda case: case.varlen and not case.unbatched  # noqa: E731
    cell = [Signature("c-n-in-sorted-order",
                      "c_n's sequences in the packed (length-sorted) order, h_n's put back",
                      "put c_n back in the caller's order with the PackedSequence's "
                      "unsorted_indices, as h_n is",
                      outputs=sorted_cell_state,
                      applies=lambda case: varlen(case) and unsorted(case))] if has_cell else []
    return cell + [
        Signature("state-runs-through-padding",
                  "padded steps updating the state (h_n read after step T-1, not length-1)",
                  "a sequence's final state is the one after its last valid step: mask the "
                  "state update at padded steps (or feed a PackedSequence)",
                  composed=state_through_padding, applies=varlen),
        Signature("reverse-ignores-lengths",
                  "the reverse direction starting at step T-1 for every sequence",
                  "the reverse direction of a shorter sequence starts at its own last valid "
                  "step, not at the padding",
                  composed=reverse_through_padding,
                  applies=lambda case: varlen(case) and case.bidirectional
                  and case.num_layers == 1),
        Signature("h-n-at-last-padded-step",
                  "h_n read from the output at step T-1 instead of each sequence's last step",
                  "take h_n at index length-1 of each sequence (or from the packed run's final "
                  "state), not output[-1]",
                  outputs=h_n_at_last_padded_step,
                  applies=lambda case: varlen(case) and case.num_layers == 1
                  and not case.bidirectional),
        Signature("padding-not-zeroed", "the output at padded steps holding the last valid "
                  "output instead of zeros",
                  "torch's padded output is zero past each sequence's length",
                  outputs=padding_carries_last_output, applies=varlen),
        Signature("h-n-in-sorted-order",
                  "h_n's sequences in the packed (length-sorted) order",
                  "a PackedSequence sorts its sequences by length: put h_n back in the "
                  "caller's order with its unsorted_indices",
                  outputs=sorted_state,
                  applies=lambda case: varlen(case) and len(set(case.lengths)) > 1),
    ]


def carried_one_step_early(size: int):
    """Chunks of ``size`` steps, each after the first starting from the state one step before
    the previous chunk's end (one layer, one direction, h only: output[t] is h_t)."""
    def composed(run: Runner, inputs: Inputs, case: Case) -> Outputs:
        time_dim = 1 if case.batch_first else 0
        pieces, hx = [], inputs.hx
        for start in range(0, case.seq_len, size):
            steps = min(size, case.seq_len - start)
            x = inputs.x.narrow(time_dim, start, steps)
            out = run(Inputs(x, None, hx), case.with_(seq_len=steps))
            pieces.append(out.output)
            at = max(steps - 2, 0)  # the state one step before this chunk's end
            hx = out.output.narrow(time_dim, at, 1).movedim(time_dim, 0)
            hx = hx if not case.unbatched else hx.squeeze(0).unsqueeze(0)
        output = torch.cat(pieces, time_dim)
        last = output.narrow(time_dim, case.seq_len - 1, 1).movedim(time_dim, 0)
        return Outputs(output, last if not case.unbatched else last.reshape(1, -1))
    return composed


def chunk_signatures(has_cell: bool) -> list[Signature]:
    """For scan-style implementations that run in chunks: the carry between chunks one step
    off, at the chunk sizes people use."""
    if has_cell:
        return []
    return [Signature(
        f"chunk-carry-off-by-one-{size}",
        f"each chunk of {size} steps starting from the state one step before the previous "
        "chunk's end", "the next chunk starts from the previous chunk's last state (index -1 "
        "of the chunk, not -2)", composed=carried_one_step_early(size),
        applies=lambda case, size=size: case.seq_len > size and case.num_layers == 1
        and not case.bidirectional and case.lengths is None) for size in (16, 32, 64)]


def generic(family) -> list[Signature]:
    """The signatures every module family gets, for ``family``'s layout."""
    found = state_signatures(family.has_cell) + time_signatures() + layout_signatures() \
        + padding_signatures(family.has_cell) + precision_signatures() \
        + chunk_signatures(family.has_cell)
    # bias_hh exists with a recurrent matrix only (harness.core.layer.NamedParameters)
    found += bias_signatures(("bias_ih", "bias_hh") if family.recurrence == "matrix"
                             else ("bias_ih",))
    if family.recurrence == "matrix":
        found += matrix_signatures(family.gates)
    found += gate_order_signatures(tuple(family.gate_names))
    return found


def of(family) -> list[Signature]:
    """Every signature tried for ``family``: the generic ones, then
    the family's own (``Family.signatures``: a callable, or a "module:function" path to one)."""
    declared = family.signatures
    if isinstance(declared, str):
        module, _, name = declared.partition(":")
        declared = getattr(importlib.import_module(module), name)
    return generic(family) + list(declared() if declared is not None else ())
