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
reaches ...", naming what the gradient does not reach. (One backward pass, run and read, is
harness.core.backprop's: the diagnosis reads the same gradients.)
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from harness.conformance.calls import changed_in_place, twice
from harness.conformance.checks import CheckFailed, Tolerance
from harness.conformance.rounding import rounding_over
from harness.core.backprop import (  # noqa: F401 (leaf_inputs, require_graph: the suites')
    Gradients,
    NoGradient,
    Upstream,
    backward,
    directional_derivatives,
    leaf_inputs,
    require_graph,
    state_leaves,
    uses_torch_names,
)
from harness.core.contract import Inputs, Outputs
from harness.core.failed import Explained
from harness.core.subject import NEARBY, Subject, nudged


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


def padded_mask(subject: Subject) -> Tensor | None:
    """True at padded steps of the input, in the case's layout (T, B, 1) or (B, T, 1)."""
    case = subject.case
    if case.lengths is None:
        return None
    lengths = torch.tensor(case.lengths)
    padded = torch.arange(case.seq_len).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
    padded = padded.t() if case.batch_first else padded
    return padded.unsqueeze(-1)


def match_reference(subject: Subject, check, inputs: Inputs, module: nn.Module | None = None,
                    *, inputs_need_grad: bool = True, frozen: bool = False,
                    calls: int = 1, state_only: bool = False, in_place: bool = False) -> None:
    """Outputs, final states and the gradients of the same random upstream gradients with
    respect to the input, the initial state and every parameter equal the reference's:
    parameters by name when the module uses the reference's names, else by directional
    derivatives through the weight loader (``inputs_need_grad`` False: the parameters' only,
    the inputs needing no gradient, as a training batch does; ``frozen``: every parameter of
    both modules needing none, as a frozen encoder's, so the input's and state's only;
    ``calls`` 2: both modules called ``twice`` in one graph; ``state_only``: the initial
    state needing a gradient and the input none, as a tuned h_0's; ``in_place``: the output
    ``changed_in_place`` before the loss, the implementation's: the reference's gradients are
    the same without the change, which its own backward may refuse)."""
    case = subject.case
    module = subject.build(gradients=True) if module is None else module
    reference = subject.reference()
    if frozen:
        module.requires_grad_(False)
        reference.requires_grad_(False)
    repeat = twice if calls == 2 else (lambda run: run)
    change = changed_in_place if in_place else (lambda run: run)  # the implementation's alone
    got, upstream = backward(change(repeat(lambda i: subject.run(module, i))), module, inputs,
                             None,
                             seed=case.data_seed, inputs_need_grad=inputs_need_grad,
                             state_only=state_only)
    want, _ = backward(repeat(lambda i: subject.run_reference(i, reference)), reference,
                       inputs.to("cpu"), upstream, seed=case.data_seed,
                       inputs_need_grad=inputs_need_grad, state_only=state_only)
    require_gradients(got, want)
    tol = check.tolerance_of("gradient")  # see harness.conformance.tolerance
    twins = functools.cache(lambda: twin_gradients(subject, reference, inputs.to("cpu"),
                                                   upstream))

    def rounding(kind: str, name: str, expected: Tensor):
        if calls != 1:  # the twins are one call's: no rounding measured for two
            return None
        return lambda: rounding_over(expected, [(low[kind][name], high[kind][name])
                                                for low, high in twins()])

    for name, expected in want.wrt.items():
        check.close(f"d loss / d {name}", got.wrt[name], expected, tol, measure="gradient",
                    rounding=rounding("wrt", name, expected))
    if frozen:
        return
    if uses_torch_names(module, reference):
        for name, expected in want.params.items():
            check.close(f"d loss / d {name}", got.params[name], expected, tol,
                        measure="gradient", rounding=rounding("params", name, expected))
        return
    for along_impl, along_ref, l1 in directional_derivatives(subject, got, want):
        check.close("parameter gradient along a random direction (through the weight loader)",
                    torch.tensor(along_impl), torch.tensor(along_ref), Tolerance(tol.atol * l1))


OVERFLOWING_BACKWARD = (
    "its gradients are NaN or inf at an extreme where the reference's are finite, its outputs "
    "finite: some expression's derivative overflows there — a sigmoid written 1 / (1 + e^-x) "
    "(use torch.sigmoid), log(sigmoid(x)) (use F.logsigmoid), a torch.where whose branch not "
    "taken overflows (its zero gradient times inf is NaN: compute that branch on clamped values)")


def finite_like(check, what: str, found: Tensor, expected: Tensor | None, *,
                gradient: bool = False, at: str = "") -> None:
    """``found`` is finite wherever ``expected`` (the reference's; None: everywhere) is. A
    gradient that is not fails as ``Explained`` (OVERFLOWING_BACKWARD), ``at`` naming the
    extreme. Where the shapes differ, positions cannot be matched: found is held finite
    everywhere if expected is, and not judged otherwise (the shape is another check's)."""
    where = None
    if expected is not None:
        finite = torch.isfinite(expected)
        if found.shape == expected.shape:
            where = finite
        elif not bool(finite.all()):
            return
    try:
        check.finite(what, found, where)
    except CheckFailed as failure:
        if not gradient:
            raise
        raise Explained(str(failure), pattern="overflowing backward",
                        sentence=OVERFLOWING_BACKWARD, at=at) from None


