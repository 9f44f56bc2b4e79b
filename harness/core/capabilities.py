"""The parts of torch's contract an implementation claims (Capabilities): a case outside them
is *not supported*, saying why, never a pass; and the constructor arguments it takes one value
of only, which every case it runs is adapted to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from harness.core.case import DEVICES, DTYPES, Case
from harness.core.declared import capabilities_from
from harness.core.families import Family
from harness.core.values import chosen_among

# The constructor arguments a class may take one value of only (Capabilities.only), and their type.
ONLY = {"bias": bool, "batch_first": bool, "num_layers": int, "bidirectional": bool}

# How `seq-harness list` names each part of the contract.
CONTRACT_PARTS = {
    "packed": "PackedSequence input", "lengths": "padded input + lengths=",
    "multi_layer": "num_layers > 1", "unbatched": "unbatched input", "no_bias": "bias=False",
    "autograd": "autograd", "compiled": "compiled (torch.compile)",
    "double_backward": "double backward", "picklable": "torch.save of the whole module",
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
    double_backward: its backward pass is itself differentiable (a gradient penalty, MAML).
        False (a hand-written backward, torch.compile's) makes the second-derivative check
        *not supported*; such an implementation should raise when asked, never return zeros.
    picklable: torch.save(module) and torch.load give the same layer, as a checkpoint of a whole
        model does. False where another format is the way to save it (a TorchScript module:
        torch.jit.save) makes that check *not supported*, saying so.
    only: constructor arguments it takes one value of, and no other: {"bias": False} for a
        class built on bias-free projections, {"batch_first": True}, {"num_layers": 1},
        {"bidirectional": False}. Every case then runs with that value (``adapt``); a case
        that becomes another case of the grid is *not supported*, saying which one runs.
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
    double_backward: bool = True
    picklable: bool = True
    only: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name, valid in (("dtypes", DTYPES), ("devices", DEVICES)):
            object.__setattr__(self, name, chosen_among(name, getattr(self, name), valid))
        only = dict(self.only.items() if isinstance(self.only, Mapping) else self.only)
        if bad := sorted(set(only) - set(ONLY)):
            raise ValueError(f"only {bad} is invalid; a class may fix: {', '.join(ONLY)}")
        for name, value in only.items():
            if not isinstance(value, ONLY[name]) or (name == "num_layers" and (
                    isinstance(value, bool) or value < 1)):
                raise ValueError(f"only {name}={value!r} is invalid; expected "
                                 f"{'a positive int' if name == 'num_layers' else 'True or False'}")
        if only.get("bias") is False and not self.no_bias:
            raise ValueError("only bias=False contradicts no_bias=False (bias=False refused)")
        object.__setattr__(self, "only", tuple(sorted(only.items())))

    def adapt(self, case: Case) -> Case:
        """The case as this implementation runs it: the fields it takes one value of only
        (``only``) set to that value."""
        only = {k: v for k, v in self.only if getattr(case, k) != v}
        return case.with_(**only) if only else case

    @classmethod
    def from_declaration(cls, declared: Capabilities | Mapping[str, Any] | None) -> Capabilities:
        """Capabilities from what a class declares: an instance, overrides of the full contract,
        or nothing (the whole torch contract is claimed)."""
        return capabilities_from(cls, declared, label="capabilities")

    def differences(self, fam: Family) -> list[str]:
        """Every way this differs from torch's full contract, e.g. 'no packed', 'lengths=',
        'dtypes float32' (proj_size only where the family has it)."""
        full = Capabilities()
        out = [f"{name}={value} only" for name, value in self.only]
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(full, f.name)
            if mine == theirs or f.name == "only" or (f.name == "proj_size"
                                                       and not fam.supports_proj):
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
