"""A TorchScript LSTM in the style of PyTorch's fastrnns ``custom_lstms.py`` (script-lstm).

Before torch.compile, custom recurrent cells were shipped as TorchScript: PyTorch's own benchmark
suite (benchmarks/fastrnns/custom_lstms.py) shows the pattern — an LSTM cell as a scripted
module, a layer that loops the cell over ``input.unbind(0)``, a reverse layer, bidirectional
layers that run both and concatenate, and a stack of layers whose states travel as a list of
(h, c) tuples. This module is that pattern, written for this harness: every piece below is
scripted (``torch.jit.script`` of the whole stack, once per structure and process, deep-copied
for every module of it), and ScriptLSTM puts torch's constructor and forward contract around
it — input layouts, unbatched input, hx validated with torch's error types
(harness.core.torch_inputs), h_n and c_n as stacked (layers x directions, B, H) tensors — and
maps torch's weights onto the cells
(``load_reference_weights``). Dropout acts between layers in training, as torch's.

One deliberate difference from custom_lstms.py: the gates are split with ``unsafe_chunk``. With
``chunk``, TorchScript's autodiff in torch 2.13 fails a backward pass in which one gate gets no
gradient (a loss on c_n alone: the output gate's), which the gradient suite's gradcheck finds;
tests/mutants/deploy.py keeps the original as a mutant.

TorchScript's optimising executor does not run under torch.inference_mode in torch 2.13: once it
has optimised the graph (from the third call on), a call in inference mode fails with "Inference
tensors cannot be saved for backward" (the inference suite finds it; the plan is shared by every
module of the same structure in the process). Under inference mode the stack therefore runs
under torch.no_grad, which it does support, on ordinary copies of inference tensors; the
outputs are then ordinary tensors.

Its parameters are named per cell (``stack.layers.0.directions.1.cell.weight_ih``), not as
torch's, so the gradient suite compares parameter gradients through the weight loader. Not
claimed: packed input or lengths, proj_size, CUDA (TorchScript runs there, but the entry is
checked on the CPU only). TorchScript's profiling executor optimises a graph after its first
calls, per process; bench's first-call record shows what that costs.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.torch_inputs import time_major, validated_state

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (B, H)


class LSTMCell(nn.Module):
    """One LSTM step, torch's gate layout [i, f, g, o]."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, factory: dict) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        else:  # TorchScript wants one type per attribute: zeros, not None
            self.register_buffer("bias_ih", torch.zeros(4 * hidden_size, **factory), False)
            self.register_buffer("bias_hh", torch.zeros(4 * hidden_size, **factory), False)

    def forward(self, input: Tensor, state: tuple[Tensor, Tensor]
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        hx, cx = state
        gates = (torch.mm(input, self.weight_ih.t()) + self.bias_ih
                 + torch.mm(hx, self.weight_hh.t()) + self.bias_hh)  # (B, 4H)
        # unsafe_chunk, not custom_lstms.py's chunk: TorchScript's backward of chunk (torch
        # 2.13) fails when one chunk gets no gradient — a loss on c_n alone leaves the output
        # gate's undefined ("expected those two sizes to be the same: 12, 9" at H=3).
        ingate, forgetgate, cellgate, outgate = gates.unsafe_chunk(4, 1)
        cy = torch.sigmoid(forgetgate) * cx + torch.sigmoid(ingate) * torch.tanh(cellgate)
        hy = torch.sigmoid(outgate) * torch.tanh(cy)
        return hy, (hy, cy)


class LSTMLayer(nn.Module):
    """The cell over every step of x (T, B, in), forward or reversed: (T, B, H), final state."""

    def __init__(self, cell: LSTMCell, reverse: bool) -> None:
        super().__init__()
        self.cell = cell
        self.reverse = reverse

    def forward(self, input: Tensor, state: tuple[Tensor, Tensor]
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        inputs = input.unbind(0)
        outputs: list[Tensor] = []
        for i in range(len(inputs)):
            t = len(inputs) - 1 - i if self.reverse else i
            out, state = self.cell(inputs[t], state)
            outputs.append(out)
        if self.reverse:
            outputs.reverse()
        return torch.stack(outputs), state


class DirectionsLayer(nn.Module):
    """One layer: its directions run on the same input, outputs concatenated."""

    def __init__(self, directions: list[LSTMLayer]) -> None:
        super().__init__()
        self.directions = nn.ModuleList(directions)

    def forward(self, input: Tensor, states: list[tuple[Tensor, Tensor]]
                ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        outputs: list[Tensor] = []
        finals: list[tuple[Tensor, Tensor]] = []
        for i, direction in enumerate(self.directions):
            out, final = direction(input, states[i])
            outputs.append(out)
            finals.append(final)
        return torch.cat(outputs, -1), finals


class StackedLSTM(nn.Module):
    """Layers one above the other; states in h_n's row order (layer-major), dropout between
    layers in training."""

    def __init__(self, layers: list[DirectionsLayer], directions: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.num_directions = directions
        self.dropout = dropout

    def forward(self, input: Tensor, states: list[tuple[Tensor, Tensor]]
                ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        finals: list[tuple[Tensor, Tensor]] = []
        output = input
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0.0 and self.training:
                output = F.dropout(output, self.dropout, True)
            start = i * self.num_directions
            output, layer_finals = layer(output, states[start:start + self.num_directions])
            finals += layer_finals
        return output, finals


# Process-wide: per structure (cell class, sizes, layers, bias, dropout, directions, device,
# dtype), the stack scripted the first time, which every module of that structure deep-copies
# (~1 ms) instead of scripting its own (~50 ms: the conformance suites build hundreds).
# TorchScript shares the compiled code and its executor's plan between modules of one structure
# in any case; each copy has its own parameters.
_SCRIPTED: dict[tuple, torch.jit.ScriptModule] = {}


class ScriptLSTM(nn.Module):
    """A scripted stack of LSTM cells (PyTorch's custom_lstms.py pattern) with torch's contract."""

    harness_family = "lstm"
    harness_capabilities = {  # noqa: RUF012  (a TorchScript stack is saved by torch.jit.save)
        "packed": False, "proj_size": False, "devices": {"cpu"}, "picklable": False}
    cell_class = LSTMCell  # the scripted cell every layer loops

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.bidirectional = batch_first, bidirectional
        factory = {"device": device, "dtype": dtype}
        directions = 2 if bidirectional else 1
        key = (self.cell_class, input_size, hidden_size, num_layers, bool(bias), float(dropout),
               directions, str(device), str(dtype))
        if key not in _SCRIPTED:
            layers = [DirectionsLayer([
                LSTMLayer(self.cell_class(input_size if layer == 0 else directions * hidden_size,
                                          hidden_size, bias, factory), reverse=bool(d))
                for d in range(directions)]) for layer in range(num_layers)]
            with warnings.catch_warnings():  # TorchScript is deprecated; this entry is about it
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                        category=DeprecationWarning)
                _SCRIPTED[key] = torch.jit.script(StackedLSTM(layers, directions, float(dropout)))
        # Its own parameters, the compiled code shared. Copied under no_grad: torch 2.13 deep-
        # copies a ScriptModule's parameters with clone(), which autograd records, so each copy
        # would be a non-leaf tensor — gradients reach it through autograd.grad, but never its
        # .grad, and an optimiser refuses it ("can't optimize a non-leaf Tensor").
        with torch.no_grad():
            self.stack = copy.deepcopy(_SCRIPTED[key])
        bound = 1.0 / math.sqrt(hidden_size)  # torch's default initialisation
        with torch.no_grad():
            for weight, scripted in zip(self.stack.parameters(), _SCRIPTED[key].parameters()):
                weight.uniform_(-bound, bound).requires_grad_(scripted.requires_grad)

    def cells(self) -> dict[str, nn.Module]:
        """Each cell by torch's name suffix: _l0, _l0_reverse, _l1, ..."""
        directions = 2 if self.bidirectional else 1
        # by attribute name: a deep-copied scripted ModuleList has no indexing
        return {f"_l{layer}" + ("_reverse" if d else ""):
                getattr(getattr(self.stack.layers, str(layer)).directions, str(d)).cell
                for layer in range(self.num_layers) for d in range(directions)}

    def load_reference_weights(self, state_dict: Mapping[str, Tensor]) -> None:
        """Copy torch's nn.LSTM state_dict (weight_ih_l0, bias_hh_l1_reverse, ...) into the
        cells."""
        with torch.no_grad():
            for suffix, cell in self.cells().items():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    if name + suffix in state_dict:
                        getattr(cell, name).copy_(state_dict[name + suffix])

    def run_stack(self, x: Tensor, states: list[LSTMState]) -> tuple[Tensor, list[LSTMState]]:
        """The scripted stack on x (T, B, in); under torch.inference_mode it runs under
        torch.no_grad instead, on ordinary copies of any inference tensor (see the module
        docstring)."""
        if not torch.is_inference_mode_enabled():
            return self.stack(x, states)
        with torch.inference_mode(False), torch.no_grad():
            def ordinary(t: Tensor) -> Tensor:
                return t.clone() if t.is_inference() else t

            return self.stack(ordinary(x), [(ordinary(h), ordinary(c)) for h, c in states])

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        x, _, batched = time_major(input, None, mode="LSTM", batch_first=self.batch_first,
                                   input_size=self.input_size)  # (T, B, in); torch's errors
        rows, batch = self.num_layers * (2 if self.bidirectional else 1), x.shape[1]
        if hx is None:
            h0 = c0 = x.new_zeros(rows, batch, self.hidden_size)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError(f"LSTM expects hx as a tuple (h_0, c_0), got "
                                   f"{type(hx).__name__}")
            h0, c0 = validated_state(tuple(hx), rows=rows, batch=batch,
                                     sizes=(self.hidden_size, self.hidden_size),
                                     batched=batched)
        output, finals = self.run_stack(x, [(h0[i], c0[i]) for i in range(rows)])
        h_n = torch.stack([h for h, _ in finals])  # (L*D, B, H)
        c_n = torch.stack([c for _, c in finals])
        if not batched:
            return output.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n, c_n)
