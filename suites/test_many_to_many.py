"""many-to-many: per-step outputs through a Linear head equal the reference at every valid step;
running one step at a time with the state carried equals the full-sequence run, and so does
one-to-many generation that feeds each prediction back as the next input."""

from __future__ import annotations

import copy

import torch

from harness.conformance.grids import BASE, product, varlen
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.contract import Inputs

SUITE = SuiteInfo(order=40)


def head(case, out_features, *, seed_offset=0):
    """A Linear read-out with weights drawn from the case's seed."""
    generator = torch.Generator().manual_seed(case.data_seed + seed_offset)
    linear = torch.nn.Linear(case.num_directions * case.h_out, out_features,
                             dtype=case.torch_dtype, device=case.device)
    with torch.no_grad():
        for p in linear.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return linear


def valid_steps(case, output):
    """The valid steps of a padded output as a (steps, F) tensor, in a fixed order."""
    if case.unbatched:
        return output
    time_major = output.transpose(0, 1) if case.batch_first else output
    lengths = torch.tensor(case.effective_lengths)
    mask = torch.arange(case.seq_len).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
    return time_major[mask.to(output.device)]


def head_grid(fam):
    return product(BASE, batch_first=(False, True), bidirectional=(False, True)) + varlen(fam)


@cases(head_grid)
def test_per_step_head_matches_reference(subject, check):
    case = subject.case
    linear = head(case, 4)
    got = linear(valid_steps(case, subject.first_call().output))
    want = linear.cpu()(valid_steps(case, subject.reference_call().output))
    check.close("head(output) at valid steps", got, want)


def step_grid(fam):
    chosen = product(BASE, batch_first=(False, True), num_layers=(1, 2), with_hx=(False, True))
    chosen += [BASE.with_(batch=None, num_layers=2), BASE.with_(dtype="float64", num_layers=3)]
    if fam.supports_proj:
        chosen.append(BASE.with_(proj_size=4, num_layers=2, with_hx=True))
    return chosen


def step_input(case, x, t):
    """Step t of x in the case's layout, kept as a length-1 sequence."""
    if case.unbatched or not case.batch_first:
        return x[t : t + 1]
    return x[:, t : t + 1]


@cases(step_grid)
def test_stepwise_equals_full_sequence(subject, check):
    """T calls of one step each, the state carried from call to call, equal one call over the
    whole sequence: every output step and the final state."""
    case = subject.case
    module = subject.build()
    inputs = subject.inputs()
    full = subject.run(module, inputs)
    one_step = case.with_(seq_len=1)
    state, outputs = inputs.hx, []
    for t in range(case.seq_len):
        step = subject.run(module, Inputs(step_input(case, inputs.x, t), None, state),
                           case=one_step)
        outputs.append(step.output)
        state = step.state
    time_dim = 1 if case.batch_first and not case.unbatched else 0
    check.close("outputs step by step vs full sequence", torch.cat(outputs, dim=time_dim),
                full.output)
    check.close("final h step by step vs h_n", step.h_n, full.h_n)
    if full.c_n is not None:
        check.close("final c step by step vs c_n", step.c_n, full.c_n)


def generation_grid(fam):
    return [BASE.with_(seq_len=1), BASE.with_(seq_len=1, num_layers=2, with_hx=True),
            BASE.with_(seq_len=1, batch_first=True, num_layers=2)]


def generate(step, inputs, readout, steps=12):
    """Feed each prediction back as the next input; the stacked predictions."""
    x, state, predictions = inputs.x, inputs.hx, []
    for _ in range(steps):
        out = step(Inputs(x, None, state))
        x = torch.tanh(readout(out.output))  # (1, B, I) or (B, 1, I): the next input
        state = out.state
        predictions.append(x.cpu())
    return torch.cat(predictions)


@cases(generation_grid)
def test_one_to_many_generation(subject, check):
    """One input, many outputs: each prediction (a tanh read-out of the output) is the next
    input. Twelve generated steps equal the same loop around torch's module."""
    case = subject.case
    module, reference = subject.build(), subject.reference()
    readout = head(case, case.input_size, seed_offset=1)
    inputs = subject.inputs()
    got = generate(lambda i: subject.run(module, i), inputs, readout)
    want = generate(lambda i: subject.run_reference(i, reference), inputs.to("cpu"),
                    copy.deepcopy(readout).cpu())
    check.close("generated sequence", got, want)
