"""Behaviours of ops: mistakes that no single call on fresh inputs shows — an op that writes
into the caller's tensors, hands out one output buffer, reads non-contiguous inputs as if they
were contiguous, reads scratch memory it never wrote, starts a call from the state the last
one ended in, overflows where the reference is finite, or sends no gradient back from its
final state. Each is a small experiment on
the op itself, compared with the family's reference (the op counterpart of
harness.diagnosis.behaviours); the op diagnosis tries them when no signature explains the
failure.
"""

from __future__ import annotations

import dataclasses

import torch

from harness.core.op_case import OpCase
from harness.core.op_subject import OpInputs, OpOutputs, OpSubject
from harness.core.scratch import poisoned_scratch
from harness.core.spec import ImplSpec
from harness.diagnosis.behaviours import MATCH, Behaviour, same, showing

STEPS = 40  # the experiments run on the case cut to this many steps (more than one chunk of 32)


def close(subject: OpSubject, got: OpOutputs, want: OpOutputs) -> bool:
    """``got`` equals ``want`` within MATCH times the family's tolerance (NaN where NaN)."""
    atol, rtol = subject.family_def.tolerance(subject.case.dtype)
    got = subject.comparable(got, want).named()
    for name, expected in want.named().items():
        mine = got.get(name)
        if mine is None or mine.shape != expected.shape:
            return False
        if not torch.allclose(mine.detach().cpu().double(), expected.double(), equal_nan=True,
                              atol=MATCH * atol, rtol=MATCH * rtol):
            return False
    return True


def copies(inputs: OpInputs) -> OpInputs:
    """Fresh copies of every tensor of a call (cu_seqlens too): what the caller keeps."""
    cu = None if inputs.cu_seqlens is None else inputs.cu_seqlens.clone()
    return dataclasses.replace(inputs.rebuilt(t.clone() for t in inputs.tensors()),
                               cu_seqlens=cu)


def everything(inputs: OpInputs) -> list[torch.Tensor]:
    return [*inputs.tensors(), *(() if inputs.cu_seqlens is None else (inputs.cu_seqlens,))]


def changes_inputs(subject: OpSubject) -> bool:
    """The call writes into q, k, v, a gate, the initial state or cu_seqlens."""
    inputs = subject.inputs()
    kept = copies(inputs)
    with torch.no_grad():
        subject.run(inputs)
    return any(not same(now, was) for now, was in zip(everything(inputs), everything(kept)))


def shared_buffer(subject: OpSubject) -> bool:
    """What the first call returned changes when the op is called again on other inputs."""
    with torch.no_grad():
        first = subject.run(subject.inputs())
        kept = [t.clone() for t in first.named().values()]
        subject.run(subject.inputs(salt=1))
    return any(not same(now, was) for now, was in zip(first.named().values(), kept))


def ignores_strides(subject: OpSubject) -> bool:
    """Contiguous inputs give the reference's answer; the same values as transposed views (as
    an attention layer leaves them) do not."""
    inputs = subject.inputs()
    with torch.no_grad():
        want = subject.run_reference(inputs, final=subject.final)
        plain = subject.run(copies(inputs))
        views = subject.run(inputs.strided())
    return close(subject, plain, want) and not close(subject, views, want)


def reads_unwritten(subject: OpSubject) -> bool:
    """With the memory torch.empty hands out filled with NaN during the call, the op returns
    NaN where, with it filled with zeros, it returns numbers: it reads memory it never wrote
    (two fills: what freed memory happened to hold does not matter)."""
    inputs = subject.inputs()
    with torch.no_grad():
        with poisoned_scratch(0.0):
            plain = subject.run(copies(inputs))
        with poisoned_scratch():
            poisoned = subject.run(copies(inputs))
    return any(bool((now.isnan() & was.isfinite()).any()) for now, was in
               zip(poisoned.named().values(), plain.named().values())
               if now.shape == was.shape)


def keeps_state(subject: OpSubject) -> bool:
    """A call without an initial state starts where the op's previous call ended: it equals
    the reference started from the previous call's final state, and not from zeros. Finite
    results only: an op that returns NaN would match a reference started from its NaN state."""
    inputs = dataclasses.replace(subject.inputs(), initial_state=None)
    with torch.no_grad():
        before = subject.run(copies(inputs), final=True)
        second = subject.run(copies(inputs), final=False)
        carried = subject.run_reference(dataclasses.replace(inputs, initial_state=before.state),
                                        final=False)
        fresh = subject.run_reference(inputs, final=False)
    finite = all(bool(t.isfinite().all()) for t in (*before.state, second.o))
    return finite and close(subject, second, carried) and not close(subject, second, fresh)


