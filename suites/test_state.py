"""state: hx=None means zeros, a given hx is used, calls do not leak state into each other (no
stored state, no in-place updates of the caller's tensors, no reused output buffers, no stale
cached weights), and dropout acts only between layers and only in training (evaluation is
deterministic), dropping and rescaling as torch's does, with a fresh mask at every step. For
ops: no state kept between calls, no in-place update of q, k, v, the gates,
the initial state or cu_seqlens, and no returned buffer that the next call overwrites."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import warnings

import pytest
import torch
from torch import Tensor

from harness.conformance import dropout
from harness.conformance.checks import CheckFailed, Tolerance
from harness.conformance.gradients import match_reference
from harness.conformance.grids import BASE, product
from harness.conformance.op_checks import gradients_match, outputs_match
from harness.conformance.op_grids import BASE as OP_BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.core.contract import Inputs
from harness.core.failed import Explained
from harness.core.op_subject import OpInputs, OpSubject
from harness.core.subject import Subject, reference_weights
from harness.core.twins import TwinKey, builder_name, digest, shared

SUITE = SuiteInfo(order=50)


def grid(fam):
    chosen = product(BASE, bidirectional=(False, True), num_layers=(1, 2))
    chosen += [BASE.with_(batch_first=True, num_layers=2), BASE.with_(batch=None, num_layers=2),
              BASE.with_(lengths=(2, 5, 3), bidirectional=True)]
    if fam.supports_proj:
        chosen.append(BASE.with_(proj_size=4, num_layers=2))
    return chosen


def zero_state(case, fam):
    """h_0 (and c_0) of zeros: (L*D, B, features), or (L*D, features) unbatched."""
    rows = case.num_layers * case.num_directions
    batch = () if case.unbatched else (case.batch,)
    like = {"dtype": case.torch_dtype, "device": case.device}
    h = torch.zeros(rows, *batch, case.h_out, **like)
    return (h, torch.zeros(rows, *batch, case.hidden_size, **like)) if fam.has_cell else h


@cases(grid)
def test_hx_none_equals_zeros(subject, check):
    module = subject.build()
    inputs = subject.inputs()
    zeros = Inputs(inputs.x, inputs.lengths, zero_state(subject.case, subject.family_def))
    check.outputs_close(subject.run(module, zeros), subject.run(module, inputs),
                        against="hx=None")


@cases(lambda fam: [c.with_(with_hx=True) for c in grid(fam)])
def test_given_hx_is_used(subject, check):
    """With a random hx the result equals torch's with that hx, and differs from hx=None."""
    module = subject.build()
    inputs = subject.inputs()
    got = subject.run(module, inputs)
    check.outputs_close(got, subject.run_reference(inputs))
    without = subject.run(module, Inputs(inputs.x, inputs.lengths, None))
    # The output at every step (the first steps feel h_0 most, in families that forget fast).
    check.differs("output with a random hx vs hx=None", got.output, without.output)


@cases(lambda fam: [c.with_(with_hx=w) for c in grid(fam) for w in (False, True)])
def test_calls_do_not_leak_state(subject, check):
    """f(x1); f(x2); f(x1) — the first and the last call agree exactly, and each call with
    torch. x2 has the shape of x1 and, for a variable-length batch, other lengths (a mask or
    packing plan kept per shape serves it wrong)."""
    module, case = subject.build(), subject.case
    other = case if case.lengths is None else case.with_(lengths=case.lengths[1:]
                                                         + case.lengths[:1])
    first_inputs, other_inputs = subject.inputs(), Subject(subject.spec, other).inputs(salt=1)
    first = subject.run(module, first_inputs).detach()
    second = subject.run(module, other_inputs, case=other).detach()
    again = subject.run(module, first_inputs).detach()
    check.outputs_close(again, first, against="the first call with the same input")
    check.outputs_close(first, subject.run_reference(first_inputs))
    check.outputs_close(second, subject.run_reference(other_inputs, case=other),
                        against=f"torch on the second call (lengths {other.lengths})"
                        if other.lengths else "torch on the second call")


EXACT = Tolerance(0.0)


# How a call is made: with autograd, then as evaluation and serving make it.
MODES = ((contextlib.nullcontext, ""), (torch.no_grad, " under no_grad"),
         (torch.inference_mode, " under inference_mode"))


