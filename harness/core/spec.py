"""The contract between the harness and an implementation: ImplSpec and its Capabilities.

An implementation is any nn.Module class with torch.nn.RNN/LSTM/GRU's constructor arguments and
forward contract. Its ImplSpec says how to build it for a Case, which parts of the contract it
claims (a case outside them is reported "not supported", never counted as a pass), and how the
reference weights of its family are loaded into it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.core.capabilities import Capabilities
from harness.core.case import Case
from harness.core.declared import (
    Tolerances,
    class_declarations,
    declared_family,
    parse_timeout,
    parse_tolerance,
)
from harness.core.families import Family, family

NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

WeightLoader = Callable[[nn.Module, Mapping[str, torch.Tensor]], None]


def load_torch_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Default weight loader: the implementation uses torch's parameter names
    (weight_ih_l0, weight_hh_l0_reverse, bias_ih_l1, weight_hr_l0, ...)."""
    own = dict(module.state_dict())
    missing = sorted(set(state) - set(own))
    unexpected = sorted(set(own) - set(state))
    if missing or unexpected:
        raise KeyError(
            f"{type(module).__name__} does not use torch's parameter names "
            f"(absent: {missing or 'none'}; extra: {unexpected or 'none'}); give it a "
            "load_reference_weights(state_dict) method to load torch's layout"
        )
    with torch.no_grad():
        for name, value in state.items():
            if own[name].shape != value.shape:
                raise ValueError(
                    f"{type(module).__name__}.{name} has shape {tuple(own[name].shape)}; "
                    f"torch's has {tuple(value.shape)}"
                )
            own[name].copy_(value)


def load_with_method(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Loader for classes that define load_reference_weights(state_dict) themselves."""
    module.load_reference_weights(state)  # type: ignore[operator]


@dataclass(frozen=True)
class ImplSpec:
    """One registry entry.

    name: lowercase-hyphen id, the same in pytest ids, records and report headers.
    family: the family whose torch module is the reference (rnn_tanh, rnn_relu, lstm, gru).
    factory: called with torch's constructor arguments (plus device and dtype).
    capabilities: the claimed contract; cases outside it are "not supported".
    load_weights: copies the reference's state_dict (torch's names and layout) into a module.
    description: one line for `seq-harness list` and the report.
    origin: where the entry came from (an entry point, or MODULE:CLASS).
    tolerance: the bound its value checks are held to instead of the family's default, per
        dtype: {"float32": {"atol": 5e-2, "rtol": 0.0}} (see harness.core.declared); checks of
        exact properties are never loosened by it.
    check_timeout: seconds one check may take at least (first calls that compile or export).
    availability: called to ask whether the entry can run here: None, or why not (an optional
        dependency missing, with the command that installs it). An unavailable entry is listed
        as such and all its checks are *not supported* with that reason.
    """

    name: str
    family: str
    factory: Callable[..., nn.Module]
    capabilities: Capabilities = field(default_factory=Capabilities)
    load_weights: WeightLoader = load_torch_state
    description: str = ""
    origin: str = ""
    tolerance: Tolerances | None = None
    check_timeout: float | None = None
    availability: Callable[[], str | None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"implementation name {self.name!r} is invalid; expected a lowercase-hyphen id "
                "such as 'my-lstm'"
            )
        family(self.family)  # raises with the valid families
        if not callable(self.factory):
            raise TypeError(f"factory of {self.name!r} is not callable: {self.factory!r}")
        object.__setattr__(self, "tolerance", parse_tolerance(
            self.tolerance, where=f"tolerance of {self.name!r}"))
        parse_timeout(self.check_timeout, where=f"check_timeout of {self.name!r}")

    def unavailable(self) -> str | None:
        """Why this entry cannot run here (None when it can)."""
        return None if self.availability is None else self.availability()

    @property
    def family_def(self) -> Family:
        return family(self.family)

    def why_not(self, case: Case) -> str | None:
        if (reason := self.unavailable()) is not None:
            return f"not supported: {reason}"
        return self.capabilities.why_not(case, self.family_def)

    def constructor_kwargs(self, case: Case) -> dict[str, Any]:
        """torch's constructor arguments for this case, family-specific ones included."""
        return {
            **case.torch_kwargs(),
            **self.family_def.constructor_kwargs(case.proj_size),
            "device": torch.device(case.device),
            "dtype": case.torch_dtype,
        }

    def build(self, case: Case) -> nn.Module:
        """A fresh module for the case, in the case's training mode."""
        module = self.factory(**self.constructor_kwargs(case))
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{self.name}: building returned {type(module).__name__}, expected an nn.Module"
            )
        return module.train(case.training)


def spec_from_class(
    cls: type, *, family_name: str | None = None, name: str | None = None, origin: str = ""
) -> ImplSpec:
    """An ImplSpec for a third-party class with torch's constructor and forward contract.

    The class claims the whole contract unless it declares ``harness_capabilities`` (a
    Capabilities or a mapping of overrides); it loads torch's weights by parameter name unless it
    defines ``load_reference_weights(state_dict)``. Its family is ``family_name`` or the
    ``harness_family`` it declares (a ValueError when both are given and differ, or neither);
    ``harness_tolerance`` and ``harness_check_timeout`` become the entry's tolerance and check
    timeout (see harness.core.declared).
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"{origin or cls!r} is not an nn.Module class")
    declared = declared_family(cls)
    if family_name is not None and declared is not None and family_name != declared:
        raise ValueError(f"--family {family_name} differs from the family {declared} that "
                         f"{origin or cls.__name__} declares (harness_family)")
    if (family_name or declared) is None:
        raise ValueError(f"{origin or cls.__name__} declares no harness_family; name it with "
                         "--family")
    loader = load_with_method if callable(getattr(cls, "load_reference_weights", None)) else None
    return ImplSpec(
        name=name or getattr(cls, "harness_name", None) or kebab(cls.__name__),
        family=family_name or declared,
        factory=cls,
        capabilities=Capabilities.from_declaration(getattr(cls, "harness_capabilities", None)),
        load_weights=loader or load_torch_state,
        description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        origin=origin,
        **class_declarations(cls),
    )


def kebab(class_name: str) -> str:
    """MyFastLSTM -> my-fast-lstm."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|[A-Z]+|\d+", class_name)
    return "-".join(w.lower() for w in words) or "impl"
