"""Fast layers whose compiled gate maths (harness/impls/native.c) carry one realistic bug each.

The source is native.c with one line rewritten, built like the real one (native.build, cached
by its hash); the classes are the registry's fast layers with that library in place of the
correct one wherever the compiled gate maths run (float32 on a CPU). tests/test_mutants.py runs
the shared suites on them: each must fail the check named beside it there.
"""

from __future__ import annotations

import functools

from torch import Tensor

from harness.impls import native
from harness.impls.fast import FastGRU, FastLSTM, FastRNN


@functools.cache
def mutated(old: str, new: str) -> native.Kernels:
    """native.c with ``old`` replaced by ``new``, compiled and loaded."""
    code = native.source().decode()
    if old not in code:
        raise ValueError(f"the mutation's target is not in native.c: {old!r}")
    return native.Kernels(native.build(code.replace(old, new).encode()))


class MutatedKernels:
    """Use the mutated library wherever the correct one would run."""

    mutation: tuple[str, str]

    def gate_kernels(self, like: Tensor):
        correct = super().gate_kernels(like)
        return None if correct is None else mutated(*self.mutation)


class UnclampedExpFastLSTM(MutatedKernels, FastLSTM):
    """exp without its input clamp: beyond |x| ~ 88 the exponent 2^k overflows its bits, so a
    gate saturated by a large input takes a wrong value instead of 0 or 1."""

    mutation = ("x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);", "")


class ResetOutsideFastGRU(MutatedKernels, FastGRU):
    """The reset gate scales the whole candidate pre-activation, x_n + h_n, not only the hidden
    side h_n (torch's GRU: n = tanh(x_n + r (W_hn h + b_hn)))."""

    mutation = ("float n = tanh_f(xn[j] + r * hn[j]);", "float n = tanh_f(r * (xn[j] + hn[j]));")


class PlainTanhFastRNN(MutatedKernels, FastRNN):
    """tanh as 1 - 2 / (1 + e^2x) everywhere: right to ~1.8e-7 in absolute terms, but near 0 it
    keeps only the absolute precision of 1, not the value's: hundreds of times float32's rounding
    on small values (numerics::precision_like_the_reference), on any CPU and -march."""

    mutation = ("return (x < 0.625f && x > -0.625f) ? small : (x < 0.0f ? -large : large);",
                "return 1.0f - 2.0f / (1.0f + exp_f(2.0f * x));")