@cases(lambda fam: [BASE, BASE.with_(num_layers=2, bidirectional=True, with_hx=True)])
def test_input_refilled_in_place_is_seen(subject, check):
    """One input buffer refilled in place between two calls (a serving loop's preallocated
    batch, a staging buffer), with autograd, under no_grad and under inference_mode: the second
    call answers for the new contents. Anything derived from the input and kept by the
    tensor's identity (a projection cached by data_ptr and shape) answers for the old."""
    module = subject.build()
    for mode, where in MODES:
        first, second = subject.inputs(), subject.inputs(salt=1)
        buffer = first.x.clone()
        with mode():
            subject.run(module, Inputs(buffer, first.lengths, first.hx))
        with torch.no_grad():
            buffer.copy_(second.x)
        with mode():
            got = subject.run(module, Inputs(buffer, second.lengths, second.hx))
        try:
            check.outputs_close(got.detach(), subject.run_reference(second))
        except CheckFailed as failure:
            raise CheckFailed(f"the second call, on the buffer refilled in place{where}: "
                              f"{failure}") from None


def snapshot(outputs_or_inputs):
    """Clones of every tensor, to compare against after later calls."""
    return [t.detach().clone() for t in tensors(outputs_or_inputs)]


def tensors(value):
    if isinstance(value, OpInputs):
        return [*value.tensors(), *(() if value.cu_seqlens is None else (value.cu_seqlens,))]
    if isinstance(value, Inputs):
        hx = value.hx
        return [value.x, *(hx if isinstance(hx, tuple) else () if hx is None else (hx,))]
    return list(value.named().values())


@cases(lambda fam: [c.with_(with_hx=True) for c in grid(fam)])
def test_inputs_are_not_modified(subject, check):
    """A call leaves the caller's input and hx untouched (no in-place updates): with autograd,
    and under no_grad and inference_mode, where fast paths skip the copies autograd needs. The
    padded steps hold noise, so zeroing them in place shows too."""
    module = subject.build()
    for mode, where in MODES:
        inputs = subject.inputs(pad_value=None)
        before = snapshot(inputs)
        with mode():
            subject.run(module, inputs)
        for name, was, now in zip(("input", "h_0", "c_0"), before, tensors(inputs)):
            check.close(f"{name} after a call{where}", now, was, EXACT)


@cases(grid)
def test_results_survive_the_next_call(subject, check):
    """What a call returned is not overwritten by the next call (no reused output buffers)."""
    module = subject.build()
    first = subject.run(module, subject.inputs())
    kept = snapshot(first)
    subject.run(module, subject.inputs(salt=1))
    for (name, now), was in zip(first.named().items(), kept):
        check.close(f"{name} of the first call, after a second call", now, was, EXACT)


@cases(lambda fam: [BASE, BASE.with_(batch_first=True), BASE.with_(num_layers=2),
                    BASE.with_(bidirectional=True)])
def test_returned_tensors_do_not_share_memory(subject, check):
    """output, h_n (and c_n) are tensors of their own, as torch's are: writing into h_n in place
    (a state reset, h.zero_(); a mask, h.mul_(m)) leaves output alone, and c_n alone (an
    implementation that returns h_n as a view of output's last step fails)."""
    with torch.no_grad():
        returned = subject.run(subject.build(), subject.inputs()).named()
    kept = {name: t.detach().clone() for name, t in returned.items()}
    for name in [n for n in returned if n != "output"]:
        returned[name].detach().fill_(1234.5)  # in place, as a caller's state reset writes
        for other, was in kept.items():
            if other != name:
                check.close(f"{other} after writing into {name} in place", returned[other], was,
                            EXACT)
        returned[name].detach().copy_(kept[name])


@cases(grid)
def test_parameter_updates_are_seen(subject, check):
    """After new weights are loaded into a module that has already run (as an optimiser step
    would change them), the next call uses the new weights — nothing stale is cached."""
    module = subject.build()
    inputs = subject.inputs()
    subject.run(module, inputs)
    updated = reference_weights(subject.case.with_(seed=subject.case.seed + 1), subject.family_def)
    with torch.no_grad():
        subject.spec.load_weights(module, updated)
    check.outputs_close(subject.run(module, inputs),
                        subject.run_reference(inputs, subject.reference(updated)),
                        against="torch with the updated weights")


