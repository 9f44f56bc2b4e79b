"""The contract between the harness and an implementation: ImplSpec and its Capabilities.

An implementation is any nn.Module class with torch.nn.RNN/LSTM/GRU's constructor arguments and
forward contract. Its ImplSpec says how to build it for a Case, which parts of the contract it
claims (a case outside them is reported "not supported", never counted as a pass), and how the
reference weights of its family are loaded into it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from harness.core.case import DEVICES, DTYPES, Case
from harness.core.declared import (
    Tolerances,
    class_declarations,
    declared_family,
    parse_timeout,
    parse_tolerance,
)
from harness.core.families import Family, family
from harness.core.values import chosen_among

NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

WeightLoader = Callable[[nn.Module, Mapping[str, torch.Tensor]], None]


# How `seq-harness list` names each part of the contract.
CONTRACT_PARTS = {
    "packed": "PackedSequence input", "lengths": "padded input + lengths=",
    "multi_layer": "num_layers > 1", "unbatched": "unbatched input", "no_bias": "bias=False",
    "autograd": "autograd", "compiled": "compiled (torch.compile)",
}


@dataclass(frozen=True)
class Capabilities:
    """The parts of torch's contract an implementation claims.

    packed: forward accepts a PackedSequence (variable-length batches are fed packed).
    lengths: forward accepts padded input plus a ``lengths=`` keyword and packs internally; the
        harness then always passes lengths, so the packing path is what gets checked.
    bidirectional, multi_layer, batch_first, proj_size, dropout, unbatched: as torch's arguments;
        multi_layer means num_layers > 1, unbatched means 2-D input.
    no_bias: accepts bias=False.
    dtypes, devices: where it runs.
    zero_length: a sequence of length 0 in a batch, given as padded input plus ``lengths=``
        (its output rows are zeros and its final state is its initial state); PackedSequence
        cannot hold one, so torch's modules cannot.
    chunked: the constructor takes ``chunk_size=`` (steps processed at a time), and any chunk
        size gives the same result.
    autograd: gradients flow back through it. False (inference only: a quantized or exported
        model) makes every check that needs a backward pass, and the forward and
        forward_backward latency phases, *not supported*, saying so.
    compiled: it runs torch.compile'd code; a check then proves that the compile produced
        graphs instead of silently running eagerly.
    """

    packed: bool = True
    lengths: bool = False
    bidirectional: bool = True
    multi_layer: bool = True
    batch_first: bool = True
    proj_size: bool = True
    dropout: bool = True
    unbatched: bool = True
    no_bias: bool = True
    dtypes: frozenset[str] = frozenset({"float32", "float64"})
    devices: frozenset[str] = frozenset(DEVICES)
    zero_length: bool = False
    chunked: bool = False
    autograd: bool = True
    compiled: bool = False

    def __post_init__(self) -> None:
        for name, valid in (("dtypes", DTYPES), ("devices", DEVICES)):
            object.__setattr__(self, name, chosen_among(name, getattr(self, name), valid))

    @classmethod
    def from_declaration(cls, declared: Capabilities | Mapping[str, Any] | None) -> Capabilities:
        """Capabilities from what a class declares: an instance, overrides of the full contract,
        or nothing (the whole torch contract is claimed)."""
        if declared is None:
            return cls()
        if isinstance(declared, Capabilities):
            return declared
        if isinstance(declared, Mapping):
            valid = {f.name for f in fields(cls)}
            if bad := sorted(set(declared) - valid):
                raise ValueError(
                    f"unknown capabilities {bad}; valid: {', '.join(sorted(valid))}"
                )
            return replace(cls(), **declared)
        raise TypeError(
            f"harness_capabilities={declared!r} is invalid; expected Capabilities or a mapping"
        )

    def differences(self, fam: Family) -> list[str]:
        """Every way this differs from torch's full contract, e.g. 'no packed', 'lengths=',
        'dtypes float32' (proj_size only where the family has it)."""
        full = Capabilities()
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(full, f.name)
            if mine == theirs or (f.name == "proj_size" and not fam.supports_proj):
                continue
            label = CONTRACT_PARTS.get(f.name, f.name)
            if isinstance(mine, frozenset):
                out.append(f"{label} {', '.join(sorted(mine)) or 'none'} only")
            else:
                out.append(label if mine else f"no {label}")
        return out

    def why_not(self, case: Case, fam: Family) -> str | None:
        """None when the case is inside the claimed contract, else the reason it is not."""
        lengths = case.lengths is not None
        checks = (
            (lengths and not (self.packed or self.lengths), "variable-length input"),
            (lengths and min(case.lengths, default=1) == 0 and not self.zero_length,
             "a sequence of length 0 in a batch (needs lengths=; PackedSequence cannot hold it)"),
            (case.bidirectional and not self.bidirectional, "bidirectional"),
            (case.num_layers > 1 and not self.multi_layer, "num_layers > 1"),
            (case.batch_first and not self.batch_first, "batch_first"),
            (case.proj_size > 0 and not self.proj_size, "proj_size"),
            (case.dropout > 0 and not self.dropout, "dropout"),
            (case.unbatched and not self.unbatched, "unbatched input"),
            (not case.bias and not self.no_bias, "bias=False"),
            (case.dtype not in self.dtypes, f"dtype {case.dtype}"),
            (case.device not in self.devices, f"device {case.device}"),
        )
        for excluded, what in checks:
            if excluded:
                return f"not supported: {what}"
        return fam.why_not(case)


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
