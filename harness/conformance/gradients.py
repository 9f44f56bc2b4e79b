"""Gradients of an implementation next to torch's, for the same weights and upstream gradients.

Backward passes are compared where users feel them: the gradient with respect to the input, the
initial state and every parameter, for random upstream gradients fed into output, h_n and c_n at
once (as PyTorch's own RNN tests do). Parameters are compared by name when the implementation uses
torch's names; otherwise through its weight loader: for a linear loader ``load``, the directional
derivative along ``load(V)`` must equal torch's along ``V`` for random directions V, which pins the
whole parameter gradient without knowing the implementation's layout.

A gradient torch's module has and the implementation lacks is never taken as zero: an
implementation whose outputs do not depend on its input, state or weights through autograd (a
forward under no_grad, a detached result, a runtime outside torch) fails with "no gradient
reaches ...", naming what the gradient does not reach.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.conformance.checks import CheckFailed, Tolerance
from harness.conformance.rounding import rounding_over
from harness.core.contract import Inputs, Outputs
from harness.core.subject import NEARBY, Subject, nudged


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


def require_graph(outputs: Outputs) -> None:
    """NoGradient unless some output is part of an autograd graph."""
    if not any(t.requires_grad for t in outputs.named().values()):
        raise NoGradient("no gradient reaches the input, hx or any parameter: the outputs were "
                         "computed without autograd (no_grad, detached, or outside torch)")


def backward(
    run: Callable[[Inputs], Outputs], module: nn.Module, inputs: Inputs, upstream: Upstream | None,
    *, seed: int,
) -> tuple[Gradients, Upstream]:
    """Run forward on leaf copies of the inputs, backward from ``upstream`` (drawn from ``seed``
    when None), and collect every gradient (None where none reached). NoGradient when the
    outputs are not part of a graph at all."""
    leaves = leaf_inputs(inputs)
    outputs = run(leaves)
    upstream = upstream or Upstream.like(outputs, seed=seed)
    require_graph(outputs)
    named = {"input": leaves.x, **state_leaves(leaves)}
    params = dict(module.named_parameters())
    targets = [*named.values(), *params.values()]
    grads = torch.autograd.grad(upstream.loss(outputs), targets, allow_unused=True)
    return (
        Gradients(dict(zip(named, grads[: len(named)])), dict(zip(params, grads[len(named):]))),
        upstream,
    )


def require_gradients(got: Gradients, want: Gradients) -> None:
    """NoGradient naming everything torch's module gives a gradient and the implementation does
    not (the input, h_0, c_0, parameters by name; any parameter at all for other layouts)."""
    missing = got.missing(want)
    if missing:
        named = {"input": "the input", "h_0": "h_0", "c_0": "c_0"}
        raise NoGradient(f"no gradient reaches {', '.join(named.get(n, n) for n in missing)}")
    torch_has = any(g is not None for g in want.params.values())
    if torch_has and not any(g is not None for g in got.params.values()):
        raise NoGradient(f"no gradient reaches any parameter ({len(got.params)} parameters: "
                         + (", ".join(got.params) or "none") + ")")


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


def padded_mask(subject: Subject) -> Tensor | None:
    """True at padded steps of the input, in the case's layout (T, B, 1) or (B, T, 1)."""
    case = subject.case
    if case.lengths is None:
        return None
    lengths = torch.tensor(case.lengths)
    padded = torch.arange(case.seq_len).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
    padded = padded.t() if case.batch_first else padded
    return padded.unsqueeze(-1)


def match_reference(subject: Subject, check, inputs: Inputs, module: nn.Module | None = None
                    ) -> None:
    """Outputs, final states and the gradients of the same random upstream gradients with
    respect to the input, the initial state and every parameter equal the reference's:
    parameters by name when the module uses the reference's names, else by directional
    derivatives through the weight loader."""
    case = subject.case
    module = subject.build(gradients=True) if module is None else module
    reference = subject.reference()
    got, upstream = backward(lambda i: subject.run(module, i), module, inputs, None,
                             seed=case.data_seed)
    want, _ = backward(lambda i: subject.run_reference(i, reference), reference,
                       inputs.to("cpu"), upstream, seed=case.data_seed)
    require_gradients(got, want)
    tol = check.tolerance_of("gradient")  # see harness.conformance.tolerance
    twins = functools.cache(lambda: twin_gradients(subject, reference, inputs.to("cpu"),
                                                   upstream))

    def rounding(kind: str, name: str, expected: Tensor):
        return lambda: rounding_over(expected, [(low[kind][name], high[kind][name])
                                                for low, high in twins()])

    for name, expected in want.wrt.items():
        check.close(f"d loss / d {name}", got.wrt[name], expected, tol, measure="gradient",
                    rounding=rounding("wrt", name, expected))
    if uses_torch_names(module, reference):
        for name, expected in want.params.items():
            check.close(f"d loss / d {name}", got.params[name], expected, tol,
                        measure="gradient", rounding=rounding("params", name, expected))
        return
    for along_impl, along_ref, l1 in directional_derivatives(subject, got, want):
        check.close("parameter gradient along a random direction (through the weight loader)",
                    torch.tensor(along_impl), torch.tensor(along_ref), Tolerance(tol.atol * l1))


def twin_gradients(subject: Subject, reference: nn.Module, inputs: Inputs, upstream: Upstream
                   ) -> list[tuple[dict, dict]]:
    """The reference's gradients in the case's dtype and in the other precision, at the case's
    point (the first pair's case-dtype side is recomputed) and at NEARBY nudged points: the
    samples of the gradients' rounding (harness.conformance.rounding)."""
    case = subject.case
    other = "float32" if case.dtype == "float64" else "float64"
    state = reference.state_dict()
    points = [(state, inputs)]
    for k in range(NEARBY):
        generator = torch.Generator().manual_seed(case.data_seed + 104729 * (k + 1))
        hx = inputs.hx
        hx = (None if hx is None else tuple(nudged(h, generator) for h in hx)
              if isinstance(hx, tuple) else nudged(hx, generator))
        points.append(({n: nudged(v, generator) for n, v in state.items()},
                       Inputs(nudged(inputs.x, generator), inputs.lengths, hx)))
    return [tuple(gradients_in(subject, dtype, point, moved, upstream, reference.training)
                  for dtype in (case.dtype, other)) for point, moved in points]


def gradients_in(subject: Subject, dtype: str, state: dict[str, Tensor], inputs: Inputs,
                 upstream: Upstream, training: bool) -> dict[str, dict[str, Tensor | None]]:
    """The reference's gradients in ``dtype``, holding ``state``, for ``upstream``."""
    case = subject.case.with_(dtype=dtype, device="cpu")
    family = subject.family_def
    module = family.build_reference(**case.torch_kwargs(),
                                    **family.constructor_kwargs(case.proj_size),
                                    dtype=case.torch_dtype)
    module.load_state_dict({k: v.to(case.torch_dtype) for k, v in state.items()})
    module.train(training)
    cast = Upstream(*(None if t is None else t.to(case.torch_dtype)
                      for t in (upstream.output, upstream.h_n, upstream.c_n)))
    found, _ = backward(lambda i: subject.run_reference(i, module, case=case), module,
                        inputs.to(dtype=case.torch_dtype), cast, seed=case.data_seed)
    return {"wrt": found.wrt, "params": found.params}
