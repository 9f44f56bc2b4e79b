"""One backward pass, run and read: leaf copies of the inputs, random upstream gradients, and
the gradient of every input, state and parameter (None where none arrives), for a module and for
an op. The gradients suite compares an implementation's with its reference's
(harness.conformance.gradients, op_checks); the diagnosis of a backward-pass bug reads the same
ones (harness.diagnosis.backward).

A gradient the reference has and the implementation lacks is never taken as zero: outputs that
are part of no autograd graph raise NoGradient, naming what the gradient does not reach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from harness.core.contract import Inputs, Outputs
from harness.core.failed import CheckFailed
from harness.core.op_subject import OpInputs, OpOutputs, OpSubject, call_op
from harness.core.subject import Subject


@dataclass(frozen=True)
class Upstream:
    """Random gradients fed into output, h_n and c_n (each the shape of the tensor it feeds)."""

    output: Tensor
    h_n: Tensor
    c_n: Tensor | None

    @classmethod
    def like(cls, outputs: Outputs, *, seed: int) -> Upstream:
        generator = torch.Generator().manual_seed(seed)

        def draw(t: Tensor) -> Tensor:
            return torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype)

        c_n = None if outputs.c_n is None else draw(outputs.c_n)
        return cls(draw(outputs.output), draw(outputs.h_n), c_n)

    def loss(self, outputs: Outputs) -> Tensor:
        """sum(output * g_out) + sum(h_n * g_h) (+ sum(c_n * g_c)): its gradient with respect to
        each output is exactly the upstream gradient."""
        device = outputs.output.device
        loss = (outputs.output * self.output.to(device)).sum()
        loss = loss + (outputs.h_n * self.h_n.to(device)).sum()
        if self.c_n is not None and outputs.c_n is not None:
            loss = loss + (outputs.c_n * self.c_n.to(device)).sum()
        return loss


def leaf_inputs(inputs: Inputs) -> Inputs:
    """Copies of x and hx that require grad, so their gradients can be read."""
    hx = inputs.hx
    if isinstance(hx, tuple):
        hx = tuple(h.detach().clone().requires_grad_(True) for h in hx)
    elif hx is not None:
        hx = hx.detach().clone().requires_grad_(True)
    return Inputs(inputs.x.detach().clone().requires_grad_(True), inputs.lengths, hx)


def state_leaf_inputs(inputs: Inputs) -> Inputs:
    """x copied, needing no gradient, and copies of hx that require grad: a tuned initial
    state (a learned h_0 under a frozen model fed data)."""
    leaves = leaf_inputs(inputs)
    return Inputs(inputs.x.detach().clone(), inputs.lengths, leaves.hx)


def state_leaves(inputs: Inputs) -> dict[str, Tensor]:
    hx = inputs.hx
    if hx is None:
        return {}
    states = hx if isinstance(hx, tuple) else (hx,)
    return dict(zip(("h_0", "c_0"), states))


class NoGradient(CheckFailed):
    """The implementation's outputs do not carry a gradient back to something torch's do."""


@dataclass(frozen=True)
class Gradients:
    """Gradients of one backward pass; None where no gradient reached. params is keyed by the
    module's own parameter names."""

    wrt: dict[str, Tensor | None]  # "input", "h_0", "c_0"
    params: dict[str, Tensor | None]

    def missing(self, expected: Gradients) -> list[str]:
        """What ``expected`` has a gradient for and this has not: inputs and states by name;
        parameters by name when both use the same names."""
        lacking = [n for n, g in expected.wrt.items() if g is not None and self.wrt.get(n) is None]
        lacking += [n for n, g in expected.params.items()
                    if g is not None and n in self.params and self.params[n] is None]
        return lacking


def require_graph(outputs: Outputs, *, inputs_need_grad: bool = True) -> None:
    """NoGradient unless some output is part of an autograd graph."""
    if not any(t.requires_grad for t in outputs.named().values()):
        reached = ("the input, hx or any parameter" if inputs_need_grad
                   else "any parameter (the input and hx needing none, as a batch in training)")
        raise NoGradient(f"no gradient reaches {reached}: the outputs were computed without "
                         "autograd (no_grad, detached, or outside torch)")


def backward(
    run: Callable[[Inputs], Outputs], module: nn.Module, inputs: Inputs, upstream: Upstream | None,
    *, seed: int, inputs_need_grad: bool = True, state_only: bool = False,
) -> tuple[Gradients, Upstream]:
    """Run forward on leaf copies of the inputs, backward from ``upstream`` (drawn from ``seed``
    when None), and collect every gradient (None where none reached). NoGradient when the
    outputs are not part of a graph at all. ``inputs_need_grad`` False: the inputs as a
    training batch is, needing no gradient; the parameters' gradients only. ``state_only``:
    hx needs a gradient and x none (``state_leaf_inputs``)."""
    if state_only:
        leaves = state_leaf_inputs(inputs)
    else:
        leaves = leaf_inputs(inputs) if inputs_need_grad else inputs.copy()
    outputs = run(leaves)
    upstream = upstream or Upstream.like(outputs, seed=seed)
    require_graph(outputs, inputs_need_grad=inputs_need_grad)
    if state_only:
        named = state_leaves(leaves)
    else:
        named = {"input": leaves.x, **state_leaves(leaves)} if inputs_need_grad else {}
    params = dict(module.named_parameters())
    trained = {n: p for n, p in params.items() if p.requires_grad}  # a frozen one gets None
    targets = [*named.values(), *trained.values()]
    grads = torch.autograd.grad(upstream.loss(outputs), targets, allow_unused=True)
    found = dict(zip(trained, grads[len(named):]))
    return (
        Gradients(dict(zip(named, grads[: len(named)])), {n: found.get(n) for n in params}),
        upstream,
    )


