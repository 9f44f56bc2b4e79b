"""How a gradient check calls a module before its one backward pass, beside the plain call:
twice in one graph (a weight-shared encoder), or with its output changed in place before the
loss (a residual, out += x). Both leave the gradients the reference gives; an implementation
that keeps a workspace on the module, or its outputs on ctx, does not."""

from __future__ import annotations

from collections.abc import Callable

from harness.core.contract import Inputs, Outputs


def twice(run: Callable[[Inputs], Outputs]) -> Callable[[Inputs], Outputs]:
    """``run`` called twice in one graph — on the inputs, then on -0.7 times them (the same
    lengths and hx) — and the two results summed: one backward pass then goes through both
    calls of one module, as a weight-shared encoder's does."""
    def both(inputs: Inputs) -> Outputs:
        first = run(inputs)
        second = run(Inputs(inputs.x * -0.7, inputs.lengths, inputs.hx))
        c_n = None if first.c_n is None else first.c_n + second.c_n
        return Outputs(first.output + second.output, first.h_n + second.h_n, c_n)
    return both


# What autograd says when a backward needs a tensor that was changed in place after the forward
IN_PLACE_REFUSALS = ("modified by an inplace operation", "is being modified inplace")


def changed_in_place(run: Callable[[Inputs], Outputs]) -> Callable[[Inputs], Outputs]:
    """``run`` with 1 added in place to the output it returned, before the loss (a residual,
    out += x): the gradients of the loss are the same as without it."""
    def changed(inputs: Inputs) -> Outputs:
        got = run(inputs)
        got.output.add_(1.0)
        return got
    return changed
