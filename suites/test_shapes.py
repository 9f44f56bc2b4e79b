"""shapes: output, h_n and c_n have torch's shapes, dtype and device in every layout, and equal
the reference's values; h_n is never batch-first and its rows are layer-major; a new module's
parameters are drawn as torch's, and a class built with torch's arguments given positionally,
in torch's order, is the same layer (for torch's own families). The first three checks of a case
look at one call of a freshly built module (Subject.first_call), made once."""

from __future__ import annotations

import torch

from harness.conformance.grids import BASE, layouts
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.contract import Inputs

SUITE = SuiteInfo(order=10)


def grid(fam):
    chosen = layouts() + [
        BASE.with_(batch=1),
        BASE.with_(seq_len=1),
        BASE.with_(seq_len=1, batch=1, num_layers=2, bidirectional=True),
        BASE.with_(batch=None),
        BASE.with_(batch=None, num_layers=2, bidirectional=True, with_hx=True),
        BASE.with_(batch=None, batch_first=True),  # unbatched ignores batch_first
        BASE.with_(batch=0),
        BASE.with_(bias=False, num_layers=2),
        BASE.with_(bias=False, dtype="float64"),  # zero biases made for bias=False: in float64
        BASE.with_(num_layers=2, bidirectional=True, dtype="float64"),
        BASE.with_(batch_first=True, with_hx=True, num_layers=2),
        # wide layers, where fast implementations switch to another path (a hoisted input
        # projection, a fused kernel, a blocked product)
        BASE.with_(input_size=48, hidden_size=64, with_hx=True),
        BASE.with_(input_size=16, hidden_size=256, batch=2, num_layers=2, bidirectional=True),
        # a batch wider than the tiles an implementation splits it into (8, 16 or 128 rows,
        # the last one partial), each row with its own initial state
        BASE.with_(batch=200, num_layers=2, with_hx=True),
        # batch x hidden past 4096, where fast layers switch to folded or blocked kernels
        BASE.with_(seq_len=3, batch=65, input_size=8, hidden_size=64, with_hx=True),
    ]
    if fam.supports_proj:
        chosen += [
            BASE.with_(proj_size=4),
            BASE.with_(proj_size=4, num_layers=2, bidirectional=True, batch_first=True),
            BASE.with_(proj_size=4, num_layers=3, with_hx=True, batch=None),
        ]
    return chosen


def expected_shapes(case, fam):
    """torch's shapes: output in the input's layout; states (L*D, B, F), never batch-first."""
    rows = case.num_layers * case.num_directions
    features = case.num_directions * case.h_out
    if case.unbatched:
        shapes = {"output": (case.seq_len, features), "h_n": (rows, case.h_out)}
        cell = (rows, case.hidden_size)
    else:
        time_major = (case.seq_len, case.batch, features)
        batch_major = (case.batch, case.seq_len, features)
        shapes = {
            "output": batch_major if case.batch_first else time_major,
            "h_n": (rows, case.batch, case.h_out),
        }
        cell = (rows, case.batch, case.hidden_size)
    if fam.has_cell:
        shapes["c_n"] = cell
    return shapes


@cases(grid)
def test_output_and_state_shapes(subject, check):
    case = subject.case
    named = subject.first_call().named()
    for name, shape in expected_shapes(case, subject.family_def).items():
        check.shape(name, named.get(name), shape)
        if named[name].dtype != case.torch_dtype:
            check.fail(f"{name} has dtype {named[name].dtype}; the input is {case.torch_dtype}")
        if named[name].device.type != torch.device(case.device).type:
            check.fail(f"{name} is on {named[name].device}; the input is on {case.device}")


@cases(grid)
def test_values_match_reference(subject, check):
    check.outputs_close(subject.first_call(), subject.reference_call())


@cases(grid)
def test_h_n_rows_are_layer_major(subject, check):
    """The last layer's rows of h_n are its final outputs: forward at the last step, reverse at
    the first. Needs no reference."""
    case = subject.case
    if case.batch == 0:
        check.not_supported("an empty batch has no rows to compare")
    got = subject.first_call()
    output, h_n = got.output, got.h_n
    if case.unbatched:
        output, h_n = output.unsqueeze(1), h_n.unsqueeze(1)
    elif case.batch_first:
        output = output.transpose(0, 1)
    # output: (T, B, D * h_out); h_n: (L * D, B, h_out)
    top = (case.num_layers - 1) * case.num_directions
    check.shape("h_n", h_n, (case.num_layers * case.num_directions, case.rows, case.h_out))
    check.close("h_n[last layer, forward] vs output[T-1, :, :h_out]",
                h_n[top], output[-1, :, : case.h_out])
    if case.bidirectional:
        check.close("h_n[last layer, reverse] vs output[0, :, h_out:]",
                    h_n[top + 1], output[0, :, case.h_out:])


def strided(tensor):
    """The same values in a non-contiguous layout (a permuted view of a permuted copy)."""
    dims = list(range(tensor.dim()))
    flipped = dims[::-1]
    return tensor.permute(flipped).contiguous().permute(flipped)


def strided_grid(fam):
    return [BASE.with_(with_hx=True), BASE.with_(num_layers=2, bidirectional=True,
            batch_first=True, with_hx=True), BASE.with_(lengths=(2, 5, 3), with_hx=True)]