def uses_torch_names(module: nn.Module, reference: nn.Module) -> bool:
    """True when the module's parameters are torch's, by name and shape."""
    own = {n: p.shape for n, p in module.named_parameters()}
    return own == {n: p.shape for n, p in reference.named_parameters()}


def directional_derivatives(
    subject: Subject, impl: Gradients, ref: Gradients, *, directions: int = 3
) -> list[tuple[float, float, float]]:
    """For random torch-layout directions V: (grad_impl . load(V), grad_torch . V, |V|_1).

    load(V) is what the implementation's weight loader makes of V; for a correct implementation
    and a linear loader both derivatives are equal. When every gradient element is within atol,
    they differ by at most atol * |V|_1.
    """
    case = subject.case
    pairs = []
    for k in range(directions):
        generator = torch.Generator().manual_seed(case.data_seed + 1000 + k)
        direction = {
            name: torch.randn(g.shape, generator=generator, dtype=torch.float64).to(g.dtype)
            for name, g in ref.params.items()
        }
        loaded = subject.spec.build(case)
        with torch.no_grad():
            subject.spec.load_weights(loaded, {n: v.to(case.device) for n, v in direction.items()})
        mapped = dict(loaded.named_parameters())
        along_impl = sum(
            float((impl.params[n].double().cpu() * mapped[n].detach().double().cpu()).sum())
            for n in impl.params if impl.params[n] is not None
        )
        along_torch = sum(
            float((ref.params[n].double() * direction[n].double()).sum()) for n in ref.params
        )
        l1 = sum(float(v.double().abs().sum()) for v in direction.values())
        pairs.append((along_impl, along_torch, l1))
    return pairs


def names(subject: OpSubject, inputs: OpInputs) -> list[str]:
    """The name of each of ``inputs.tensors()``: q, k, v, the gates, the initial state's parts."""
    family = subject.family_def
    found = ["q", "k", "v", *family.gates]
    if inputs.initial_state is not None:
        found += [f"initial_state.{part}" for part in family.state]
    return found


def upstream(outputs: OpOutputs, seed: int) -> list[Tensor]:
    """Random do and dht, one per output tensor (float64, then cast)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype)
            for t in outputs.named().values()]


def loss(outputs: OpOutputs, grads: list[Tensor]) -> Tensor:
    tensors = list(outputs.named().values())
    return sum((t * g.to(t.device)).sum() for t, g in zip(tensors, grads) if t.requires_grad)


def meaning(out: OpOutputs, subject: OpSubject, inputs: OpInputs) -> OpOutputs:
    """``out`` with its final state as it is compared (mLSTM's C and n times e^(m - m_ref), m
    the reference's, a constant): a loss on it is the same function of the inputs whatever
    stabiliser a form carries, or whether it lets gradients through it — the state's meaning
    is defined, its stabiliser is not."""
    family = subject.family_def
    if family.comparable is None or out.state is None:
        return out
    with torch.no_grad():
        anchor = call_op(family.reference, inputs.to("cpu"), family, final=True).state
    return replace(out, state=family.compared(out.state, tuple(
        a.to(s.device, s.dtype) for a, s in zip(anchor, out.state))))


def gradients(fn, subject: OpSubject, inputs: OpInputs, grads: list[Tensor] | None, *,
              chunk_size: int | None = None, state_needs_grad: bool = True,
              ) -> tuple[list[Tensor | None], list[Tensor]]:
    """d loss / d each input (None where none reached) of ``fn`` on leaf copies of ``inputs``,
    and the upstream gradients used (into the final state too when the op returns one, through
    what it means: ``meaning``). ``state_needs_grad`` False: the initial state a plain tensor,
    as a decode cache or a detached carried state is passed (its gradients None)."""
    leaves = inputs.leaves()
    if not state_needs_grad and leaves.initial_state is not None:
        leaves = replace(leaves, initial_state=tuple(s.detach() for s in leaves.initial_state))
    final = subject.final
    out = meaning(call_op(fn, leaves, subject.family_def, final=final, chunk_size=chunk_size),
                  subject, inputs)
    grads = upstream(out, subject.case.data_seed + 31) if grads is None else grads
    if not any(t.requires_grad for t in out.named().values()):
        raise NoGradient("no gradient reaches q, k, v, the gates or the initial state: the "
                         "outputs were computed without autograd")
    tensors = list(leaves.tensors())
    wanted = [t for t in tensors if t.requires_grad]
    found = iter(torch.autograd.grad(loss(out, grads), wanted, allow_unused=True))
    return [next(found) if t.requires_grad else None for t in tensors], grads


