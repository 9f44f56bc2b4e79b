"""many-to-one: the course's SimpleRNN pattern (a recurrent layer, then a Linear on the last step)
with variable-length batches. The last *valid* step must be taken; the course's naive
``output[:, -1, :]`` is shown to be wrong on padded input."""

from __future__ import annotations

import torch

from harness.conformance.course import SimpleRNN, last_valid_step
from harness.conformance.grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=30)

OUTPUT_SIZE = 5


def grid(fam):
    base = BASE.with_(seq_len=6, batch=4, lengths=(6, 2, 4, 1), batch_first=True)
    chosen = [
        base,
        base.with_(num_layers=2),
        base.with_(bidirectional=True),
        base.with_(num_layers=2, bidirectional=True, with_hx=True),
        base.with_(batch_first=False, lengths=(3, 6, 6, 5)),
        base.with_(dtype="float64"),
    ]
    if fam.supports_proj:
        chosen.append(base.with_(proj_size=3, bidirectional=True))
    return chosen


def models(subject):
    """SimpleRNN around the implementation and around torch's module, same weights and head."""
    case = subject.case
    module, reference = subject.build(), subject.reference()
    features = case.num_directions * case.h_out
    built = []
    for run in (lambda i: subject.run(module, i), lambda i: subject.run_reference(i, reference)):
        generator = torch.Generator().manual_seed(case.data_seed)
        built.append(SimpleRNN(run, features, OUTPUT_SIZE, batch_first=case.batch_first,
                               dtype=case.torch_dtype, generator=generator))
    return built


@cases(grid)
def test_last_valid_step_matches_reference(subject, check):
    model, reference = models(subject)
    inputs = subject.inputs()
    check.close("SimpleRNN prediction", model(inputs), reference(inputs))


@cases(grid)
def test_last_valid_step_is_the_final_state(subject, check):
    """The forward half of output at each sequence's last valid step is the top layer's forward
    h_n; the reverse half at step 0 is its reverse h_n. Needs no reference."""
    case = subject.case
    got = subject.first_call()
    last = last_valid_step(got.output, subject.inputs().lengths, batch_first=case.batch_first)
    top = (case.num_layers - 1) * case.num_directions
    check.close("output at the last valid step (forward half) vs h_n",
                last[:, : case.h_out], got.h_n[top])
    if case.bidirectional:
        first = got.output[:, 0] if case.batch_first else got.output[0]
        check.close("output at step 0 (reverse half) vs h_n", first[:, case.h_out:],
                    got.h_n[top + 1])


@cases(grid)
def test_naive_last_step_is_wrong_on_padded_input(subject, check):
    """For every sequence shorter than the batch, ``output[:, -1, :]`` reads padding and gives
    another prediction than the last valid step; for full-length sequences both agree."""
    case = subject.case
    model, _ = models(subject)
    inputs = subject.inputs()
    right, naive = model(inputs), model(inputs, naive=True)
    short = torch.tensor([n < case.seq_len for n in case.effective_lengths])
    check.close("naive vs last-valid prediction, full-length sequences", naive[~short],
                right[~short])
    if short.any():
        gap = check.differs("naive vs last-valid prediction, shorter sequences",
                            naive[short], right[short])
        check.note(f"naive output[:, -1] is off by up to {gap:.3g} on padded sequences")