@cases(grid)
def test_writes_through_data_are_seen(subject, check):
    """Weights written in place through ``.data`` (hand-written optimisers, weight surgery: no
    version counter moves) after a first call are what the next call uses — nothing derived
    from the weights is kept on a version counter or a data pointer; with autograd, and under
    no_grad and inference_mode, where fast paths keep what autograd's path does not."""
    inputs = subject.inputs()
    updated = reference_weights(subject.case.with_(seed=subject.case.seed + 1), subject.family_def)
    # The new weights as the implementation's own loader lays them out, in a fresh module.
    loaded = dict(subject.build(updated).named_parameters())
    want = subject.run_reference(inputs, subject.reference(updated))
    for mode, where in MODES:
        module = subject.build()
        own = dict(module.named_parameters())
        if not own or {n: p.shape for n, p in own.items()} != {
                n: p.shape for n, p in loaded.items()}:
            check.not_supported("no parameters of a fixed layout (nn.Parameter) to write "
                                "through .data")
        with mode():
            subject.run(module, inputs)
        for name, parameter in own.items():
            parameter.data.copy_(loaded[name].data)
        with mode():
            got = subject.run(module, inputs)
        check.outputs_close(got, want, against=f"torch with the weights written through .data"
                                               f"{where}")


def dropout_grid(fam):
    return [BASE.with_(num_layers=2, dropout=0.5), BASE.with_(num_layers=3, dropout=0.5,
            bidirectional=True), BASE.with_(num_layers=2, dropout=0.5, lengths=(2, 5, 3),
            bidirectional=True)]


def run_in_mode(subject, module, inputs, *, training):
    module.train(training)
    return subject.run(module, inputs, case=subject.case.with_(training=training))


@cases(dropout_grid)
def test_dropout_only_between_layers_in_training(subject, check):
    """Evaluation: deterministic and equal to torch's. Training: the first layer's final state is
    untouched (dropout acts on its output only), the top layer's output is not dropped (its last
    step still equals h_n), and the result does differ from evaluation."""
    case = subject.case
    module = subject.build()
    inputs = subject.inputs()
    evaluated = run_in_mode(subject, module, inputs, training=False).detach()
    check.outputs_close(run_in_mode(subject, module, inputs, training=False).detach(), evaluated,
                        against="the same call in eval mode")
    check.outputs_close(evaluated, subject.run_reference(inputs))

    torch.manual_seed(case.data_seed)
    trained = run_in_mode(subject, module, inputs, training=True).detach()
    first_layer = slice(0, case.num_directions)
    check.close("first layer's h_n in training vs eval", trained.h_n[first_layer],
                evaluated.h_n[first_layer])
    check.differs("output in training vs eval (dropout between layers)", trained.output,
                  evaluated.output)
    if not case.varlen:
        top = (case.num_layers - 1) * case.num_directions
        output = trained.output.transpose(0, 1) if case.batch_first else trained.output
        check.close("top layer's output at T-1 vs its h_n in training (no dropout on the output)",
                    output[-1, :, : case.h_out], trained.h_n[top])


def twin_rows(inputs: Inputs) -> Inputs:
    """The inputs (time-major) with batch row 1 a copy of row 0, the initial state's too."""
    x = inputs.x.clone()
    x[:, 1] = x[:, 0]
    hx = inputs.hx
    if hx is not None:
        hx = tuple(h.clone() for h in hx) if isinstance(hx, tuple) else (hx.clone(),)
        for h in hx:
            h[:, 1] = h[:, 0]
        hx = hx if isinstance(inputs.hx, tuple) else hx[0]
    return Inputs(x, inputs.lengths, hx)


def torch_s_moves(subject: Subject, inputs: Inputs) -> dropout.Moves:
    """How dropout moves the reference's output over its training calls: the same for every
    implementation of the family on the case, so computed once per process (harness.core.twins)
    for the reference, case and inputs."""
    case, family = subject.case, subject.family_def

    def compute() -> dropout.Moves:
        reference = subject.reference()
        torch_eval = subject.run_reference(inputs, reference.eval()).output.detach()
        reference.train()
        return dropout.moves(lambda: subject.run_reference(inputs, reference).output,
                             torch_eval, seed=case.data_seed + 100_000)

    hx = inputs.hx if isinstance(inputs.hx, tuple) else (inputs.hx,)
    content = digest([("x", inputs.x), ("lengths", inputs.lengths),
                      *((f"hx{n}", h) for n, h in enumerate(hx))])
    return shared(TwinKey(("dropout moves", family.name, builder_name(family.build_reference)),
                          case, True, content, compute))


