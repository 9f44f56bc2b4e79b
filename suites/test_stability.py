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
from harness.core.subject import Subject

SUITE = SuiteInfo(order=90, quick=False, autograd=True)

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


EDGE = 1e30  # gradients this large are at float32's edge: rounding decides whether they overflow


@pytest.mark.time_limit(3)
@cases(exploding_grid)
def test_large_recurrent_weights_finite_or_flagged(subject, check):
    """Parameter gradients of a loss on the last step: finite in float32, or non-finite where
    torch's module on the same device and dtype has non-finite ones too (then flagged), or where
    the exact (float64) gradients are at float32's edge — in this chaotic regime rounding alone
    decides how large float32's gradients grow, so no flag computed elsewhere is compared.
    Finite gradients whose float32 norm is finite clip to the bound and keep their direction;
    a norm past float32's range cannot be clipped by clip_grad_norm_ at all (as torch's)."""
    case = subject.case
    flags = {}
    for who in ("impl", "torch"):
        if who == "impl":
            module, inputs = subject.build(gradients=True), subject.inputs()
            out = subject.run(module, inputs)
        else:  # torch's module where the implementation runs: cuDNN on CUDA
            module = subject.reference(device=case.device, gradients=True)
            out = subject.run_reference(subject.inputs(), module, device=case.device)
        grads = last_step_gradients(out, module, case, who)
        check.holds(f"{who}: parameters reached", bool(grads),
                    f"no gradient reaches any parameter of the {who}")
        flags[who] = not all(torch.isfinite(g).all() for g in grads)
        if who == "impl" and not flags[who]:
            clips(check, module, grads)
    check.metrics.update(flagged=flags["impl"], torch_nonfinite=flags["torch"])
    if flags["impl"] and not flags["torch"]:
        exact = exact_gradient_size(subject)
        check.metrics.update(exact_max_abs=exact)
        check.holds("non-finite flag", exact > EDGE,
                    f"gradients are non-finite where torch's stay finite, and the exact ones "
                    f"are far inside float32's range (float64 largest |gradient| {exact:.3g})")
        check.note(f"flagged at float32's edge: exact gradients up to {exact:.3g}")
    elif flags["impl"]:
        check.note("flagged: gradients are non-finite in float32, as torch's are")


def last_step_gradients(out, module, case, who: str) -> list:
    """The parameters' gradients of the sum of the last step's output."""
    last = out.output[-1] if not case.batch_first else out.output[:, -1]
    if not last.requires_grad:
        raise NoGradient(f"no gradient reaches any parameter: the {who} output was computed "
                         "without autograd")
    last.sum().backward()
    return [p.grad for p in module.parameters() if p.grad is not None]


def clips(check, module, grads) -> None:
    """clip_grad_norm_ brings finite gradients to the bound without turning them; a float32
    norm past float32's range is noted (clip_grad_norm_ cannot clip such gradients for any
    implementation) and not judged."""
    unclipped = [g.detach().clone() for g in grads]
    exact = float(torch.cat([g.double().flatten() for g in unclipped]).norm())
    check.metrics.update(grad_norm_float64=exact)
    if not math.isfinite(float(torch.cat([g.flatten() for g in unclipped]).norm())):
        check.note(f"not clipped: the float32 norm of these finite gradients overflows "
                   f"(their float64 norm: {exact:.3g}); clip_grad_norm_ cannot clip them")
        return
    before = float(torch.nn.utils.clip_grad_norm_(list(module.parameters()), CLIP))
    after = float(torch.cat([p.grad.double().flatten() for p in module.parameters()
                             if p.grad is not None]).norm())
    check.metrics.update(grad_norm=before, clipped_norm=after)
    check.holds("clipped norm", after <= CLIP * (1 + 1e-5),
                f"clip_grad_norm_({CLIP}) left a gradient norm of {after:.6g}")
    turned = 1 - cosine(unclipped, [p.grad for p in module.parameters() if p.grad is not None])
    check.holds("clipped direction", turned <= 1e-6,
                f"clipping turned the gradient: 1 - cosine = {turned:.3g}")


def exact_gradient_size(subject) -> float:
    """The largest |gradient| of the same loss through the reference in float64 (the exact
    answer, up to float64's own rounding)."""
    case = subject.case.with_(dtype="float64")
    exact = Subject(subject.spec, case)
    weights = {k: v.double() for k, v in subject.weights().items()}
    module = exact.reference(weights)
    out = exact.run_reference(subject.inputs().to("cpu", torch.float64), module)
    grads = last_step_gradients(out, module, case, "reference")
    return float(max(g.abs().max() for g in grads))
