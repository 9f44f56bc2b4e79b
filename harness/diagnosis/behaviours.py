"""Behaviours: mistakes that no single call shows — a layer that keeps state between calls,
draws dropout in eval mode, caches its weights, hands out one output buffer, changes its inputs,
or overflows where the reference stays finite. Each is a small experiment on the implementation
itself (several calls on one module, or one call at large inputs), compared with the family's
reference; a diagnosis tries them when no signature explains the failure."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from harness.core.case import Case
from harness.core.contract import Inputs, Outputs
from harness.core.spec import ImplSpec
from harness.core.subject import Subject, reference_weights

MATCH = 10.0  # within this many family tolerances counts as equal


def match_bound(spec: ImplSpec, case: Case) -> tuple[float, float]:
    """(atol, rtol) within which a diagnosis takes two results as equal: MATCH times the
    family's tolerance in the case's dtype, or the implementation's declared tolerance where
    that is larger (an int8 entry's error is not a mistake)."""
    atol, rtol = spec.family_def.tolerance(case.dtype)
    declared = None if spec.tolerance is None else spec.tolerance.get(case.dtype)
    if declared is not None:
        return max(MATCH * atol, declared.atol), max(MATCH * rtol, declared.rtol)
    return MATCH * atol, MATCH * rtol


@dataclass(frozen=True)
class Behaviour:
    """One mistake shown by an experiment.

    name: a short id, as a signature's; says: what the implementation does, completing "it
    ..."; hint: where to look; shows: runs the experiment on the implementation and its case
    (a module's Subject, or an op's OpSubject: harness.diagnosis.op_behaviours) and says
    whether the mistake shows; random: the experiment draws dropout, so on a small case it
    shows only by chance (its failing case is not shrunk: a script of a tiny case would not
    reproduce it reliably)."""

    name: str
    says: str
    hint: str
    shows: Callable[[Any], bool]
    random: bool = False


def close(a: Outputs, b: Outputs, subject: Subject) -> bool:
    atol, rtol = match_bound(subject.spec, subject.case)
    for name, want in b.named().items():
        got = a.named().get(name)
        if got is None or got.shape != want.shape:
            return False
        if not torch.allclose(got.double(), want.double(), atol=atol, rtol=rtol,
                              equal_nan=True):
            return False
    return True


def cloned(inputs: Inputs) -> Inputs:
    hx = inputs.hx
    hx = None if hx is None else tuple(h.clone() for h in hx) if isinstance(hx, tuple) \
        else hx.clone()
    return Inputs(inputs.x.clone(), inputs.lengths, hx)


def without_hx(inputs: Inputs) -> Inputs:
    return Inputs(inputs.x, inputs.lengths, None)


def keeps_state(subject: Subject) -> bool:
    """A second call without hx starts where the first call ended."""
    module, inputs = subject.build(), without_hx(subject.inputs())
    with torch.no_grad():
        first = subject.run(module, cloned(inputs)).detach()
        second = subject.run(module, cloned(inputs)).detach()
        carried = Inputs(inputs.x, inputs.lengths, first.state)
        return (not close(second, first, subject)
                and close(second, subject.run_reference(carried), subject))


def random_in_eval(subject: Subject) -> bool:
    """Two calls on the same inputs in eval mode differ (only where the case has dropout)."""
    if not subject.case.dropout:
        return False
    module, inputs = subject.build(), subject.inputs()
    module.eval()
    with torch.no_grad():
        first = subject.run(module, cloned(inputs)).detach()
        second = subject.run(module, cloned(inputs)).detach()
    return not close(first, second, subject)


def stale_weights(subject: Subject) -> bool:
    """After new weights are written through .data, the call still equals the old weights'."""
    module, inputs = subject.build(), subject.inputs()
    case, fam = subject.case, subject.family_def
    updated = reference_weights(case.with_(seed=case.seed + 1), fam)
    with torch.no_grad():
        before = subject.run(module, cloned(inputs)).detach()
        loaded = dict(subject.build(updated).named_parameters())
        own = dict(module.named_parameters())
        if not own or set(own) != set(loaded):
            return False
        for name, parameter in own.items():
            parameter.data.copy_(loaded[name].data)
        after = subject.run(module, cloned(inputs)).detach()
        old = subject.run_reference(inputs)
        new = subject.run_reference(inputs, subject.reference(updated))
    # judged only where the new weights change the reference's answer and the implementation
    # answers in its shapes (an empty batch, or a shape bug, says nothing about weights)
    return (not close(new, old, subject) and close(before, old, subject)
            and close(after, before, subject))


def shared_buffer(subject: Subject) -> bool:
    """The first call's result changes when the module is called again."""
    module = subject.build()
    with torch.no_grad():
        first = subject.run(module, subject.inputs())
        kept = [t.clone() for t in first.named().values()]
        subject.run(module, subject.inputs(salt=1))
    return any(not same(now, was) for now, was in zip(first.named().values(), kept))


def changes_inputs(subject: Subject) -> bool:
    """A call, with autograd or under no_grad, writes into the caller's x (its padded steps,
    which hold noise here, included) or hx."""
    module = subject.build()
    for mode in (torch.enable_grad, torch.no_grad):
        inputs = subject.inputs(pad_value=None)
        kept = cloned(inputs)
        with mode():
            subject.run(module, inputs)
        pairs = [(inputs.x, kept.x)]
        if inputs.hx is not None:
            pairs += list(zip(inputs.hx, kept.hx)) if isinstance(inputs.hx, tuple) \
                else [(inputs.hx, kept.hx)]
        if any(not same(a, b) for a, b in pairs):
            return True
    return False


def wears_out(subject: Subject, calls: int = 60) -> bool:
    """The same call (hx given) agrees with itself at first, and gives another result after
    many calls in one process."""
    module, inputs = subject.build(), subject.inputs()
    with torch.no_grad():
        first = subject.run(module, cloned(inputs)).detach()
        if not close(subject.run(module, cloned(inputs)).detach(), first, subject):
            return False  # not deterministic from the start: another behaviour
        for _ in range(calls):
            last = subject.run(module, cloned(inputs)).detach()
    return not close(last, first, subject)


def overflows(subject: Subject) -> bool:
    """At large inputs (x 30 to x 10^4, four draws each, with and without hx), NaN or inf
    where the reference is finite."""
    module = subject.build()
    for scale, salt, keep in itertools.product((30.0, 100.0, 1e3, 1e4), range(4), (True, False)):
        inputs = subject.inputs(scale=scale, salt=salt)
        inputs = inputs if keep else without_hx(inputs)
        with torch.no_grad():
            got = subject.run(module, cloned(inputs)).named()
            want = subject.run_reference(inputs).named()
        if any(bool((~got[n].isfinite() & want[n].isfinite()).any()) for n in want
               if n in got and got[n].shape == want[n].shape):
            return True
    return False


def drops_top_layer(subject: Subject) -> bool:
    """In training mode with dropout, the top layer's output is dropped too: its last step no
    longer equals the top layer's h_n (one direction, fixed length)."""
    case = subject.case
    if not case.dropout or case.bidirectional or case.lengths is not None or case.unbatched:
        return False
    module, inputs = subject.build(), subject.inputs()
    module.train()
    with torch.no_grad():
        out = subject.run(module, cloned(inputs), case=case.with_(training=True))
    last = out.output[:, -1] if case.batch_first else out.output[-1]  # (B, h_out)
    return not torch.allclose(last, out.h_n[-1])


def steps_otherwise(subject: Subject) -> bool:
    """Called one step at a time (T=1 calls, the final state carried as the next call's hx, as
    decoding and streaming call it), it computes otherwise than in one call over the same
    steps, which agrees with the reference (one direction, fixed lengths: the case's shape)."""
    case = subject.case.with_(bidirectional=False, lengths=None)
    subject = Subject(subject.spec, case)
    module, inputs = subject.build(), subject.inputs()
    time = 1 if case.batch_first and not case.unbatched else 0
    with torch.no_grad():
        want = subject.run_reference(inputs)
        if not close(subject.run(module, cloned(inputs)).detach(), want, subject):
            return False  # the whole call is wrong already: a signature's matter
        state, outputs = inputs.hx, []
        for t in range(case.seq_len):
            step = Inputs(inputs.x.narrow(time, t, 1).clone(), None, state)
            got = subject.run(module, step, case=case.with_(seq_len=1)).detach()
            got = Outputs(got.output.clone(), got.h_n.clone(),
                          None if got.c_n is None else got.c_n.clone())  # no shared buffer
            outputs.append(got.output)
            state = got.state
    stepped = Outputs(torch.cat(outputs, time), got.h_n, got.c_n)
    return not close(stepped, want, subject)


BEHAVIOURS = (
    Behaviour("state-kept-between-calls",
              "keeps the last call's final state and starts the next call (hx=None) from it",
              "each call without hx starts from zeros: do not store the final state on the "
              "module", keeps_state),
    Behaviour("dropout-in-eval", "gives another output on every call in eval mode",
              "dropout acts only in training mode: pass training=self.training to F.dropout "
              "(or use nn.Dropout)", random_in_eval, random=True),
    Behaviour("stale-weights",
              "still computes with the old weights after new ones are written into its "
              "parameters", "do not cache anything derived from the weights (fused or "
              "transposed copies) across calls, or rebuild it when they change (.data writes "
              "move no version counter)", stale_weights),
    Behaviour("dropout-after-last-layer", "drops the top layer's output too in training",
              "torch applies dropout between layers only: the last layer's output is not "
              "dropped (its last step equals h_n)", drops_top_layer, random=True),
    Behaviour("shared-output-buffer", "overwrites the result of an earlier call when called "
              "again", "return fresh tensors from each call, not a preallocated buffer",
              shared_buffer),
    Behaviour("inputs-modified", "writes into the caller's input or hx",
              "never update x or hx in place: copy the state before the loop", changes_inputs),
    Behaviour("wears-out", "changes its result after many calls in one process",
              "look for a process-wide cache, counter or buffer that fills up", wears_out),
    Behaviour("overflows", "returns NaN or inf at large inputs where the reference is finite",
              "an exponential overflows (tanh or sigmoid written with exp, an unclamped exp, a "
              "0 / 0 of two underflowing gates): use torch's activations or clamp",
              overflows),
    Behaviour("steps-otherwise",
              "computes a call of one step (T=1, as decoding and streaming call it) otherwise "
              "than the same steps inside one longer call",
              "a path taken only for one-step calls (a decoding fast path, a T == 1 branch) "
              "differs from the sequence path: make it compute the reference's step, or remove "
              "it", steps_otherwise),
)


STEPS = 8  # the experiments run on the case cut to this many steps: they are about calls


def short(case: Case) -> Case:
    """The case with at most STEPS steps (lengths cut to match)."""
    if case.seq_len <= STEPS:
        return case
    lengths = None if case.lengths is None else tuple(min(n, STEPS) for n in case.lengths)
    return case.with_(seq_len=STEPS, lengths=lengths)


def shown(spec: ImplSpec, case: Case) -> tuple[Behaviour, ...]:
    """The behaviours the implementation shows on ``case`` (cut to STEPS steps), run with an
    initial state given where it takes one (so a call does not depend on a default); an
    experiment that raises shows nothing."""
    case = short(case)
    given = case.with_(with_hx=True)
    return showing(BEHAVIOURS, Subject(spec, given if spec.why_not(given) is None else case))


def showing(behaviours: tuple[Behaviour, ...], subject) -> tuple[Behaviour, ...]:
    """Those of ``behaviours`` whose experiment shows on ``subject`` (one that raises shows
    nothing)."""
    found = []
    for behaviour in behaviours:
        try:
            if behaviour.shows(subject):
                found.append(behaviour)
        except Exception:
            continue
    return tuple(found)


def same(a: Tensor, b: Tensor) -> bool:
    """Bitwise the same values, NaN where NaN (torch.equal takes NaN as unequal to itself: an
    output holding NaN would look overwritten)."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())