@cases(lambda fam: [BASE.with_(seq_len=10, batch=4, num_layers=2, dropout=0.3),
                    BASE.with_(seq_len=10, batch=4, num_layers=2, dropout=0.3,
                               bidirectional=True)])
def test_dropout_moves_outputs_as_torch_s_does(subject, check):
    """Over many training calls, dropout changes the output (from eval mode's) as torch's does:
    as much (the rate p dropped, not 1 - p; the kept values scaled by 1 / (1 - p)), centred,
    with a fresh mask at every step and for every batch row: rows 0 and 1 get the same input,
    and their changes must be as unalike as torch's (harness.conformance.dropout). Compared in
    distribution: no single call can be."""
    case = subject.case
    module, inputs = subject.build(), twin_rows(subject.inputs())
    training = case.with_(training=True)
    theirs = torch_s_moves(subject, inputs)  # before the implementation sees the inputs
    mine_eval = run_in_mode(subject, module, inputs, training=False).output.detach()
    module.train()
    mine = dropout.moves(lambda: subject.run(module, inputs, case=training).output, mine_eval,
                         seed=case.data_seed, device=case.device)
    check.count("dropout's change of the output, per training call", 4 * dropout.CALLS)
    found = dropout.differences(mine, theirs)
    if found:
        check.fail(f"dropout (p={case.dropout:g}, {dropout.CALLS} training calls each) moves the "
                   f"output otherwise than torch's: " + "; ".join(found))


@cases(lambda fam: [BASE.with_(seq_len=10, num_layers=2, dropout=0.5)])
def test_dropout_follows_torch_s_seed(subject, check):
    """torch.manual_seed decides dropout's masks, as it does torch's module's: two training
    calls after the same seed give the same output, a call after another seed another one. A
    mask drawn from a generator of the module's own (seeded once, "for reproducible runs")
    ignores the seed: a run cannot be repeated, and activation checkpointing, which replays
    torch's RNG state to recompute a forward pass, recomputes another mask."""
    case = subject.case
    module, inputs = subject.build(), subject.inputs()
    module.train()
    training = case.with_(training=True)
    outputs = []
    for seed in (case.data_seed, case.data_seed, case.data_seed + 1):
        with torch.random.fork_rng(devices=[] if case.device == "cpu" else None):
            torch.manual_seed(seed)
            with torch.no_grad():
                outputs.append(subject.run(module, inputs, case=training).output)
    check.close("training output after torch.manual_seed(s), twice", outputs[1], outputs[0],
                Tolerance(0.0))
    check.differs("training output after another seed", outputs[2], outputs[0])


def mirrored(weights: dict[str, Tensor], h_out: int) -> dict[str, Tensor]:
    """Weights under which, at T=1 from zero states, the first layer's two directions output
    the same values, and the second layer's input weights read their difference: every
    ``*_l0_reverse`` tensor a copy of its ``*_l0``, and weight_ih_l1 (and its reverse)
    [A, -A] over the (forward, backward) halves of its input. Without dropout the second layer
    sees no input at all; with a mask per direction it sees what the masks keep apart."""
    out = dict(weights)
    for name in weights:
        if name.endswith("_l0_reverse"):
            out[name] = weights[name.removesuffix("_reverse")].clone()
    for name in ("weight_ih_l1", "weight_ih_l1_reverse"):
        w = weights[name].clone()  # (gates * H, 2 * h_out)
        w[:, h_out:] = -w[:, :h_out]
        out[name] = w
    return out


@cases(lambda fam: [BASE.with_(seq_len=1, batch=8, num_layers=2, dropout=0.5,
                               bidirectional=True)])
def test_dropout_masks_each_direction_apart(subject, check):
    """Dropout between bidirectional layers draws one mask over both directions' features, not
    one shared by feature j of the forward and feature j of the backward direction. At T=1,
    with the directions' weights equal and the next layer reading their difference
    (``mirrored``), eval mode gives that layer no input; in training, a mask per direction does
    (torch's), a mask shared by the two does not: training's output would equal eval's."""
    case, inputs = subject.case, subject.inputs()

    def train_and_eval(weights):
        module = subject.build(weights)
        evaluated = run_in_mode(subject, module, inputs, training=False).output.detach()
        with torch.random.fork_rng(devices=[] if case.device == "cpu" else None):
            torch.manual_seed(case.data_seed)
            return run_in_mode(subject, module, inputs, training=True).output.detach(), evaluated

    try:
        check.differs("output in training vs eval, the directions' outputs equal and the next "
                      "layer reading their difference",
                      *train_and_eval(mirrored(subject.weights(), case.h_out)))
    except CheckFailed as failure:
        trained, evaluated = train_and_eval(subject.weights())
        if float((trained - evaluated).abs().max()) > 100 * check.strict.atol:  # it drops
            raise Explained(str(failure), pattern="dropout mask shared by the directions",
                            sentence=SHARED_DIRECTIONS) from None
        raise


