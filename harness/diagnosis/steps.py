"""Signatures inside the step: the family's cell with one mistake, as a module that loads the
reference's weights by torch's names and runs through the same layer machinery
(harness.core.layer), so every case the reference takes — layers, directions, packed input —
takes the mistake too. The built-in families name these functions as their own signatures
(``Family.signatures = "harness.diagnosis.steps:lstm_signatures"``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.layer import CellState, NamedParameters, State
from harness.diagnosis.signatures import Signature
from harness.families.minimal import MinGRULoop, MinLSTMLoop, g, normalised_gates


def lstm_step(*, gate=torch.sigmoid, candidate=torch.tanh, cell_out=torch.tanh,
              forget_shift: float = 0.0) -> type[nn.Module]:
    """torch's LSTM step with its activations (and forget-gate pre-activation) replaced."""

    class Variant(CellState, NamedParameters):
        gates = 4

        def cell(self, slot: int, x_t: Tensor, state: State) -> State:
            w = self.weights(slot)
            h, c = state
            pre = F.linear(x_t, w["ih"], w["b_ih"]) + F.linear(h, w["hh"], w["b_hh"])
            i, f, cand, o = pre.chunk(4, dim=1)  # (B, H) each
            c = gate(f + forget_shift) * c + gate(i) * candidate(cand)
            h = gate(o) * cell_out(c)
            return (h if w["hr"] is None else F.linear(h, w["hr"])), c

    return Variant


def gru_step(*, reset_before: bool = False, update_swapped: bool = False,
             bias_outside_reset: bool = False, reset_whole: bool = False,
             candidate=torch.tanh) -> type[nn.Module]:
    """torch's GRU step (rows [r, z, n]) with one of the published variants or a mistake."""

    class Variant(NamedParameters):
        mode, gates = "GRU", 3

        def cell(self, slot: int, x_t: Tensor, state: State) -> State:
            w = self.weights(slot)
            (h,) = state
            x_r, x_z, x_n = F.linear(x_t, w["ih"], w["b_ih"]).chunk(3, dim=1)
            w_r, w_z, w_n = w["hh"].chunk(3, dim=0)  # (H, H) each
            b_r, b_z, b_n = (None, None, None) if w["b_hh"] is None else w["b_hh"].chunk(3)
            r = torch.sigmoid(x_r + F.linear(h, w_r, b_r))
            z = torch.sigmoid(x_z + F.linear(h, w_z, b_z))
            if reset_before:
                recurrent = F.linear(r * h, w_n, b_n)
            elif bias_outside_reset:
                recurrent = r * F.linear(h, w_n) + (0 if b_n is None else b_n)
            else:
                recurrent = r * F.linear(h, w_n, b_n)
            if reset_whole:
                n = candidate(r * (x_n + F.linear(h, w_n, b_n)))
            else:
                n = candidate(x_n + recurrent)
            return ((z * n + (1 - z) * h) if update_swapped else ((1 - z) * n + z * h),)

    return Variant


def rnn_tanh_signatures() -> tuple[Signature, ...]:
    return elman_signatures("tanh")


def rnn_relu_signatures() -> tuple[Signature, ...]:
    return elman_signatures("relu")


def elman_signatures(nonlinearity: str) -> tuple[Signature, ...]:
    other = "relu" if nonlinearity == "tanh" else "tanh"
    return (Signature(
        f"{other}-instead-of-{nonlinearity}", f"{other} in place of {nonlinearity}",
        f"the family's step is h' = {nonlinearity}(W_ih x + b_ih + W_hh h + b_hh)",
        reference=lambda **kw: nn.RNN(**{**kw, "nonlinearity": other})),)