def finite_where_the_reference_is(subject: Subject, check, label: str,
                                  weights: dict[str, Tensor], inputs: Inputs) -> None:
    """With ``weights`` and ``inputs`` at the extreme ``label``, the outputs and every gradient
    the reference has (with respect to the input, the initial state, every parameter) are
    finite wherever the reference's are (``finite_like``). A forward pass can be right there
    and its backward NaN: a sigmoid written 1 / (1 + e^-x), whose e^-x overflows to inf; a
    torch.where whose branch not taken is inf / inf (its zero gradient times NaN is NaN).
    Parameters in another layout than torch's are held finite everywhere, when the reference's
    are."""
    case = subject.case
    module = subject.build(weights, gradients=True)
    reference = subject.reference(weights)
    with torch.no_grad():
        outputs = subject.run(module, inputs).named()
        expected = subject.run_reference(inputs, reference).named()
    for name, found in outputs.items():
        finite_like(check, f"{name}, {label}", found, expected.get(name))
    got, upstream = backward(lambda i: subject.run(module, i), module, inputs, None,
                             seed=case.data_seed)
    want, _ = backward(lambda i: subject.run_reference(i, reference), reference,
                       inputs.to("cpu"), upstream, seed=case.data_seed)
    require_gradients(got, want)
    pairs = [(name, got.wrt[name], grad) for name, grad in want.wrt.items() if grad is not None]
    if uses_torch_names(module, reference):
        pairs += [(name, got.params[name], grad) for name, grad in want.params.items()
                  if grad is not None]
    elif all(g is None or bool(torch.isfinite(g).all()) for g in want.params.values()):
        pairs += [(name, g, None) for name, g in got.params.items() if g is not None]
    for name, found, grad in pairs:
        if found is not None:
            finite_like(check, f"d loss / d {name}, {label}", found, grad, gradient=True,
                        at=label)


MASK_REDRAWN = (
    "its gradient in training with dropout is not the gradient of the forward pass it follows, "
    "and in eval mode it is: the backward pass used other dropout masks than the forward — "
    "activation checkpointing that recomputes without replaying torch's RNG state "
    "(torch.utils.checkpoint with preserve_rng_state=False), or a mask drawn again in a custom "
    "backward; keep the forward's masks (save them, or replay the RNG state)")


def follows_the_forward(subject: Subject, check) -> None:
    """Training with dropout: the input's gradient along a random direction equals the central
    difference of the training loss along it, every call after one torch.manual_seed (the same
    masks), in the case's (float64) dtype. Where it does not and it does in eval mode, the
    failure is ``Explained`` (MASK_REDRAWN): the backward pass saw other masks than the
    forward."""
    case = subject.case
    module, inputs = subject.build(gradients=True), subject.inputs()
    found = directional_error(subject, module.train(), inputs)
    label = ("d loss / d input along a random direction, against the training loss's central "
             "difference (one seed for every call)")
    try:
        check.close(label, *found)
    except CheckFailed as failure:
        predicted, difference, bound = directional_error(subject, module.eval(), inputs,
                                                         case=case.with_(training=False))
        if float((predicted - difference).abs().max()) <= bound.atol:
            raise Explained(str(failure), pattern="dropout mask redrawn in backward",
                            sentence=MASK_REDRAWN) from None
        raise


def directional_error(subject: Subject, module: nn.Module, inputs: Inputs, *,
                      case=None) -> tuple[Tensor, Tensor, Tolerance]:
    """(the input's gradient along a seeded random direction, the loss's central difference
    along it, their bound): every call of ``module`` after torch.manual_seed(the case's seed)."""
    case = case or subject.case.with_(training=True)

    def seeded(i: Inputs) -> Outputs:
        with torch.random.fork_rng(devices=[] if case.device == "cpu" else None):
            torch.manual_seed(case.data_seed)
            return subject.run(module, i, case=case)

    got, upstream = backward(seeded, module, inputs, None, seed=case.data_seed)
    if got.wrt["input"] is None:
        raise NoGradient("no gradient reaches the input")
    generator = torch.Generator().manual_seed(case.data_seed + 7)
    direction = torch.randn(inputs.x.shape, generator=generator, dtype=torch.float64).to(
        inputs.x)  # the input's own layout and dtype
    step = 1e-6

    def loss_at(shift: float) -> Tensor:
        with torch.no_grad():
            moved = Inputs(inputs.x + shift * direction, inputs.lengths, inputs.hx)
            return upstream.loss(seeded(moved)).double().cpu()

    difference = (loss_at(step) - loss_at(-step)) / (2 * step)
    predicted = (got.wrt["input"].double() * direction.double()).sum().cpu()
    return (predicted.reshape(1), difference.reshape(1),
            Tolerance(1e-6 * max(1.0, float(difference.abs()))))


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