SHARED_DIRECTIONS = (
    "dropout between its bidirectional layers drops feature j of the forward and of the "
    "backward direction together: one mask drawn for half the features and used for both "
    "halves; torch draws one mask over the whole (T, B, 2H) output, each direction's features "
    "their own")


@cases(lambda fam: [BASE.with_(dtype="float64"),
                    BASE.with_(dtype="float64", num_layers=2, bidirectional=True,
                               lengths=(5, 2, 4))])
def test_converted_after_building(subject, check):
    """Built in float32 on the CPU, then converted to the case's dtype and device with
    module.to(...) — as model.double() or model.to("cuda") convert a whole model after it is
    built — it computes as one built so, with hx=None: a tensor kept as a plain attribute (a
    zero initial state made once, a mask, weights copied out) is not converted with the
    parameters and buffers, and is left behind in float32 or on the CPU. It is called once
    before the conversion, as a model is used before it is moved: what that first call cached
    (a zero state made for its batch size) must not outlive the conversion."""
    case = subject.case
    module = subject.spec.build(case.with_(dtype="float32", device="cpu"))
    module.train(case.training)
    inputs = subject.inputs()
    with torch.no_grad():
        subject.run(module, inputs.to("cpu", torch.float32))
    module = module.to(device=torch.device(case.device), dtype=case.torch_dtype)
    subject.spec.load_weights(module, {name: value.to(case.device)
                                       for name, value in subject.weights().items()})
    check.outputs_close(subject.run(module, inputs), subject.run_reference(inputs))


@cases(lambda fam: [BASE.with_(with_hx=True, num_layers=2)])
def test_saved_whole_and_loaded(subject, check):
    """torch.save(module) and torch.load give a module that computes the same, after one call
    (as a model is checkpointed whole, mid-training or for serving): an attribute pickle cannot
    write (a lambda, a local class, an open handle or session) fails the save, and state kept
    outside the parameters, buffers and attributes is lost by the load."""
    if not subject.spec.capabilities.picklable:
        check.not_supported(f"{subject.spec.name} declares it is not saved by pickling "
                            "(picklable: False)")
    module, inputs = subject.build(), subject.inputs()
    before = subject.run(module, inputs).detach()
    buffer = io.BytesIO()
    try:
        torch.save(module, buffer)
    except Exception as error:  # pickle's own types: PicklingError, AttributeError, TypeError
        check.fail(f"torch.save(module) raises {type(error).__name__}: "
                   f"{' '.join(str(error).split())[:200]}")
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    check.outputs_close(subject.run(loaded, inputs).detach(), before,
                        against="the module before it was saved")


@cases(lambda fam: [BASE.with_(with_hx=True, num_layers=2)])
def test_deep_copies_compute_apart(subject, check):
    """copy.deepcopy(module) after a call, other weights loaded into the copy (an EMA or teacher
    model, a MAML inner loop): the copy computes with its weights and the original with its
    own. A trace, a scripted or compiled helper kept as an attribute is deep-copied with
    parameters of its own, which the weights loaded into the copy never reach."""
    module, inputs = subject.build(), subject.inputs()
    subject.run(module, inputs)
    other = {name: value * 0.5 for name, value in subject.weights().items()}
    copied = copy.deepcopy(module)
    subject.spec.load_weights(copied, {name: value.to(subject.case.device)
                                       for name, value in other.items()})
    check.outputs_close(subject.run(copied, inputs),
                        subject.run_reference(inputs, subject.reference(other)),
                        against="the reference with the weights loaded into the copy")
    check.outputs_close(subject.run(module, inputs), subject.run_reference(inputs),
                        against="the reference with the original's weights")


@cases(lambda fam: [BASE.with_(dropout=0.5), BASE.with_(dropout=0.5,
                                                                     bidirectional=True)])
