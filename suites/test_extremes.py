"""extremes: weights and inputs that drive every gate and state to the edge of its range —
saturated gates, states far from where they started after thousands of steps, tiny and huge
decays (where log-space computations underflow or overflow) — compared with the reference and
finite, and gradients finite wherever the reference's are. The same weights go into the
implementation and the reference."""

from __future__ import annotations

import pytest

from harness.conformance.gradients import finite_where_the_reference_is
from harness.conformance.grids import BASE
from harness.conformance.op_checks import gradients_finite, outputs_match
from harness.conformance.op_grids import BASE as OP_BASE
from harness.conformance.op_grids import stressed
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo
from harness.conformance.values import finite_and_close

SUITE = SuiteInfo(order=75)


def scaled(subject, *, scale: float, bias_shift: float = 0.0):
    """The case's reference weights times ``scale``, every bias shifted by ``bias_shift``."""
    return {name: value * scale + (bias_shift if name.startswith("bias") else 0.0)
            for name, value in subject.weights().items()}


def saturated_grid(fam):
    return [BASE.with_(with_hx=True), BASE.with_(num_layers=2, bidirectional=True),
            BASE.with_(lengths=(5, 2, 4), dtype="float64")]


@cases(saturated_grid)
def test_saturated_gates(subject, check):
    """Weights x8 and inputs x3: every sigmoid and tanh far in its flat tails."""
    finite_and_close(subject, check, subject.inputs(scale=3.0), "large",
                     scaled(subject, scale=8.0))


def long_grid(fam):
    long = BASE.with_(seq_len=2000, batch=2, hidden_size=8)
    return [long, long.with_(with_hx=True, dtype="float64")]


@pytest.mark.time_limit(3)
@cases(long_grid)
def test_state_far_from_its_start(subject, check):
    """2000 steps with every bias raised by 2: the state drifts far from its initial scale (and,
    in families whose state is not bounded, keeps growing) — and still equals the reference."""
    finite_and_close(subject, check, subject.inputs(), "long",
                     scaled(subject, scale=1.0, bias_shift=2.0))


def decay_grid(fam):
    base = BASE.with_(seq_len=300, batch=2, hidden_size=8)
    return [base.with_(seed=1), base.with_(seed=2, with_hx=True)]


@pytest.mark.time_limit(3)
@cases(decay_grid)
def test_gates_closed_decays_tiny(subject, check):
    """Every bias shifted by -30 over 300 steps: sigmoid gates at e^-30 from 0 — forget and
    update gates shut, decays near 1 (log-decays near 0), inputs barely let in."""
    finite_and_close(subject, check, subject.inputs(), "long",
                     scaled(subject, scale=1.0, bias_shift=-30.0))


@pytest.mark.time_limit(3)
@cases(decay_grid)
def test_gates_open_decays_huge(subject, check):
    """Every bias shifted by +30 over 300 steps: sigmoid gates at e^-30 from 1 — state replaced
    every step, decays near 0 (log-decays near -30 per step, thousands over the sequence)."""
    finite_and_close(subject, check, subject.inputs(), "long",
                     scaled(subject, scale=1.0, bias_shift=30.0))


def underflow_grid(fam):
    return [BASE.with_(seq_len=20, batch=2, hidden_size=8, with_hx=True)]


@cases(underflow_grid)
def test_gates_underflow(subject, check):
    """Every bias shifted by -120: sigmoid gates underflow to exactly 0 in float32 (σ(-120) =
    8e-53), so a ratio of two gates (f / (f + i)) is 0 / 0 unless it is computed in log space;
    the reference is finite."""
    finite_and_close(subject, check, subject.inputs(), "long",
                     scaled(subject, scale=1.0, bias_shift=-120.0))


# label -> (weights x, every bias shifted by, inputs x): the forward checks' extremes above
GRADIENT_STRESSES = {"inputs x100": (1.0, 0.0, 100.0), "saturated gates": (8.0, 0.0, 3.0),
                     "gates underflow": (1.0, -120.0, 1.0), "gates open": (1.0, 30.0, 1.0)}


@pytest.mark.autograd
@cases(lambda fam: [BASE.with_(with_hx=True),
                    BASE.with_(lengths=(5, 2, 4), num_layers=2, bidirectional=True)])
def test_gradients_stay_finite(subject, check):
    """At the extremes above — inputs x100, gates saturated, underflowing, wide open — every
    gradient is finite wherever the reference's is: a forward pass right at the extremes can
    still give NaN gradients (1 / (1 + e^-x) overflowing in its backward; the inf / inf of a
    torch.where's branch not taken)."""
    for label, (weights, shift, inputs) in GRADIENT_STRESSES.items():
        finite_where_the_reference_is(subject, check, label,
                                      scaled(subject, scale=weights, bias_shift=shift),
                                      subject.inputs(scale=inputs))


def op_stress_grid(fam):
    long = {"f-high": 2000}
    return [stressed(OP_BASE.with_(seq_len=long.get(stress, 300), batch=1, heads=2), stress)
            for stress in fam.stresses]


@pytest.mark.time_limit(3)
@cases(op_stress_grid, kind="op")
def test_op_gate_stress(subject, check):
    """Gates drawn as fla's stress tests draw them (per-step decays from e^-69 to nearly 1,
    exact-zero decays at some positions or all; beta near 0 and 1; mLSTM input gates near -12
    and +15, forget gates near +6 over 2000 steps): no NaN or inf, and the reference's answer.
    Keys that are not L2-normalised are outside the gated delta rule's contract: their error is
    measured, not judged."""
    if subject.case.stress == "unnormalised":
        inputs = subject.inputs()
        got, want = subject.run(inputs), subject.run_reference(inputs)
        for name, expected in want.named().items():
            check.measure(f"{name} (keys not normalised)", got.named()[name], expected,
                          measure="outside the contract")  # kept apart from output errors
        check.metrics["largest_error"] = max(
            float((got.named()[n].double().cpu() - e.double()).abs().max())
            for n, e in want.named().items())
        return
    outputs_match(subject, check, quantity="long")


@pytest.mark.autograd
@cases(lambda fam: [stressed(OP_BASE.with_(seq_len=100, batch=1, heads=2), stress)
                    for stress in fam.stresses if stress != "unnormalised"], kind="op")
def test_op_gradients_stay_finite(subject, check):
    """At every gate stress (100 steps), every gradient — dq, dk, dv, the gates', the initial
    state's — is finite wherever the reference's is: log(sigmoid(f)) for log σ(f) gives -inf
    and then NaN gradients where σ(f) underflows, with a forward that looks right."""
    gradients_finite(subject, check)
