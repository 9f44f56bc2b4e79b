"""padding: variable-length batches behave as if each sequence ran alone.

Padded steps never change valid outputs or final states; packed input equals each sequence run
alone (sorted and unsorted batches, with and without hx, the reverse direction starting at each
sequence's last valid step); the course's recipe — pad_sequence -> pack -> RNN -> unpack, fed by a
DataLoader collate — equals torch's end to end.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from harness.conformance.course import SequenceDataset, collate_padded
from harness.conformance.grids import BASE, product, varlen
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.contract import Inputs
from harness.core.subject import layout

SUITE = SuiteInfo(order=20)


def time_major(case, output):
    """(T, B, F) view of a padded output in the case's layout."""
    return output.transpose(0, 1) if case.batch_first else output


def rows(state, b):
    """Sequence b's rows of a (L*D, B, F) state, contiguous (contiguity has its own check in
    the shapes suite; cuDNN refuses a non-contiguous hx)."""
    return state[:, b : b + 1].contiguous()


@cases(varlen)
def test_matches_reference(subject, check):
    check.outputs_close(subject.first_call(), subject.reference_call())


@cases(varlen)
def test_padding_values_do_not_matter(subject, check):
    """Zeros or large noise in the padded steps: identical valid outputs and final states."""
    module = subject.build()
    clean = subject.run(module, subject.inputs(pad_value=0.0))
    noisy = subject.run(module, subject.inputs(pad_value=None))
    check.outputs_close(noisy, clean, against="the same batch padded with zeros")


@cases(varlen)
def test_padded_steps_output_zero(subject, check):
    """Like pad_packed_sequence: the output at every padded step is exactly zero."""
    case = subject.case
    got = time_major(case, subject.run(subject.build(), subject.inputs(pad_value=None)).output)
    lengths = torch.tensor(case.effective_lengths)
    padded = torch.arange(case.seq_len).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
    at_padding = got[padded.to(got.device)]
    # An exact property: never loosened by a declared tolerance.
    check.close("output at padded steps", at_padding, torch.zeros_like(at_padding), check.strict)


@cases(varlen)
def test_each_sequence_alone(subject, check):
    """Row b of the batch equals sequence b run alone at its own length (no padding, no
    packing), with row b of hx. Needs no reference."""
    case = subject.case
    module = subject.build()
    inputs = subject.inputs()
    batch = subject.run(module, inputs)
    out = time_major(case, batch.output)
    x = time_major(case, inputs.x)
    hx = inputs.hx
    states = () if hx is None else hx if isinstance(hx, tuple) else (hx,)
    for b, n in enumerate(case.effective_lengths):
        alone_case = case.with_(seq_len=n, batch=1, lengths=None)
        hx = tuple(rows(s, b) for s in states) if states else None
        alone_inputs = layout(alone_case, x[:n, b : b + 1], None, hx)
        alone = subject.run(module, alone_inputs, case=alone_case)
        alone_out = time_major(alone_case, alone.output)
        check.close(f"output of sequence {b} (length {n})", out[:n, b : b + 1], alone_out)
        check.close(f"h_n of sequence {b} (length {n})", rows(batch.h_n, b), alone.h_n)
        if batch.c_n is not None:
            check.close(f"c_n of sequence {b} (length {n})", rows(batch.c_n, b), alone.c_n)


def recipe_grid(fam):
    return product(BASE.with_(seq_len=6, batch=7, batch_first=True),
                   bidirectional=(False, True), num_layers=(1, 2))


@cases(recipe_grid)
def test_course_recipe(subject, check):
    """The course's pipeline: a Dataset of variable-length sequences, a DataLoader whose collate
    pads them (pad_sequence, batch_first), then pack -> RNN -> unpack; every batch equals torch's
    module fed the same way."""
    case = subject.case
    generator = torch.Generator().manual_seed(case.data_seed)
    lengths = torch.randint(1, case.seq_len + 1, (case.batch,), generator=generator).tolist()
    sequences = [torch.randn(n, case.input_size, generator=generator, dtype=torch.float64)
                 .to(case.torch_dtype) for n in lengths]
    loader = DataLoader(SequenceDataset(sequences, list(range(len(sequences)))),
                        batch_size=3, shuffle=False, collate_fn=collate_padded)
    module, reference = subject.build(), subject.reference()
    for padded, batch_lengths, _targets in loader:
        batch_case = case.with_(seq_len=padded.size(1), batch=padded.size(0),
                                lengths=tuple(batch_lengths.tolist()))
        why = subject.spec.why_not(batch_case)  # the batches are fed packed
        if why is not None:
            check.not_supported(why.removeprefix("not supported: "))
        inputs = Inputs(padded.to(case.device), batch_lengths)
        got = subject.run(module, inputs, case=batch_case)
        want = subject.run_reference(inputs, reference, case=batch_case)
        check.outputs_close(got, want)


def causal_grid(fam):
    return product(BASE, batch_first=(False, True), num_layers=(1, 2))


@cases(causal_grid)
def test_future_steps_do_not_change_past_outputs(subject, check):
    """Unidirectional: changing the input from step t on leaves outputs before t untouched —
    so padding at the end can never leak backwards into valid steps."""
    case = subject.case
    module = subject.build()
    inputs = subject.inputs()
    changed = subject.inputs(salt=1)
    t = case.seq_len // 2
    x = time_major(case, inputs.x).clone()
    x[t:] = time_major(case, changed.x)[t:]
    later = Inputs(time_major(case, x).contiguous(), inputs.lengths, inputs.hx)
    before = time_major(case, subject.run(module, inputs).output)[:t]
    after = time_major(case, subject.run(module, later).output)[:t]
    check.close(f"output before step {t}", after, before)