def test_single_layer_dropout_is_inert(subject, check):
    """One layer has no 'between layers': dropout changes nothing, even in training."""
    module = subject.build()
    inputs = subject.inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that dropout has no effect
        evaluated = run_in_mode(subject, module, inputs, training=False).detach()
        trained = run_in_mode(subject, module, inputs, training=True).detach()
    check.outputs_close(trained, evaluated, against="eval mode")


OP_CASES = [OP_BASE.with_(seq_len=65), OP_BASE.with_(seq_len=83, batch=1, lengths=(1, 17, 0, 65))]


@cases(lambda fam: OP_CASES, kind="op")
def test_op_inputs_are_not_modified(subject, check):
    """The call leaves q, k, v, the gates, the initial state and cu_seqlens as the caller passed
    them (an op that scales q, normalises k or decays the initial state in place changes the
    caller's tensors)."""
    family = subject.family_def
    for mode, where in MODES:
        inputs = subject.inputs()
        before = snapshot(inputs)
        with mode():
            subject.run(inputs)
        names = ["q", "k", "v", *family.gates, *(family.state if inputs.initial_state else ()),
                 *(() if inputs.cu_seqlens is None else ("cu_seqlens",))]
        for name, was, now in zip(names, before, tensors(inputs)):
            check.close(f"{name} after a call{where}", now, was, EXACT)


@cases(lambda fam: OP_CASES, kind="op")
def test_op_results_survive_the_next_call(subject, check):
    """What a call returned (o and the final state) is not overwritten by the next call on other
    inputs (no output buffer or workspace reused across calls)."""
    first = subject.run(subject.inputs())
    kept = snapshot(first)
    subject.run(subject.inputs(salt=1))
    for (name, now), was in zip(first.named().items(), kept):
        check.close(f"{name} of the first call, after a second call", now, was, EXACT)


@cases(lambda fam: [c.with_(with_state=False) for c in OP_CASES], kind="op")
def test_op_calls_do_not_leak_state(subject, check):
    """f(x1); f(x2); f(x1), no initial state given — the first and the last call agree exactly,
    and with the reference (a cache kept in the op's wrapper continues from the last call)."""
    first_inputs = subject.inputs()
    first = subject.run(first_inputs).detach()
    subject.run(subject.inputs(salt=1))
    again = subject.run(first_inputs).detach()
    for (name, now), was in zip(again.named().items(), first.named().values()):
        check.close(f"{name} of the same call, after another call", now, was, EXACT)
    outputs_match(subject, check, first_inputs)


@pytest.mark.autograd
@cases(lambda fam: [BASE, BASE.with_(num_layers=2, lengths=(5, 2, 4))])
def test_trains_after_an_inference_call(subject, check):
    """Called first under torch.inference_mode (an evaluation or generation pass), then in
    training: outputs and every gradient equal the reference's. Anything the first call cached
    (a zero state, a mask, a scale) is an inference tensor, which autograd refuses to save."""
    module, inputs = subject.build(gradients=True), subject.inputs()
    with torch.inference_mode():
        subject.run(module, inputs)
    match_reference(subject, check, subject.inputs(), module)


@pytest.mark.autograd
@cases(lambda fam: [OP_BASE.with_(seq_len=65)], kind="op")
def test_op_trains_after_an_inference_call(subject, check):
    """Called first under torch.inference_mode, then with autograd: every gradient equals the
    reference's (a scale or mask the first call cached is an inference tensor, which autograd
    refuses to save)."""
    with torch.inference_mode():
        subject.run(subject.inputs())
    gradients_match(subject, check)


@cases(lambda fam: [OP_BASE.with_(seq_len=12, batch=1, lengths=(5, 7))], kind="op")
def test_op_cu_seqlens_refilled_in_place(subject, check):
    """A caller that keeps one cu_seqlens buffer and refills it in place for its next batch (a
    serving loop's preallocated offsets) gets the answer for the new offsets: nothing derived
    from cu_seqlens is kept by the tensor's identity (functools.lru_cache over the tensor, a
    dict keyed by id or data_ptr) from one call to the next."""
    first = subject.inputs()
    subject.run(first)
    moved = OpSubject(subject.spec, subject.case.with_(lengths=(7, 5)))
    buffer = first.cu_seqlens
    buffer.copy_(moved.case.cu_seqlens.to(buffer))  # [0, 5, 12] -> [0, 7, 12], in place
    outputs_match(moved, check, dataclasses.replace(moved.inputs(), cu_seqlens=buffer))