def lstm_signatures() -> tuple[Signature, ...]:
    return (
        Signature("candidate-sigmoid", "the candidate g through a sigmoid instead of tanh",
                  "c' = f c + i tanh(g): the candidate's activation is tanh",
                  reference=lstm_step(candidate=torch.sigmoid)),
        Signature("gates-tanh", "the gates i, f, o through tanh instead of a sigmoid",
                  "the gates i, f and o go through a sigmoid; only g and the cell output use "
                  "tanh", reference=lstm_step(gate=torch.tanh)),
        Signature("cell-output-no-tanh", "h = o c instead of o tanh(c)",
                  "h' = o tanh(c'): check the cell output's activation",
                  reference=lstm_step(cell_out=lambda c: c)),
        Signature("forget-bias-plus-one", "1 added to the forget gate's pre-activation "
                  "(Keras' unit forget bias)",
                  "torch adds no constant to the forget gate: its bias is what bias_ih and "
                  "bias_hh hold", reference=lstm_step(forget_shift=1.0)),
    )


def gru_signatures() -> tuple[Signature, ...]:
    return (
        Signature("reset-before-matmul",
                  "the reset gate applied before the recurrent product, W_hn (r ⊙ h)",
                  "torch's GRU applies r after it: n = tanh(W_in x + b_in + r ⊙ (W_hn h + "
                  "b_hn)) (the other published variant is not torch's)",
                  reference=gru_step(reset_before=True)),
        Signature("update-gate-swapped", "the update gate's roles exchanged, h' = z n + "
                  "(1 - z) h", "torch's GRU keeps the old state with z: h' = (1 - z) n + z h",
                  reference=gru_step(update_swapped=True)),
        Signature("b-hn-outside-reset", "b_hn added outside the reset gate",
                  "torch's n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)): b_hn is inside "
                  "the reset product", reference=gru_step(bias_outside_reset=True),
                  applies=lambda case: case.bias),
        Signature("reset-scales-input-side", "the reset gate scaling the whole candidate "
                  "pre-activation, r ⊙ (W_in x + b_in + W_hn h + b_hn)",
                  "torch's reset gate scales only the recurrent side: n = tanh(W_in x + b_in + "
                  "r ⊙ (W_hn h + b_hn))", reference=gru_step(reset_whole=True)),
        Signature("candidate-sigmoid", "the candidate n through a sigmoid instead of tanh",
                  "n = tanh(...): the candidate's activation is tanh",
                  reference=gru_step(candidate=torch.sigmoid)),
    )


def mingru_step(candidate, update_swapped: bool = False) -> type[nn.Module]:
    class Variant(MinGRULoop):
        def cell(self, slot: int, x_t: Tensor, state: State) -> State:
            w = self.weights(slot)
            (h,) = state
            z_pre, h_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
            z = torch.sigmoid(z_pre)
            if update_swapped:
                return (z * h + (1 - z) * candidate(h_pre),)
            return ((1 - z) * h + z * candidate(h_pre),)

    return Variant


def mingru_signatures() -> tuple[Signature, ...]:
    return (
        Signature("g-twice", "the candidate through g twice, g(g(W_h x + b_h))",
                  "h̃ = g(W_h x + b_h), applied once", reference=mingru_step(lambda a: g(g(a)))),
        Signature("g-missing", "the candidate without g (h̃ = W_h x + b_h)",
                  "h̃ = g(W_h x + b_h): the activation keeps the state positive",
                  reference=mingru_step(lambda a: a)),
        Signature("update-gate-swapped", "the update gate's roles exchanged, h' = z h + "
                  "(1 - z) h̃", "minGRU keeps the old state with 1 - z: h' = (1 - z) h + z h̃",
                  reference=mingru_step(g, update_swapped=True)),
        Signature("candidate-sigmoid", "the candidate through a sigmoid instead of g, "
                  "h̃ = σ(W_h x + b_h)", "h̃ = g(W_h x + b_h), g(a) = a + 0.5 for a >= 0 and "
                  "σ(a) below (σ alone caps the state at 1)",
                  reference=mingru_step(torch.sigmoid)),
    )


