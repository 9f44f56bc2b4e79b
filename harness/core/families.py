"""The recurrent families the harness knows, and how each one's torch reference is built.

A family fixes the maths an implementation must reproduce: the cell (tanh or relu Elman, LSTM, GRU),
how many gate blocks its weight matrices stack, whether it carries a cell state c next to h, and
which extra constructor argument torch's class takes (``nonlinearity`` or ``proj_size``). Every
numeric check compares an implementation with the torch module of its family, built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Family:
    """One recurrent family.

    name: the id used in registry entries, records and report columns.
    gates: how many H-row blocks weight_ih / weight_hh stack (torch's layout).
    has_cell: True when the state is (h, c) rather than h alone.
    nonlinearity: passed to nn.RNN for the Elman families; None for the gated ones.
    """

    name: str
    gates: int
    has_cell: bool
    nonlinearity: str | None = None

    @property
    def torch_class(self) -> type[nn.Module]:
        if self.name.startswith("rnn_"):
            return nn.RNN
        return nn.LSTM if self.name == "lstm" else nn.GRU

    @property
    def supports_proj(self) -> bool:
        """Only LSTM has proj_size (h is projected to proj_size features, c keeps hidden_size)."""
        return self.name == "lstm"

    def constructor_kwargs(self, proj_size: int = 0) -> dict[str, Any]:
        """The family-specific constructor arguments torch's class expects."""
        if self.nonlinearity is not None:
            return {"nonlinearity": self.nonlinearity}
        if self.supports_proj and proj_size:
            return {"proj_size": proj_size}
        return {}

    def build_reference(self, **kwargs: Any) -> nn.Module:
        """torch.nn.RNN / LSTM / GRU with the given torch constructor arguments."""
        return self.torch_class(**kwargs)


FAMILIES: dict[str, Family] = {
    "rnn_tanh": Family("rnn_tanh", gates=1, has_cell=False, nonlinearity="tanh"),
    "rnn_relu": Family("rnn_relu", gates=1, has_cell=False, nonlinearity="relu"),
    "lstm": Family("lstm", gates=4, has_cell=True),
    "gru": Family("gru", gates=3, has_cell=False),
}


def family(name: str) -> Family:
    """The family called ``name``; a ValueError names the valid ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        valid = ", ".join(FAMILIES)
        raise ValueError(f"unknown family {name!r}; valid families: {valid}") from None
