"""Small implementation classes that the registry, selection and spec tests load by path."""

from __future__ import annotations

from torch import nn

from harness.impls.course_cell import ScratchRNN


class MyLSTM(nn.LSTM):
    """torch's LSTM under another name.

    Second docstring line, not part of the description.
    """


class ClashingLSTM(nn.LSTM):
    """Claims the name of a built-in registry entry."""

    harness_name = "torch-lstm"


class DeclaredGRU(nn.GRU):
    """Declares a narrower contract as a mapping of overrides."""

    harness_capabilities = {"packed": False, "dtypes": {"float64"}}  # noqa: RUF012


class AdapterRNN(ScratchRNN):
    """Does not use torch's parameter names; loads torch's weights through its own method."""


class RaisingLSTM(nn.Module):
    """Its constructor refuses torch's arguments."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        raise RuntimeError("boom: this class cannot be built")


class BadName(nn.GRU):
    harness_name = "Bad Name"


class BadCapabilities(nn.GRU):
    harness_capabilities = {"packd": False}  # noqa: RUF012


class NotAModule:
    """A class, but not an nn.Module."""


def not_a_class() -> None:
    """A function, not a class."""


class Outer:
    class InnerGRU(nn.GRU):
        """Reached by a dotted attribute path."""
