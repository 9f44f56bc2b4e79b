"""scratch-rnn: the course chapter's RNN cell, kept literally — one Linear over [x_t, h_{t-1}]
followed by tanh — and driven over the sequence by the shared from-scratch machinery.

Its parameters are not torch's: torch's nn.RNN weights load through an adapter
(``load_reference_weights``), which is what the harness's weight loader uses for layouts that
differ from torch's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from harness.core.layer import RecurrentLayer, State


class CourseCell(nn.Module):
    """The course's cell: one Linear over the concatenation [x_t, h_{t-1}], then tanh."""

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool, activation: nn.Module,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.input_to_hidden = nn.Linear(
            input_size + hidden_size, hidden_size, bias=bias, device=device, dtype=dtype
        )
        self.activation = activation

    def forward(self, x: Tensor, hidden: Tensor) -> Tensor:
        combined = torch.cat((x, hidden), dim=1)  # (B, in + H)
        return self.activation(self.input_to_hidden(combined))


class ScratchRNN(RecurrentLayer):
    """The course's from-scratch RNN cell driven over the sequence, one CourseCell per
    (layer, direction). It keeps the course's layout, so torch's weights load through an adapter:
    input_to_hidden.weight = [W_ih | W_hh], input_to_hidden.bias = b_ih + b_hh."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device=device, dtype=dtype,
        )
        activations = {"tanh": nn.Tanh, "relu": nn.ReLU}
        if nonlinearity not in activations:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        self.nonlinearity = nonlinearity
        self.cells = nn.ModuleList(
            CourseCell(in_features, hidden_size, bias=bias,
                       activation=activations[nonlinearity](), **self._factory)
            for _layer, _suffix, in_features in self.slots()
        )
        self.reset_parameters()

    def cell(self, slot: int, x_t: Tensor, state: State) -> State:
        return (self.cells[slot](x_t, state[0]),)

    def load_reference_weights(self, state: Mapping[str, Tensor]) -> None:
        """Load nn.RNN's weights: [W_ih | W_hh] side by side, the two biases summed."""
        with torch.no_grad():
            for cell, (_layer, suffix, _) in zip(self.cells, self.slots()):
                linear = cell.input_to_hidden
                linear.weight.copy_(
                    torch.cat((state["weight_ih" + suffix], state["weight_hh" + suffix]), dim=1)
                )
                if linear.bias is not None:
                    linear.bias.copy_(state["bias_ih" + suffix] + state["bias_hh" + suffix])
