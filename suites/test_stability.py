"""stability: how gradients flow back through time. ||dL/dh_t|| over 200 steps at torch's
initialisation and at recurrent spectral radii 0.5, 1.0, 1.5 — measured, recorded, and held to
torch's curve for the same weights; with large recurrent weights at T up to 1000, gradients stay
finite in float32 or the case is flagged, and clip_grad_norm_ restores the bound without turning
the gradient."""

from __future__ import annotations

import math

import pytest
import torch

from harness.conformance.checks import Tolerance
from harness.conformance.gradients import NoGradient
from harness.conformance.plugin import cases
from harness.conformance.stability import RADII, STANDARD, cosine, gradient_curve, init_name
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=90, autograd=True)

CLIP = 1.0


def curve_grid(fam):
    return [STANDARD.with_(radius=r) for r in RADII.values()]


def run_impl(subject):
    return lambda module, inputs, case: subject.run(module, inputs, case=case)


def run_torch(subject):
    return lambda module, inputs, case: subject.run_reference(inputs, module, case=case)


@pytest.mark.time_limit(3)
@cases(curve_grid)
def test_gradient_norms_over_time(subject, check):
    case = subject.case
    inputs = subject.inputs()
    curve = gradient_curve(run_impl(subject), subject.build(gradients=True), case, inputs,
                           seed=case.data_seed)
    torch_curve = gradient_curve(run_torch(subject), subject.reference(), case.with_(device="cpu"),
                                 inputs.to("cpu"), seed=case.data_seed)
    check.metrics.update(init=init_name(case), norms=list(curve.norms), rate=curve.rate,
                         vanish_lag=curve.vanish_lag, nonfinite=curve.nonfinite)
    unreached = curve.unreached_lags(torch_curve)
    if unreached:
        check.fail(f"no gradient reaches h_t at {len(unreached)} of {case.seq_len} steps where "
                   f"torch's does (first at lag {unreached[0]}: the state is cut from the graph)")
    check.holds("non-finite flag", curve.nonfinite == torch_curve.nonfinite,
                f"non-finite gradients: {curve.nonfinite}; torch's: {torch_curve.nonfinite}")
    # Compare wherever either is well above float32's underflow (a gradient that does not reach
    # a step at all, norm 0, is as wrong as a different one); below 1e-30 both may underflow.
    pairs = [(a, b) for a, b in zip(curve.norms, torch_curve.norms)
             if math.isfinite(a) and math.isfinite(b) and max(a, b) > 1e-30]
    got, want = (torch.tensor(v, dtype=torch.float64).clamp(min=1e-300)
                 for v in (zip(*pairs) if pairs else ((), ())))
    check.close("log ||dL/dh_t|| vs torch's (steps above float32's underflow)", got.log(),
                want.log(), Tolerance(1e-3))


def exploding_grid(fam):
    large = STANDARD.with_(radius=3.0, input_size=4, hidden_size=16)
    return [large, large.with_(seq_len=1000)]


@pytest.mark.time_limit(3)
@cases(exploding_grid)
def test_large_recurrent_weights_finite_or_flagged(subject, check):
    """Parameter gradients of a loss on the last step: finite in float32, or non-finite exactly
    where torch's are too (then flagged); finite ones clip to the bound and keep their
    direction."""
    case = subject.case
    flags = {}
    for who, module, run in (("impl", subject.build(gradients=True), subject.run),
                             ("torch", subject.reference(), None)):
        inputs = subject.inputs() if who == "impl" else subject.inputs().to("cpu")
        out = run(module, inputs) if run else subject.run_reference(inputs, module)
        last = out.output[-1] if not case.batch_first else out.output[:, -1]
        if not last.requires_grad:
            raise NoGradient(f"no gradient reaches any parameter: the {who} output was "
                             "computed without autograd")
        last.sum().backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        check.holds(f"{who}: parameters reached", bool(grads),
                    f"no gradient reaches any parameter of the {who}")
        flags[who] = not all(torch.isfinite(g).all() for g in grads)
        if who == "impl" and not flags[who]:
            unclipped = [g.detach().clone() for g in grads]
            before = float(torch.nn.utils.clip_grad_norm_(list(module.parameters()), CLIP))
            if not math.isfinite(before):  # finite gradients whose float32 norm overflows
                exact = float(torch.cat([g.double().flatten() for g in unclipped]).norm())
                check.fail(f"clip_grad_norm_({CLIP}) computed a norm of {before} for finite "
                           f"gradients (their float64 norm: {exact:.3g}, past float32's range)")
            after = float(torch.cat([p.grad.double().flatten() for p in module.parameters()
                                     if p.grad is not None]).norm())
            check.metrics.update(grad_norm=before, clipped_norm=after)
            check.holds("clipped norm", after <= CLIP * (1 + 1e-5),
                        f"clip_grad_norm_({CLIP}) left a gradient norm of {after:.6g}")
            turned = 1 - cosine(unclipped, [p.grad for p in module.parameters()
                                            if p.grad is not None])
            check.holds("clipped direction", turned <= 1e-6,
                        f"clipping turned the gradient: 1 - cosine = {turned:.3g}")
    check.metrics.update(flagged=flags["impl"], torch_nonfinite=flags["torch"])
    check.holds("non-finite flag", not (flags["impl"] and not flags["torch"]),
                "gradients are non-finite where torch's stay finite")
    if flags["impl"]:
        check.note("flagged: gradients are non-finite in float32, as torch's are")
