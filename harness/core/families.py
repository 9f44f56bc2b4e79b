"""A recurrent family: the maths an implementation must reproduce, as a plug-in.

A Family names its reference — torch's module for torch's families, a plain, obviously correct
sequential loop for families torch does not have — and everything the suites, the benchmarks and
the report need to know about it: the state (``("h",)`` or ``("h", "c")``) and the domain initial
states are drawn from, the parameter layout (gate blocks stacked in ``weight_ih``; a matrix, a
vector or no ``weight_hh``), extra constructor arguments, tolerances per dtype, its FLOP formula,
the cases it cannot express, and the suites that do not apply to it.

Families are published through the ``seq_harness.families`` entry-point group, the built-in ones
too (harness.families), so a third party adds a family without touching the kit. Every family
keeps torch's implementation contract: constructor ``(input_size, hidden_size, num_layers=1,
bias=True, batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``,
``forward(x, hx=None) -> (output, h_n)`` (a tuple of states where the family has several),
padded or packed input, ``h_n`` of shape ``(num_layers * num_directions, B, H)``, layer-major.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from torch import Tensor, nn

from harness.core.case import Case

GROUP = "seq_harness.families"
RECURRENCES = ("matrix", "diagonal", "none")
DOMAINS = ("real", "positive")
# float32 / float64 atol at the small exact-check sizes (CUDA float32: torch's 5e-5).
DEFAULT_TOLERANCES = {"float32": (1e-5, 0.0), "float64": (1e-10, 0.0), "float16": (1e-2, 1e-2),
                      "bfloat16": (1e-2, 1e-2)}


def frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Family:
    """One recurrent family (see the module docstring).

    name: the id in registry entries, records and report columns.
    reference: builds the reference module from torch's constructor arguments (plus
        ``extra_kwargs``): torch's class, or the family's sequential loop.
    gates: H-row blocks stacked in weight_ih (and in a matrix weight_hh), in the documented order.
    state: the names of the state tensors forward returns (h, or h and c).
    recurrence: "matrix" (weight_hh (gates*H, h_out), torch's families), "diagonal" (weight_hh
        (H,), a per-unit recurrent weight) or "none" (no recurrent weight: h enters only through
        the gates' combination).
    state_domain: "real", or "positive" (the state stays positive, e.g. minGRU's h with g > 0;
        suites draw initial states inside the domain; outside it, implementations may differ).
    square: every layer's input size equals the hidden size (RG-LRU); cases are adapted.
    extra_kwargs: further constructor arguments (nonlinearity for the Elman families).
    supports_proj: LSTM's proj_size.
    tolerances: (atol, rtol) per dtype for value checks against the reference.
    flop_formula: matrix-multiply FLOPs of one call (case, phase) -> int; None: the generic count
        from gates and recurrence (matmul_flops).
    not_applicable: suite name -> why it does not apply to this family.
    order: where the family sorts in listings and reports.
    description: one line for listings and the report.
    baseline: the registry entry the family's other implementations are timed against (torch's
        module for torch's families; by default the reference loop, ``<name>-loop``).
    reference_label: how failure messages name the reference ("torch lstm"; by default "the
        <name> reference loop").
    device_modules: device -> the module torch itself runs there, where it behaves differently
        from the CPU contract (torch's families on cuda: cuDNN refuses a non-contiguous hx, and
        backward in eval mode). A check an implementation fails on that device is run again on
        that module; failing it the same way, the implementation did what torch does there:
        outcome *as torch* (harness.conformance.as_torch).
    gate_names: the gate blocks' names in their order ("i", "f", "g", "o"): a diagnosis tries
        every other order (harness.diagnosis.signatures).
    signatures: the family's own bug signatures (harness.diagnosis.signatures.Signature), tried
        with the generic ones when an implementation fails: a callable returning them, or its
        "module:function" path (imported only then).
    weight_regimes: label -> a map of the drawn reference weights to weights as the family's
        trained or initialised models hold them, where the drawn U(-1/sqrt(H), 1/sqrt(H)) ones
        never go (RG-LRU's decays within 1e-3 of 1): the precision checks run each too.
    """

    name: str
    reference: Callable[..., nn.Module]
    gates: int = 1
    state: tuple[str, ...] = ("h",)
    recurrence: str = "matrix"
    state_domain: str = "real"
    square: bool = False
    extra_kwargs: Mapping[str, Any] = field(default_factory=dict)
    supports_proj: bool = False
    tolerances: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_TOLERANCES))
    flop_formula: Callable[[Case, str], int] | None = None
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    order: int = 100
    description: str = ""
    baseline: str = ""
    reference_label: str = ""
    device_modules: Mapping[str, Callable[..., nn.Module]] = field(default_factory=dict)
    gate_names: tuple[str, ...] = ()
    signatures: str | Callable[[], Sequence[Any]] | None = None
    weight_regimes: Mapping[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]] = field(
        default_factory=dict)

    kind = "module"  # the kind of subject it checks (harness.core.op_family: "op")

    def __post_init__(self) -> None:
        if self.recurrence not in RECURRENCES:
            raise ValueError(f"family {self.name!r}: recurrence {self.recurrence!r} is invalid; "
                             f"valid: {', '.join(RECURRENCES)}")
        if self.state_domain not in DOMAINS:
            raise ValueError(f"family {self.name!r}: state_domain {self.state_domain!r} is "
                             f"invalid; valid: {', '.join(DOMAINS)}")
        if self.gate_names and len(self.gate_names) != self.gates:
            raise ValueError(f"family {self.name!r}: gate_names {self.gate_names!r} name "
                             f"{len(self.gate_names)} gates; expected {self.gates}")
        if isinstance(self.signatures, str) and ":" not in self.signatures:
            raise ValueError(f"family {self.name!r}: signatures {self.signatures!r} is invalid; "
                             "expected a callable or a 'module:function' path")
        if self.state not in (("h",), ("h", "c")):
            raise ValueError(f"family {self.name!r}: state {self.state!r} is invalid; valid: "
                             "('h',) or ('h', 'c')")
        for name in ("extra_kwargs", "not_applicable", "device_modules", "weight_regimes"):
            object.__setattr__(self, name, frozen(getattr(self, name)))
        object.__setattr__(self, "tolerances",
                           frozen({**DEFAULT_TOLERANCES, **dict(self.tolerances)}))
        if not self.baseline:
            object.__setattr__(self, "baseline", f"{self.name.replace('_', '-')}-loop")
        if not self.reference_label:
            object.__setattr__(self, "reference_label", f"the {self.name} reference loop")

    @property
    def has_cell(self) -> bool:
        """True when the state is (h, c) rather than h alone."""
        return len(self.state) == 2

    def constructor_kwargs(self, proj_size: int = 0) -> dict[str, Any]:
        """The family-specific constructor arguments its reference expects."""
        kwargs = dict(self.extra_kwargs)
        if self.supports_proj and proj_size:
            kwargs["proj_size"] = proj_size
        return kwargs

    def build_reference(self, **kwargs: Any) -> nn.Module:
        """The reference module for torch's constructor arguments (family ones included): a
        copy of the one this process built first for those arguments (``built_once``). Callers
        load their own weights into it."""
        return copy.deepcopy(built_once(self.reference, tuple(sorted(kwargs.items()))))

    def adapt(self, case: Case) -> Case:
        """The case as this family can express it (a square family's input size is its hidden
        size)."""
        if self.square and case.input_size != case.hidden_size:
            return case.with_(input_size=case.hidden_size)
        return case

    def why_not(self, case: Case) -> str | None:
        """None when the family can express the case, else why not."""
        if case.proj_size > 0 and not self.supports_proj:
            return f"not supported: proj_size (family {self.name} has none)"
        if case.radius is not None and self.recurrence == "none":
            return f"not supported: a recurrent radius (family {self.name} has no weight_hh)"
        if self.square and case.input_size != case.hidden_size:
            return f"not supported: input_size != hidden_size (family {self.name} is square)"
        return None

    def suite_applies(self, suite: str) -> str | None:
        """None when ``suite`` applies to this family, else why not."""
        why = self.not_applicable.get(suite)
        return None if why is None else f"not supported: {why} (family {self.name})"

    def refuses_eval_backward(self, device: str) -> bool:
        """Whether torch's own module on ``device`` refuses a backward pass in eval mode (cuDNN
        does): checks that take gradients then build modules in training mode there."""
        return device in self.device_modules and eval_backward_refused(self, device)

    def tolerance(self, dtype: str) -> tuple[float, float]:
        """(atol, rtol) of value checks in ``dtype``."""
        return self.tolerances.get(dtype, DEFAULT_TOLERANCES["float32"])

    def flops(self, case: Case, phase: str) -> int:
        """Matrix-multiply FLOPs of one call in ``phase`` (the family's formula)."""
        if self.flop_formula is not None:
            return self.flop_formula(case, phase)
        return matmul_flops(self, case, phase)


@functools.lru_cache(maxsize=64)  # the checks' small modules; a few wide ones at most
def built_once(build: Callable[..., nn.Module], arguments: tuple[tuple[str, Any], ...]
               ) -> nn.Module:
    """The module ``build(**arguments)``, built once per process and never handed out (copies
    are): building one of torch's RNN modules is a millisecond of Python, and a verdict builds
    nearly a thousand references (a copy is 40% cheaper)."""
    return build(**dict(arguments))


def eval_backward_refused(family: Family, device: str) -> bool:
    """Try it: a backward pass through the family's module for ``device``, in eval mode, on a
    tiny input (asked once per family and device in a process)."""
    return _eval_backward_refused(family.device_modules[device], device,
                                  tuple(sorted(family.extra_kwargs.items())))


@functools.cache
def _eval_backward_refused(build: Callable[..., nn.Module], device: str,
                           extra: tuple[tuple[str, Any], ...]) -> bool:
    import torch

    module = build(input_size=2, hidden_size=2, **dict(extra), device=device).eval()
    x = torch.ones(2, 1, 2, device=device, requires_grad=True)
    try:
        output = module(x)[0]
        output.sum().backward()
    except RuntimeError:
        return True
    return False


def matmul_flops(family: Family, case: Case, phase: str) -> int:
    """Matrix-multiply FLOPs of one call, counted from the layout: per step and direction, the
    input projection 2 * gates * H * in_features, a matrix recurrence 2 * gates * H * h_out (plus
    LSTM's projection); elementwise gate maths and diagonal recurrences are not counted. The
    backward pass computes every weight gradient (as many FLOPs as the forward), the gradient
    through h (the recurrent matmuls once more) and the gradient of each layer's input except
    the first one's (the timed input does not require grad). Times every valid step of every
    sequence (0 for an empty batch)."""
    forward = backward = 0  # per step of one sequence, all layers and directions
    for layer in range(case.num_layers):
        in_features = case.input_size if layer == 0 else case.num_directions * case.h_out
        input_part = 2 * family.gates * case.hidden_size * in_features
        recurrent = 0
        if family.recurrence == "matrix":
            recurrent = 2 * family.gates * case.hidden_size * case.h_out
        if case.proj_size:
            recurrent += 2 * case.hidden_size * case.proj_size
        forward += case.num_directions * (input_part + recurrent)
        backward += case.num_directions * (
            input_part + recurrent + recurrent + (input_part if layer else 0))
    per_step = forward + backward if phase == "forward_backward" else forward
    return int(per_step * sum(case.effective_lengths))


def is_op_family(obj: object) -> bool:
    """An OpFamily (harness.core.op_family, which builds on this module): the families of ops."""
    return getattr(obj, "kind", None) == "op" and hasattr(obj, "reference")


@dataclass(frozen=True)
class Families:
    """Every family published in the entry-point group, in order, and those that failed to load
    (name -> why)."""

    by_name: Mapping[str, Family]
    broken: Mapping[str, str]


@functools.cache
def load_families(group: str = GROUP) -> Families:
    """The families of the entry-point group, loaded once per process (they are immutable)."""
    found: dict[str, Family] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=group):
        try:
            loaded = ep.load()
            single = isinstance(loaded, Family) or is_op_family(loaded)
            for fam in [loaded] if single else list(loaded):
                if not (isinstance(fam, Family) or is_op_family(fam)):
                    raise TypeError(f"expected Family or OpFamily, got {type(fam).__name__}")
                if fam.name in found:
                    raise ValueError(f"duplicate family name {fam.name!r}")
                found[fam.name] = fam
        except Exception as error:  # a broken plug-in must not hide the others
            text = " ".join(str(error).split())
            broken[ep.name] = (f"entry point {ep.value!r} failed to load: "
                               f"{type(error).__name__}: {text}")
    ranked = sorted(found.values(), key=lambda f: (f.order, f.name))
    return Families(frozen({f.name: f for f in ranked}), frozen(broken))


def family_names() -> list[str]:
    return list(load_families().by_name)


def family(name: str) -> Family:
    """The family called ``name``; a ValueError names the valid ones."""
    loaded = load_families()
    if name in loaded.by_name:
        return loaded.by_name[name]
    if name in loaded.broken:
        raise ValueError(f"family {name!r} is broken: {loaded.broken[name]}")
    raise ValueError(f"unknown family {name!r}; valid families: {', '.join(loaded.by_name)}")
