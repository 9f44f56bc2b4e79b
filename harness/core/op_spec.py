"""The contract of an op: what a function with fla's signature claims, and its registry entry.

An op is a plain function ``op(q, k, v, *gates, scale=None, initial_state=None,
output_final_state=False, cu_seqlens=None[, chunk_size]) -> (o, final_state)``
(harness.ops.sequences). It declares, on the function, its family (``harness_family``) and what
it supports (``harness_capabilities``: an OpCapabilities or a mapping of overrides); a case
outside them is *not supported*, saying why. Its ImplSpec is made by ``spec_from_function``, so
the registry, the records and the report hold ops and module classes alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

from harness.core.case import DEVICES, DTYPES
from harness.core.declared import capabilities_from, class_declarations, declared_family
from harness.core.op_case import OpCase
from harness.core.op_family import FORMS
from harness.core.values import chosen_among

# How `seq-harness list` names each part of an op's contract.
OP_PARTS = {"varlen": "cu_seqlens", "initial_state": "initial_state", "scale": "scale",
            "final_state": "output_final_state", "autograd": "autograd",
            "chunk_sizes": "chunk sizes", "max_elements": "largest"}


@dataclass(frozen=True)
class OpCapabilities:
    """The parts of the op contract an op claims.

    varlen: takes ``cu_seqlens`` (empty sequences included).
    initial_state, final_state: takes ``initial_state``; returns the final state when asked.
    dtypes, devices: where it runs.
    autograd: gradients flow back to q, k, v, the gates and the initial state.
    chunk_sizes: the ``chunk_size`` values it takes (None: it has no such keyword; "any": every
        positive size).
    max_elements: the largest case it is meant for, in elements of the biggest tensor its form
        keeps (``elements``: a recurrent loop's backward keeps every step's K x V state, a
        parallel form a T x T matrix per sequence and head); None: no limit. Larger cases are
        not supported, saying so.
    form: how it computes — recurrent, chunk or parallel — for the FLOP formula of its timings
        and the size of what it keeps.
    scale: takes the ``scale`` keyword (False: q always times K^-1/2, and the cases that pass a
        scale are not supported; a function without the keyword gets False).
    """

    varlen: bool = True
    initial_state: bool = True
    final_state: bool = True
    dtypes: frozenset[str] = frozenset({"float32", "float64"})
    devices: frozenset[str] = frozenset(DEVICES)
    autograd: bool = True
    chunk_sizes: frozenset[int] | str | None = None
    max_elements: int | None = None
    form: str = "chunk"
    scale: bool = True

    def __post_init__(self) -> None:
        for name, valid in (("dtypes", DTYPES), ("devices", DEVICES)):
            object.__setattr__(self, name, chosen_among(name, getattr(self, name), valid))
        sizes = self.chunk_sizes
        if sizes is not None and sizes != "any":
            if isinstance(sizes, str) or not all(isinstance(c, int) and c > 0 for c in sizes):
                raise ValueError(f"capabilities chunk_sizes={sizes!r} is invalid; expected None, "
                                 "'any' or a set of positive integers")
            object.__setattr__(self, "chunk_sizes", frozenset(sizes))
        if self.form not in FORMS:
            raise ValueError(f"capabilities form={self.form!r} is invalid; valid: "
                             f"{', '.join(FORMS)}")

    @property
    def chunked(self) -> bool:
        return self.chunk_sizes is not None

    def takes_chunk(self, size: int) -> bool:
        return self.chunk_sizes == "any" or (self.chunk_sizes is not None
                                             and size in self.chunk_sizes)

    @classmethod
    def from_declaration(cls, declared) -> OpCapabilities:
        return capabilities_from(cls, declared, label="op capabilities")

    def differences(self, fam) -> list[str]:
        """Every way this differs from the full op contract (for `seq-harness list`)."""
        full, out = OpCapabilities(), []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(full, f.name)
            if f.name == "form":
                out.append(f"form {mine}")
            elif mine != theirs:
                label = OP_PARTS.get(f.name, f.name)
                if isinstance(mine, frozenset):
                    out.append(f"{label} {', '.join(map(str, sorted(mine))) or 'none'}")
                elif isinstance(mine, bool):
                    out.append(label if mine else f"no {label}")
                else:
                    out.append(f"{label} {mine}")
        return out

    def adapt(self, case):
        """An op takes every case as it is (no argument is fixed to one value)."""
        return case

    def why_not(self, case, fam) -> str | None:
        """None when the case is inside the claimed contract, else the reason it is not."""
        if not isinstance(case, OpCase):
            return "not supported: an op is checked on op cases, not module cases"
        checks = (
            (case.lengths is not None and not self.varlen, "cu_seqlens (variable lengths)"),
            (case.with_state and not self.initial_state, "initial_state"),
            (case.scale is not None and not self.scale, "the scale keyword"),
            (case.chunk_size is not None and not self.takes_chunk(case.chunk_size),
             f"chunk_size={case.chunk_size}"),
            (self.max_elements is not None and elements(case, self.form) > self.max_elements,
             f"{elements(case, self.form):,} elements kept by a {self.form} form (largest: "
             f"{self.max_elements or 0:,})"),
            (case.dtype not in self.dtypes, f"dtype {case.dtype}"),
            (case.device not in self.devices, f"device {case.device}"),
        )
        for excluded, what in checks:
            if excluded:
                return f"not supported: {what}"
        return fam.why_not(case)


def elements(case: OpCase, form: str) -> int:
    """The biggest tensor a form keeps for a case: every step's K x V state (recurrent, for the
    backward pass), a T x T matrix per sequence and head (parallel), a C x C one per chunk
    (chunk)."""
    rows = case.sequences * case.heads
    if form == "recurrent":
        return case.seq_len * rows * case.key_dim * case.value_dim
    if form == "parallel":
        return rows * case.seq_len ** 2
    return rows * case.seq_len * (case.chunk_size or 64)


def spec_from_function(fn: Callable, *, family_name: str | None = None, name: str | None = None,
                       origin: str = ""):
    """An ImplSpec for an op: its family is ``family_name`` or the ``harness_family`` it
    declares; ``harness_capabilities``, ``harness_tolerance``, ``harness_check_timeout`` and
    ``harness_name`` as on a class. An op with a ``chunk_size`` keyword that declares no
    ``chunk_sizes`` takes any (the chunking suite varies it); one without a ``scale`` keyword
    (nor ``**kwargs``) takes no scale."""
    from harness.core.spec import ImplSpec

    if isinstance(fn, type) or not callable(fn):
        raise TypeError(f"{origin or fn!r} is not a function")
    declared = declared_family(fn)
    if family_name is not None and declared is not None and family_name != declared:
        raise ValueError(f"--family {family_name} differs from the family {declared} that "
                         f"{origin or fn.__name__} declares (harness_family)")
    if (family_name or declared) is None:
        raise ValueError(f"{origin or fn.__name__} declares no harness_family; name it with "
                         "--family")
    doc = inspect.getdoc(fn) or ""
    claimed = getattr(fn, "harness_capabilities", None)
    capabilities = OpCapabilities.from_declaration(claimed)
    parameters = inspect.signature(fn).parameters
    takes_chunk = "chunk_size" in parameters
    if takes_chunk and not (isinstance(claimed, Mapping) and "chunk_sizes" in claimed) \
            and not isinstance(claimed, OpCapabilities):
        capabilities = replace(capabilities, chunk_sizes="any")  # a chunk_size keyword: any
    if "scale" not in parameters and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        capabilities = replace(capabilities, scale=False)  # nothing to pass it to
    return ImplSpec(
        name=name or getattr(fn, "harness_name", None) or function_name(fn.__name__),
        family=family_name or declared, factory=fn,
        capabilities=capabilities, description=doc.splitlines()[0] if doc else "", origin=origin,
        **class_declarations(fn))


def function_name(name: str) -> str:
    """my_gated_delta -> my-gated-delta; MyGatedDelta -> my-gated-delta."""
    from harness.core.spec import kebab

    if "_" in name or name.islower():
        return "-".join(part for part in name.lower().split("_") if part) or "op"
    return kebab(name)
