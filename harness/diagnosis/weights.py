"""Signatures in how weights are read: a bias left out or added twice, a weight matrix used
transposed or in the other one's place, gate blocks split in another order, and the whole
computation in float32 (a transformation of the reference's weights or of its precision)."""

from __future__ import annotations

import itertools

import torch

from harness.core.case import Case
from harness.diagnosis.signatures import Signature, Weights


def bias_signatures(names: tuple[str, ...]) -> list[Signature]:
    def scaled(prefix: str, factor: float):
        def transform(weights: Weights, case: Case) -> Weights:
            return {k: v * factor if k.startswith(prefix) else v for k, v in weights.items()}
        return transform

    has = lambda prefix: lambda case: case.bias  # noqa: E731
    found = []
    for name in names:
        found += [
            Signature(f"{name.replace('_', '-')}-dropped", f"{name} left out",
                      f"torch adds both bias_ih and bias_hh: check that {name} is loaded and "
                      "added", weights=scaled(name, 0.0), applies=has(name)),
            Signature(f"{name.replace('_', '-')}-twice", f"{name} added twice",
                      f"{name} is added once per step (a fused bias is bias_ih + bias_hh, not "
                      f"twice either)", weights=scaled(name, 2.0), applies=has(name)),
        ]
    return found


def square_blocks(weights: Weights, prefix: str, gates: int) -> bool:
    found = [v for k, v in weights.items() if k.startswith(prefix)]
    return bool(found) and all(v.dim() == 2 and v.shape[0] == gates * v.shape[1]
                               for v in found)


def blocks_transposed(prefix: str, gates: int):
    def transform(weights: Weights, case: Case) -> Weights:
        out = {}
        for k, v in weights.items():
            if k.startswith(prefix) and v.dim() == 2 and v.shape[0] == gates * v.shape[1]:
                v = torch.cat([b.t() for b in v.chunk(gates, 0)])
            out[k] = v
        return out
    return transform


def swapped_ih_hh(weights: Weights, case: Case) -> Weights:
    out = dict(weights)
    for k, v in weights.items():
        if k.startswith("weight_ih"):
            other = "weight_hh" + k[len("weight_ih"):]
            if other in weights and weights[other].shape == v.shape:
                out[k], out[other] = weights[other], v
    return out


def matrix_signatures(gates: int) -> list[Signature]:
    square_hh = lambda case: case.proj_size == 0  # noqa: E731
    square_ih = lambda case: case.input_size == case.hidden_size  # noqa: E731
    return [
        Signature("weight-hh-transposed", "weight_hh's gate blocks used transposed",
                  "torch computes h @ W_hh.T (F.linear(h, W_hh)): check the transpose of each "
                  "recurrent block", weights=blocks_transposed("weight_hh", gates),
                  applies=square_hh),
        Signature("weight-ih-transposed", "weight_ih's gate blocks used transposed",
                  "torch computes x @ W_ih.T (F.linear(x, W_ih)): check the transpose of each "
                  "input block", weights=blocks_transposed("weight_ih", gates),
                  applies=lambda case: square_ih(case) and case.num_layers == 1),
        Signature("weight-ih-hh-swapped", "weight_ih and weight_hh swapped",
                  "weight_ih multiplies the input x, weight_hh the state h",
                  weights=swapped_ih_hh,
                  applies=lambda case: square_ih(case) and square_hh(case)),
    ]


def gate_order_signatures(gate_names: tuple[str, ...]) -> list[Signature]:
    """Every other order of the gate blocks: the implementation reads torch's rows in ``order``."""
    if len(gate_names) < 2:
        return []
    torch_order = ", ".join(gate_names)

    def permuted(order: tuple[str, ...]):
        def transform(weights: Weights, case: Case) -> Weights:
            out = {}
            for k, v in weights.items():
                if (k.startswith(("weight_ih", "bias_ih", "bias_hh"))
                        or (k.startswith("weight_hh") and v.dim() == 2)) \
                        and v.shape[0] % len(gate_names) == 0:
                    blocks = v.chunk(len(gate_names), 0)
                    # torch's slot of gate n gets the block the implementation reads as n
                    v = torch.cat([blocks[order.index(n)] for n in gate_names])
                out[k] = v
            return out
        return transform

    found = []
    for order in itertools.permutations(gate_names):
        if order == gate_names:
            continue
        listed = ", ".join(order)
        found.append(Signature(
            "gate-order-" + "".join(n[0] for n in order), f"gate blocks ordered ({listed})",
            f"the family's order is ({torch_order}): check how weight_ih and weight_hh rows are "
            "split into gates", weights=permuted(order)))
    return found


def precision_signatures() -> list[Signature]:
    return [Signature("computes-in-float32", "the computation in float32 (cast back to float64)",
                      "a float64 input should be computed in float64: check for float32 "
                      "constants, buffers or casts", dtype="float32",
                      applies=lambda case: case.dtype == "float64")]