@cases(strided_grid)
def test_non_contiguous_inputs(subject, check):
    """Input and hx as non-contiguous views give the same result as contiguous ones."""
    inputs = subject.inputs()
    hx = inputs.hx
    hx = tuple(strided(h) for h in hx) if isinstance(hx, tuple) else strided(hx)
    views = Inputs(strided(inputs.x), inputs.lengths, hx)
    if views.x.is_contiguous():
        check.fail("the harness failed to build a non-contiguous input")
    check.outputs_close(subject.run(subject.build(), views), subject.run_reference(inputs))


def torch_defines_initialisation(fam) -> bool:
    """Whether the family's reference is one of torch.nn's modules, whose documentation defines
    how a new module's parameters are drawn (the other families' papers each have their own)."""
    return getattr(fam.reference, "__module__", "").startswith("torch.nn")


def initialisation_grid(fam):
    drawn = BASE.with_(input_size=16, hidden_size=64)
    return [drawn, drawn.with_(num_layers=2, bidirectional=True)] \
        if torch_defines_initialisation(fam) else []


@cases(initialisation_grid)
def test_parameters_initialised_like_torch(subject, check):
    """A module as built, before any weights are loaded, holds parameters drawn as torch's:
    every weight and bias from U(-1/sqrt(H), 1/sqrt(H)) (torch.nn.RNN, LSTM and GRU's
    reset_parameters). Every other check loads the reference's weights, so an implementation
    drawing N(0, 1), zero biases or a forget-gate bias of 1 passes them all and trains
    otherwise than torch's module. Per tensor: every value within the bound, and a standard
    deviation within half of the uniform's (bound / sqrt(3)) for tensors of 64 values or more;
    over all values at once, within a tenth (H=64: thousands of values)."""
    case = subject.case
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.data_seed)
        module = subject.spec.build(case)
    bound = case.hidden_size ** -0.5
    spread = bound / 3 ** 0.5  # the standard deviation of U(-bound, bound)
    drawn = {name: p.detach().double().flatten().cpu() for name, p in module.named_parameters()
             if p.is_floating_point()}
    if not drawn:
        check.not_supported("the module has no floating-point parameters to draw")
    for name, values in drawn.items():
        check.holds(f"{name} within ±1/sqrt(H)", bool(values.abs().max() <= bound * (1 + 1e-6)),
                    f"{name} holds {float(values.abs().max()):.3g} as built, beyond torch's "
                    f"bound 1/sqrt(H) = {bound:.3g}: torch draws every weight and bias from "
                    f"U(-{bound:.3g}, {bound:.3g})")
        if values.numel() >= 64:
            std = float(values.std())
            check.holds(f"{name}'s spread", 0.5 * spread <= std <= 1.5 * spread,
                        f"{name} has standard deviation {std:.3g} as built; torch's "
                        f"U(-{bound:.3g}, {bound:.3g}) has {spread:.3g}")
    pooled = float(torch.cat(list(drawn.values())).std())
    check.holds("the parameters' spread", 0.9 * spread <= pooled <= 1.1 * spread,
                f"the parameters as built have standard deviation {pooled:.3g}; torch's "
                f"U(-{bound:.3g}, {bound:.3g}) has {spread:.3g}")


def positional_order(fam) -> tuple[str, ...]:
    """torch's constructor arguments in the order torch.nn.RNN, LSTM and GRU take them
    positionally: the Elman RNN's nonlinearity fourth, LSTM's proj_size last."""
    return ("input_size", "hidden_size", "num_layers", *fam.extra_kwargs, "bias", "batch_first",
            "dropout", "bidirectional", *(("proj_size",) if fam.supports_proj else ()))


@cases(lambda fam: [BASE.with_(num_layers=2, bias=False, batch_first=True, bidirectional=True,
                               with_hx=True)] if torch_defines_initialisation(fam) else [])
def test_built_positionally_as_torch(subject, check):
    """A class with torch's constructor takes its arguments positionally in torch's order, as
    torch.nn.RNN(3, 7, 2, "relu") or nn.LSTM(3, 7, 2, False, True) are written in models:
    built so, with every argument away from its default, it equals the reference. A signature
    that moves one argument (nonlinearity after bidirectional, as LSTM's order has no place for
    it) builds another layer without a word: bias="relu" is true."""
    case, spec, fam = subject.case, subject.spec, subject.family_def
    if not isinstance(spec.factory, type):
        check.not_supported(f"{spec.name} is built by a function, not a class: positional "
                            "arguments are a class's contract")
    given = {**case.torch_kwargs(), "proj_size": case.proj_size,
             **fam.constructor_kwargs(case.proj_size)}
    values = [given[name] for name in positional_order(fam)]
    if fam.supports_proj and not case.proj_size:
        values.pop()  # proj_size left at its default: a class without it is not at fault
    module = spec.factory(*values, device=torch.device(case.device),
                          dtype=case.torch_dtype).eval()
    spec.load_weights(module, {k: v.to(case.device) for k, v in subject.weights().items()})
    inputs = subject.inputs()
    check.outputs_close(subject.run(module, inputs), subject.run_reference(inputs))
