"""torch.nn.RNN/LSTM/GRU's constructor and forward contract, in code, around a per-step cell.

Every recurrent layer the harness defines — the from-scratch teaching entries, the fast layers,
and the reference loops of families that have no torch module — shares this machinery: input
layouts (time-major, batch-first, unbatched, PackedSequence, padded plus ``lengths=``), masking
of padded steps, directions, stacked layers, dropout between layers, the initial state and its
validation with torch's own error types. A layer only defines its parameters and ``cell``, one
time step of one (layer, direction); or, where a step's input side reads no state (minGRU,
minLSTM, RG-LRU, IndRNN), ``drive`` (that side, for the whole sequence at once) and ``recur`` (the
step that remains); or overrides ``run_direction`` to run a whole sequence its own way (a parallel
scan).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from harness.core.torch_inputs import State, repack, time_major, validated_state


class RecurrentLayer(nn.Module):
    """torch.nn.RNN/LSTM/GRU's constructor and forward contract around a per-step cell.

    Subclasses define the parameters of each (layer, direction) and ``cell``: one time step.
    Everything else — input layouts, packed sequences, masking, directions, layers, dropout, the
    initial state and its validation — is shared here.
    """

    mode: ClassVar[str] = "RNN"  # the name torch's error messages use

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(f"proj_size must be 0 or in [1, hidden_size), got {proj_size!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self._factory = {"device": device, "dtype": dtype}

    # Layout ----------------------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj_size or self.hidden_size

    def slots(self) -> list[tuple[int, str, int]]:
        """(layer, torch's name suffix, input features) for every (layer, direction), in h_n's
        row order: layer-major, forward before reverse."""
        return [
            (layer, f"_l{layer}" + ("_reverse" if d else ""), self.layer_input_size(layer))
            for layer in range(self.num_layers)
            for d in range(self.num_directions)
        ]

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.h_out

    def state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state tensor: (h,) or (h, c)."""
        return (self.h_out,)

    def reset_parameters(self) -> None:
        """torch's default initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every parameter."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    # The recurrence --------------------------------------------------------------------------

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        """One time step of (layer, direction) number ``slot``: x_t (B, in) -> new state. By
        default ``recur`` over ``drive`` of x_t: a layer whose gates read the state defines its
        own."""
        return self.recur(slot, self.drive(slot, x_t), state)

    def drive(self, slot: int, x: Tensor) -> tuple[Tensor, ...]:
        """A step's input side, for a layer whose gates read the input only: x (..., in) -> the
        tensors ``recur`` takes, each (..., features). ``run_direction`` computes it for every
        step at once, which is the same arithmetic as step by step, and far fewer calls."""
        raise NotImplementedError(f"{type(self).__name__} defines neither cell nor drive")

    def recur(self, slot: int, driven: tuple[Tensor, ...], state: State) -> State:
        """The rest of one step: ``drive``'s tensors for this step (B, features) and the state
        -> the new state."""
        raise NotImplementedError(f"{type(self).__name__} defines neither cell nor recur")

    @property
    def drives_ahead(self) -> bool:
        """The step is ``recur`` over ``drive`` (``cell`` not redefined, by this class or by a
        subclass changing the step): the input side can be computed for the whole sequence."""
        return type(self).cell is RecurrentLayer.cell

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | State | None = None,
        *,
        lengths: Tensor | None = None,
    ):
        """torch's forward, plus an optional ``lengths`` (B,) for padded 3-D input: padded steps
        then leave the state alone and output zeros, as with a PackedSequence."""
        packed = isinstance(input, PackedSequence)
        x, lengths, batched = time_major(input, lengths, mode=self.mode,
                                         batch_first=self.batch_first,
                                         input_size=self.input_size)
        seq_len, batch = x.shape[0], x.shape[1]
        state = self.initial_state(hx, batch=batch, batched=batched, like=x)

        # mask[t, b] is True while step t is inside sequence b; padded steps leave the state alone.
        mask = None
        if lengths is not None:
            steps = torch.arange(seq_len, device=x.device).unsqueeze(1)  # (T, 1)
            mask = steps < lengths.to(x.device).unsqueeze(0)  # (T, B)

        layer_input, finals = x, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                slot = layer * self.num_directions + direction
                start = tuple(s[slot] for s in state)
                out, final = self.run_direction(slot, layer_input, start, mask, bool(direction))
                outputs.append(out)
                finals.append(final)
            layer_input = self.join(outputs) if len(outputs) > 1 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = self.drop(layer_input)
        output = layer_input  # (T, B, D * h_out)
        # Each state tensor stacks (layer, direction) rows: (L * D, B, features).
        state_n = tuple(torch.stack([f[i] for f in finals]) for i in range(len(state)))

        if packed:
            output = repack(output, lengths, like=input)
        elif not batched:
            output = output.squeeze(1)
            state_n = tuple(s.squeeze(1) for s in state_n)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, self.pack_state(state_n)

    def join(self, outputs: list[Tensor]) -> Tensor:
        """A layer's output from its directions' (T, B, h_out) each: forward first, as torch."""
        return torch.cat(outputs, dim=2)

    def drop(self, x: Tensor) -> Tensor:
        """Dropout between layers, in training: each value of x (T, B, D * h_out) zeroed with
        probability ``dropout``, the others scaled by 1 / (1 - dropout)."""
        return F.dropout(x, self.dropout, training=True)

    def run_direction(
        self, slot: int, x: Tensor, state: State, mask: Tensor | None, reverse: bool
    ) -> tuple[Tensor, State]:
        """Run one (layer, direction) over x (T, B, in): outputs (T, B, h_out), final state.

        The reverse direction walks t = T-1 .. 0; with a mask, its steps beyond a sequence's
        length leave the state untouched, so it effectively starts at that sequence's last step.
        """
        seq_len = x.shape[0]
        outputs: list[Tensor] = [x.new_empty(0)] * seq_len
        # Every step's input side at once where the step reads it alone: (B, features) each.
        driven = None
        if self.drives_ahead:
            driven = list(zip(*(part.unbind(0) for part in self.drive(slot, x))))
        steps = x.unbind(0) if driven is None else ()  # (B, in) each, for cell
        valid = None if mask is None else mask.unsqueeze(2).unbind(0)  # (B, 1) each
        for t in range(seq_len - 1, -1, -1) if reverse else range(seq_len):
            new = (self.cell(slot, steps[t], state) if driven is None
                   else self.recur(slot, driven[t], state))
            if valid is None:
                state = new
                outputs[t] = new[0]
            else:
                state = tuple(torch.where(valid[t], n, s) for n, s in zip(new, state))
                outputs[t] = torch.where(valid[t], new[0], 0.0)
        return torch.stack(outputs), state

    # The state -------------------------------------------------------------------------------

    def pack_state(self, state: State) -> Tensor | State:
        """What forward returns as its second value: h_n, or (h_n, c_n) for LSTM."""
        return state[0]

    def unpack_hx(self, hx: Tensor | State) -> State:
        return (hx,)

    def initial_state(self, hx, *, batch: int, batched: bool, like: Tensor) -> State:
        """The initial state as (L*D, B, features) tensors: zeros, or hx validated like torch."""
        rows = self.num_layers * self.num_directions
        if hx is None:
            return tuple(like.new_zeros(rows, batch, size) for size in self.state_sizes())
        return validated_state(self.unpack_hx(hx), rows=rows, batch=batch,
                               sizes=self.state_sizes(), batched=batched)


class CellState:
    """LSTM's state for a RecurrentLayer: (h, c), h of h_out features (projected), c of
    hidden_size; forward returns (h_n, c_n) and takes hx as such a tuple."""

    mode: ClassVar[str] = "LSTM"

    def state_sizes(self) -> tuple[int, ...]:
        return (self.h_out, self.hidden_size)  # h may be projected; c never is

    def pack_state(self, state: State) -> State:
        return state[0], state[1]

    def unpack_hx(self, hx: Tensor | State) -> State:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise RuntimeError(f"LSTM expects hx as a tuple (h_0, c_0), got {type(hx).__name__}")
        return tuple(hx)


# role -> the prefix of torch's parameter name, as NamedParameters.weights returns them
ROLES = (("ih", "weight_ih"), ("hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh"),
         ("hr", "weight_hr"))


class NamedParameters(RecurrentLayer):
    """Parameters named as torch's (weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0), shaped by
    the family's layout, so a reference state_dict loads by name.

    gates: H-row blocks stacked in weight_ih (and in a matrix weight_hh).
    recurrence: "matrix" (weight_hh (gates*H, h_out) and bias_hh, torch's families), "diagonal"
        (weight_hh (H,), a per-unit recurrent weight, no bias_hh) or "none" (no weight_hh).
    """

    gates: ClassVar[int] = 1
    recurrence: ClassVar[str] = "matrix"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        rows, factory = self.gates * self.hidden_size, self._factory
        self._suffixes = [suffix for _layer, suffix, _in in self.slots()]
        # slot -> (role, torch's parameter name): ``weights`` runs once per step of a loop
        self._names = [tuple((role, prefix + suffix) for role, prefix in ROLES)
                       for suffix in self._suffixes]
        for _layer, suffix, in_features in self.slots():
            shapes = {"weight_ih" + suffix: (rows, in_features)}
            if self.recurrence == "matrix":
                shapes["weight_hh" + suffix] = (rows, self.h_out)
            elif self.recurrence == "diagonal":
                shapes["weight_hh" + suffix] = (self.hidden_size,)
            if self.bias:
                shapes["bias_ih" + suffix] = (rows,)
                if self.recurrence == "matrix":
                    shapes["bias_hh" + suffix] = (rows,)
            if self.proj_size:
                shapes["weight_hr" + suffix] = (self.proj_size, self.hidden_size)
            for name, shape in shapes.items():
                self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def weights(self, slot: int) -> dict[str, Tensor | None]:
        """This slot's parameters by role: ih, hh, b_ih, b_hh, hr (None where absent)."""
        found = self._parameters  # registered ones first: nn.Module's getattr is slow
        return {role: found[name] if name in found else getattr(self, name, None)
                for role, name in self._names[slot]}