def minlstm_step(*, normalised: bool = True, candidate=g) -> type[nn.Module]:
    class Variant(MinLSTMLoop):
        def cell(self, slot: int, x_t: Tensor, state: State) -> State:
            w = self.weights(slot)
            (h,) = state
            f_pre, i_pre, h_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(3, dim=1)
            f, i = normalised_gates(f_pre, i_pre) if normalised else (
                torch.sigmoid(f_pre), torch.sigmoid(i_pre))
            return (f * h + i * candidate(h_pre),)

    return Variant


def minlstm_signatures() -> tuple[Signature, ...]:
    return (Signature("gates-not-normalised", "f and i not normalised to sum to one",
                      "minLSTM divides: f' = f / (f + i), i' = i / (f + i)",
                      reference=minlstm_step(normalised=False)),
            Signature("g-missing", "the candidate without g (h̃ = W_h x + b_h)",
                      "h̃ = g(W_h x + b_h): the activation keeps the state positive",
                      reference=minlstm_step(candidate=lambda a: a)))


def rglru_step(*, constant: float = 8.0, lambda_sign: float = -1.0, scaled: bool = True,
               gates_x: bool = True) -> type[nn.Module]:
    """The RG-LRU step, log a = -c σ(r) softplus(±Λ), h' = a h + sqrt(1 - a²) (i x), with one
    of its constants or factors changed."""
    from harness.families.rglru import RGLRULoop, input_scale

    class Variant(RGLRULoop):
        def cell(self, slot: int, x_t: Tensor, state: State) -> State:
            w = self.weights(slot)
            (h,) = state
            r_pre, i_pre = F.linear(x_t, w["ih"], w["b_ih"]).chunk(2, dim=1)
            log_a = -constant * torch.sigmoid(r_pre) * F.softplus(lambda_sign * w["hh"])
            written = torch.sigmoid(i_pre) * (x_t if gates_x else 1.0)
            return (log_a.exp() * h + (input_scale(log_a) if scaled else 1.0) * written,)

    return Variant


def rglru_signatures() -> tuple[Signature, ...]:
    hint = "log a = -8 σ(W_a x + b_a) softplus(-Λ), h' = a h + sqrt(1 - a²) (i ⊙ x)"
    return (
        Signature("input-scale-missing", "the input not scaled by sqrt(1 - a²)", hint,
                  reference=rglru_step(scaled=False)),
        Signature("decay-constant-missing", "the constant c = 8 left out of log a", hint,
                  reference=rglru_step(constant=1.0)),
        Signature("lambda-sign-flipped", "softplus(Λ) in place of softplus(-Λ)", hint,
                  reference=rglru_step(lambda_sign=1.0)),
        Signature("input-gate-without-x", "the input gate written alone, not times x "
                  "(sqrt(1 - a²) i)", hint, reference=rglru_step(gates_x=False)),
    )


def indrnn_step(*, activation=torch.relu, input_side_only: bool = False) -> type[nn.Module]:
    from harness.families.indrnn import IndRNNLoop

    class Variant(IndRNNLoop):
        def cell(self, slot: int, x_t: Tensor, state: State) -> State:
            w = self.weights(slot)
            (h,) = state
            drive = F.linear(x_t, w["ih"], w["b_ih"])
            if input_side_only:
                return (activation(drive) + w["hh"] * h,)
            return (activation(drive + w["hh"] * h),)

    return Variant


def indrnn_signatures() -> tuple[Signature, ...]:
    hint = "h' = relu(W x + b + u ⊙ h): the activation takes the recurrent term too"
    return (
        Signature("tanh-instead-of-relu", "tanh in place of relu", hint,
                  reference=indrnn_step(activation=torch.tanh)),
        Signature("relu-on-input-side-only", "relu applied to W x + b alone, u ⊙ h added "
                  "after it", hint, reference=indrnn_step(input_side_only=True)),
    )