def overflows(subject: OpSubject) -> bool:
    """The op returns NaN or inf where the reference, on the same inputs, is finite."""
    inputs = subject.inputs()
    with torch.no_grad():
        got = subject.run(copies(inputs), final=subject.final)
        want = subject.run_reference(inputs, final=subject.final)
    got = subject.comparable(got, want).named()
    return any(name in got and got[name].shape == value.shape
               and bool((~got[name].detach().cpu().isfinite() & value.isfinite()).any())
               for name, value in want.named().items())


def through_final_state(subject: OpSubject, run) -> list[torch.Tensor | None]:
    """The gradients of q, k, v and the gates for a loss on the final state alone (o unused:
    fla's dht with do = 0), from ``run(inputs) -> OpOutputs``; all None where the final state
    carries no gradient at all."""
    leaves = subject.inputs().leaves()
    wrt = [leaves.q, leaves.k, leaves.v, *leaves.gates]
    state = run(leaves).state
    generator = torch.Generator().manual_seed(subject.case.data_seed + 17)
    loss = sum((part * torch.randn(part.shape, generator=generator, dtype=torch.float64)
                .to(part.dtype)).sum() for part in state)
    if not loss.requires_grad:
        return [None] * len(wrt)
    return list(torch.autograd.grad(loss, wrt, allow_unused=True))


def drops_state_gradient(subject: OpSubject) -> bool:
    """The final state equals the reference's, and a gradient arriving only through it reaches
    none of q, k, v and the gates (they get none, or zeros), where in the reference it
    reaches them."""
    if not subject.spec.capabilities.autograd or not subject.final:
        return False
    inputs = subject.inputs()
    with torch.no_grad():
        if not close(subject, subject.run(copies(inputs), final=True),
                     subject.run_reference(inputs)):
            return False  # a wrong state: its gradient says nothing more
    got = through_final_state(subject, lambda leaves: subject.run(leaves, final=True))
    want = through_final_state(subject, subject.run_reference)

    def reaches(grads) -> bool:
        return any(g is not None and bool(g.abs().max() > 0) for g in grads)

    return reaches(want) and not reaches(got)


BEHAVIOURS = (
    Behaviour("inputs-modified", "writes into the caller's q, k, v, gates, initial state or "
              "cu_seqlens", "never scale, normalise or cast the caller's tensors in place: "
              "q * scale, not q.mul_(scale); copy the initial state before updating it",
              changes_inputs),
    Behaviour("shared-output-buffer", "overwrites the result of an earlier call when called "
              "again", "return fresh tensors from each call, not a buffer kept between calls",
              shared_buffer),
    Behaviour("strides-ignored", "reads non-contiguous inputs as if they were contiguous",
              "index q, k, v, the gates and the state with their strides, or call "
              ".contiguous() before handing raw pointers to a kernel", ignores_strides),
    Behaviour("reads-unwritten-memory", "reads memory it never wrote (NaN comes out where "
              "what torch.empty allocates starts as NaN)",
              "write every element of what torch.empty / empty_like / new_empty allocates "
              "(the tail chunk, empty sequences) or allocate with zeros before accumulating",
              reads_unwritten),
    Behaviour("state-kept-between-calls", "starts a call without an initial state from the "
              "state the previous call ended in", "each call without initial_state starts "
              "from zeros; do not keep the final state between calls", keeps_state),
    Behaviour("overflows", "returns NaN or inf where the reference is finite",
              "an exponential overflows: e^(b_t - b_j) taken before the causal mask, or the "
              "decays factored as e^(b_t) e^(-b_j) over a chunk whose cumulative log decay "
              "passes the dtype's log max (88 in float32); mask with -inf before the "
              "exponential and exponentiate segment sums (every exponent <= 0)", overflows),
    Behaviour("final-state-gradient-dropped", "sends no gradient from the final state back to "
              "q, k, v and the gates (the loss's dht is lost)", "the final state is returned "
              "detached, or the backward takes no dht: a model that trains through the state "
              "(chunked training, a cache) needs its gradient", drops_state_gradient),
)


def short(case: OpCase) -> OpCase:
    """The case cut to STEPS steps (a variable-length batch keeps its sequences)."""
    if case.lengths is not None or case.seq_len <= STEPS:
        return case
    return dataclasses.replace(case, seq_len=STEPS)


FALLBACK = "overflows"  # NaN is where many mistakes end (unwritten memory read, ...): named
# only where no other behaviour shows


def shown(spec: ImplSpec, case: OpCase) -> tuple[Behaviour, ...]:
    """The behaviours the op shows on ``case`` (cut to STEPS steps), "overflows" only where no
    other does; an experiment that raises shows nothing."""
    subject = OpSubject(spec, short(case))
    found = showing(tuple(b for b in BEHAVIOURS if b.name != FALLBACK), subject)
    return found or showing(tuple(b for b in BEHAVIOURS if b.name == FALLBACK), subject)
