"""varlen: variable-length batches at their edges — sequences of length 1 next to long ones, a
batch of one-step sequences, and (where an implementation takes padded input plus ``lengths=``)
a sequence of length 0 in a batch, which PackedSequence cannot hold: its output rows are zeros,
its final state is its initial state, and the other rows are unaffected. For ops: cu_seqlens
with empty and length-1 sequences, each sequence equal to itself run alone."""

from __future__ import annotations

import itertools

import torch

from harness.conformance.grids import BASE
from harness.conformance.op_checks import outputs_match
from harness.conformance.op_grids import varlen as op_varlen
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.op_subject import OpInputs
from harness.core.subject import layout

SUITE = SuiteInfo(order=25)


def ones_grid(fam):
    return [BASE.with_(seq_len=1, batch=3, lengths=(1, 1, 1)),
            BASE.with_(seq_len=7, batch=4, lengths=(7, 1, 1, 1), with_hx=True),
            BASE.with_(seq_len=7, batch=4, lengths=(1, 7, 1, 2), bidirectional=True,
                       num_layers=2)]


@cases(ones_grid)
def test_length_one_sequences_match_reference(subject, check):
    inputs = subject.inputs()
    check.outputs_close(subject.run(subject.build(), inputs), subject.run_reference(inputs))


def empty_grid(fam):
    return [BASE.with_(lengths=(5, 0, 3)), BASE.with_(lengths=(0, 5, 2), with_hx=True),
            BASE.with_(lengths=(3, 0, 5), bidirectional=True, num_layers=2, with_hx=True)]


def time_major(case, tensor):
    return tensor.transpose(0, 1) if case.batch_first else tensor


@cases(empty_grid)
def test_empty_sequence_in_a_batch(subject, check):
    """Needs no reference: the empty row against zeros and its own h_0; every other row
    against its sequence run alone."""
    case = subject.case
    module = subject.build()
    inputs = subject.inputs()
    batch = subject.run(module, inputs)
    out, x = time_major(case, batch.output), time_major(case, inputs.x)
    hx = inputs.hx
    states = () if hx is None else hx if isinstance(hx, tuple) else (hx,)
    finals = [batch.h_n] + ([batch.c_n] if batch.c_n is not None else [])
    for b, n in enumerate(case.effective_lengths):
        if n == 0:
            check.close(f"output of the empty sequence {b}", out[:, b],
                        torch.zeros_like(out[:, b]))
            for name, final, initial in zip(("h_n", "c_n"), finals, states or [None] * 2):
                start = torch.zeros_like(final[:, b]) if initial is None else initial[:, b]
                check.close(f"{name} of the empty sequence {b} vs its h_0", final[:, b], start)
            continue
        alone_case = case.with_(seq_len=n, batch=1, lengths=None)
        rows = tuple(s[:, b:b + 1] for s in states) or None
        alone = subject.run(module, layout(alone_case, x[:n, b:b + 1], None, rows),
                            case=alone_case)
        check.close(f"output of sequence {b} (length {n}) vs alone", out[:n, b:b + 1],
                    time_major(alone_case, alone.output))
        check.close(f"h_n of sequence {b} (length {n}) vs alone", batch.h_n[:, b:b + 1],
                    alone.h_n)


@cases(op_varlen, kind="op")
def test_op_sequences_alone(subject, check):
    """cu_seqlens with empty and length-1 sequences, an initial state per sequence: the
    outputs and final states equal the reference's, and each sequence run on its own (no state
    crosses a boundary)."""
    inputs = subject.inputs()
    got, _ = outputs_match(subject, check, inputs)
    bounds = inputs.cu_seqlens.tolist()
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        part = slice(start, end)
        alone = OpInputs(inputs.q[:, part], inputs.k[:, part], inputs.v[:, part],
                         tuple(g[:, part] for g in inputs.gates),
                         None if inputs.initial_state is None
                         else tuple(s[n:n + 1] for s in inputs.initial_state),
                         scale=inputs.scale)
        one = subject.run(alone)
        check.close(f"o of sequence {n} vs the sequence alone", got.o[:, part], one.o)
        if got.state is not None and one.state is not None:
            for name, mine, single in zip(subject.family_def.state, got.state, one.state):
                check.close(f"final {name} of sequence {n} vs the sequence alone", mine[n:n + 1],
                            single)
