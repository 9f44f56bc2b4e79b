"""The built-in op families' own bug signatures: their steps done the wrong way, in the orders
and factors their users report (harness.diagnosis.op_signatures says what a signature is).
Each family declares its list through ``OpFamily.signatures``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from harness.core.op_case import OpCase
from harness.core.op_subject import OpInputs, OpOutputs, call_op
from harness.diagnosis.op_signatures import (
    CHUNKS,
    OpSignature,
    from_core,
    overflow_rows,
    per_chunk,
)

# scalar_decay ------------------------------------------------------------------------------


def scalar_decay_signatures() -> list[OpSignature]:
    from harness.families.ops import SCALAR_DECAY
    from harness.ops import scalar_decay as sd

    family, reference = SCALAR_DECAY, sd.recurrent_core

    def masked_after(size: int) -> Callable:
        def core(q, k, v, gates, state, scale, chunk_size):
            o, state = reference(q, k, v, gates, state, scale, chunk_size)
            rows = overflow_rows(gates[0], size).unsqueeze(-1)  # (B, T, H, 1)
            return o.masked_fill(rows, float("nan")), state
        return core

    def carry_short(state_in, state_out, gates):
        (s_in,), (s_out,), (g,) = state_in, state_out, gates
        b = g.cumsum(1)  # (B, c, H)
        short = b[:, -2] if b.shape[1] > 1 else torch.zeros_like(b[:, -1])
        return (s_out + ((short.exp() - b[:, -1].exp())[..., None, None] * s_in),)

    def padded(size: int) -> Callable:
        def core(q, k, v, gates, state, scale, chunk_size):
            o, (s,) = reference(q, k, v, gates, state, scale, chunk_size)
            extra = -q.shape[1] % size
            if extra and q.shape[1]:
                s = s * (extra * gates[0][:, -1]).exp()[..., None, None]
            return o, (s,)
        return core

    def zero_as_reset(q, k, v, gates, state, scale, chunk_size):
        (g,) = gates
        return reference(q, k, v, (torch.where(g == 0, torch.full_like(g, -1e4), g),), state,
                         scale, chunk_size)

    def decay_after(q, k, v, gates, state, scale, chunk_size):
        (g,), (s,) = gates, state
        outputs = []
        for t in range(q.shape[1]):
            s = (s + k[:, t, :, :, None] * v[:, t, :, None, :]) * g[:, t].exp()[..., None, None]
            outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
        return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (s,)

    def read_before(q, k, v, gates, state, scale, chunk_size):
        (g,), (s,) = gates, state
        outputs = []
        for t in range(q.shape[1]):
            s = s * g[:, t].exp()[..., None, None]
            outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
            s = s + k[:, t, :, :, None] * v[:, t, :, None, :]
        return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (s,)

    signatures = []
    for size in CHUNKS:
        at = f"chunks of {size}"
        signatures += [
            OpSignature(f"mask-after-exp-{size}", f"the causal mask applied after the "
                        f"exponential ({at}): e^(b_t - b_j) overflows above the diagonal and "
                        "inf x 0 = NaN", "take the segment sums' exponential only where j <= "
                        "t (mask with -inf before exp, or exponentiate e^(b_t) and e^(-b_j) "
                        "apart where they are bounded)",
                        from_core(family, sd.call, masked_after(size)),
                        applies=lambda case, s=size: case.chunk_size in (None, s)),
            OpSignature(f"carry-one-step-short-{size}", f"the state carried to the next chunk "
                        f"decayed one step short ({at})", "the carry's decay is e^(b_C), the "
                        "cumulative log decay through the chunk's last step",
                        from_core(family, sd.call, per_chunk(reference, size, carry_short)),
                        applies=lambda case, s=size: case.chunk_size in (None, s)
                        and case.seq_len > 1),
            OpSignature(f"padded-final-state-{size}", f"T padded to a multiple of the chunk "
                        f"({at}) with the decay kept: the final state decays through the "
                        "padding", "pad with log decay 0 (no decay) or take the final state "
                        "at the last real step",
                        from_core(family, sd.call, padded(size)),
                        applies=lambda case, s=size: case.chunk_size in (None, s)),
        ]
    return signatures + [
        OpSignature("zero-decay-as-reset", "an exact-zero log decay taken as decay 0 (the "
                    "state reset where it should be kept)", "g is a log decay: g = 0 means "
                    "decay 1; do not special-case zeros", from_core(family, sd.call,
                                                                    zero_as_reset)),
        OpSignature("decay-after-update", "the decay applied after adding k v^T (the current "
                    "token decayed too)", "S_t = e^(g_t) S_(t-1) + k_t v_t^T: decay the old "
                    "state, then add", from_core(family, sd.call, decay_after)),
        OpSignature("read-before-update", "o_t read before adding k_t v_t^T (the causal mask "
                    "without its diagonal)", "o_t = S_t^T (scale q_t) includes step t: use "
                    "tril, not tril(-1)", from_core(family, sd.call, read_before)),
    ]


# gated_delta -------------------------------------------------------------------------------


def gated_delta_signatures() -> list[OpSignature]:
    from harness.families.ops import GATED_DELTA
    from harness.ops import gated_delta as gd

    family = GATED_DELTA

    def stepped(*, decay_last: bool = False, error_undecayed: bool = False,
                no_beta: bool = False, beta_on_value: bool = False,
                read_before: bool = False) -> Callable:
        """The gated delta rule step with one of its orders or factors wrong."""

        def core(q, k, v, gates, state, scale, chunk_size):
            (g, beta), (s,) = gates, state
            outputs = []
            for t in range(q.shape[1]):
                decay = g[:, t].exp()[..., None, None]
                decayed = s if decay_last or error_undecayed else s * decay
                rate = 1.0 if no_beta or beta_on_value else beta[:, t, :, None]
                value = beta[:, t, :, None] * v[:, t] if beta_on_value else v[:, t]
                error = value - torch.einsum("bhkv,bhk->bhv", decayed, k[:, t])
                update = k[:, t, :, :, None] * (rate * error)[..., None, :]
                if read_before:
                    outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, decayed))
                if decay_last:
                    s = (s + update) * decay
                elif error_undecayed:
                    s = s * decay + update
                else:
                    s = decayed + update
                if not read_before:
                    outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, s))
            return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (s,)

        return from_core(family, gd.call, core)

    hint = ("the Gated DeltaNet order: S' = e^(g_t) S_(t-1) first, then u_t = beta_t (v_t - "
            "S'^T k_t) and S_t = S' + k_t u_t^T")
    return [
        OpSignature("decay-after-delta", "the decay applied after the delta update (S_t = "
                    "e^(g_t) (S + beta k (v - S^T k)^T))", hint, stepped(decay_last=True)),
        OpSignature("delta-error-before-decay", "the delta error taken against the undecayed "
                    "state (u_t = beta_t (v_t - S_(t-1)^T k_t))", hint,
                    stepped(error_undecayed=True)),
        OpSignature("beta-missing", "beta left out of the delta update (u_t = v_t - S'^T k_t)",
                    "the update is k_t (beta_t (v_t - S'^T k_t))^T: beta scales the error",
                    stepped(no_beta=True)),
        OpSignature("beta-on-value-only", "beta applied to v_t alone (u_t = beta_t v_t - "
                    "S'^T k_t)", "beta scales the whole error: u_t = beta_t (v_t - S'^T k_t)",
                    stepped(beta_on_value=True)),
        OpSignature("delta-read-before-update", "o_t read from the decayed state before the "
                    "delta update", "o_t = S_t^T (scale q_t) includes step t's update",
                    stepped(read_before=True)),
    ]


# mlstm -------------------------------------------------------------------------------------


def mlstm_signatures() -> list[OpSignature]:
    from harness.families.ops import MLSTM
    from harness.ops import mlstm as ml

    family = MLSTM

    def stepped(*, bound: str = "stabiliser", linear_forget: bool = False) -> Callable:
        """The stabilised mLSTM step with its normaliser's bound or its forget gate wrong."""

        def core(q, k, v, gates, state, scale, chunk_size, eps=ml.EPS):
            (i, f), (c, n, m) = gates, state
            outputs = []
            for t in range(q.shape[1]):
                log_f = f[:, t] if linear_forget else F.logsigmoid(f[:, t])
                m_new = torch.maximum(log_f + m, i[:, t])
                forget, write = (log_f + m - m_new).exp(), (i[:, t] - m_new).exp()
                c = forget[..., None, None] * c + write[..., None, None] * (
                    k[:, t, :, :, None] * v[:, t, :, None, :])
                n = forget[..., None] * n + write[..., None] * k[:, t]
                q_hat = q[:, t] * scale
                dot = torch.einsum("bhk,bhk->bh", n, q_hat)
                dot = dot if bound == "signed" else dot.abs()
                floor = torch.ones_like(dot) if bound == "one" else torch.zeros_like(
                    dot) if bound == "none" else (-m_new).exp()
                numerator = torch.einsum("bhk,bhkv->bhv", q_hat, c)
                if bound == "eps-inside":  # max(|n . q| + eps, e^-m): no eps after the max
                    denominator = torch.maximum(dot + eps, floor)
                else:
                    denominator = torch.maximum(dot, floor) + eps
                outputs.append(numerator / denominator.unsqueeze(-1))
                m = m_new
            return (torch.stack(outputs, 1) if outputs else v.new_zeros(v.shape)), (c, n, m)

        return from_core(family, ml.call, core)

    def without_stabiliser(inputs: OpInputs, case: OpCase) -> OpOutputs:
        out = call_op(family.reference, inputs, family)
        c, n, m = out.state
        return replace(out, state=(c, n, torch.zeros_like(m)))

    def started_at_minus_inf(inputs: OpInputs, case: OpCase) -> OpOutputs:
        rows = inputs.q.shape[0] if inputs.cu_seqlens is None else inputs.cu_seqlens.numel() - 1
        c, n, m = ml.zero_state(rows, inputs.q.shape[2], inputs.k.shape[-1], inputs.v.shape[-1],
                                torch.promote_types(inputs.q.dtype, torch.float32))
        state = tuple(t.to(inputs.q.device) for t in (c, n, torch.full_like(m, -torch.inf)))
        return call_op(family.reference, replace(inputs, initial_state=state), family)

    def initial_stabiliser_ignored(inputs: OpInputs, case: OpCase) -> OpOutputs:
        c, n, m = inputs.initial_state
        return call_op(family.reference, replace(inputs, initial_state=(
            c, n, torch.zeros_like(m))), family)

    hint = "h_t = C_t^T q / (max(|n_t . q|, e^(-m_t)) + eps): the bound is e^(-m_t)"
    return [
        OpSignature("normaliser-bound-one", "the normaliser's lower bound taken as 1 (the "
                    "unstabilised formula's) instead of e^(-m_t)", hint, stepped(bound="one")),
        OpSignature("normaliser-unbounded", "the normaliser without its lower bound "
                    "(|n_t . q| + eps)", hint, stepped(bound="none")),
        OpSignature("forget-gate-not-log-sigmoid", "the forget gate's pre-activation used as "
                    "its log (log sigma(f) missing)", "the stabiliser's recurrence takes "
                    "log sigma(f_t): m_t = max(log sigma(f_t) + m_(t-1), i_t)",
                    stepped(linear_forget=True)),
        OpSignature("normaliser-without-abs", "the normaliser's |n_t . q| taken without its "
                    "absolute value (max(n_t . q, e^(-m_t)))", hint, stepped(bound="signed")),
        OpSignature("eps-inside-the-max", "eps added inside the normaliser's max "
                    "(max(|n_t . q| + eps, e^(-m_t)))", hint + ", eps added after the max",
                    stepped(bound="eps-inside")),
        OpSignature("stabiliser-starts-at-minus-inf", "the stabiliser started at m_0 = "
                    "-inf without an initial state (the parallel form's max over the steps' log "
                    "weights alone) instead of 0", "with no initial_state the state is "
                    "C_0 = 0, n_0 = 0, m_0 = 0: m_1 = max(log sigma(f_1), i_1)",
                    started_at_minus_inf, applies=lambda case: not case.with_state),
        OpSignature("initial-stabiliser-ignored", "the initial state's stabiliser m "
                    "ignored (taken as 0)", "initial_state is (C, n, m): C and n are stored "
                    "divided by e^m, so m_0 is the given m, not 0",
                    initial_stabiliser_ignored, applies=lambda case: case.with_state),
        OpSignature("final-stabiliser-dropped", "the final state returned without its "
                    "stabiliser (m as zeros)", "return m_T with C_T and n_T: they are "
                    "stored divided by e^(m_T)", without_stabiliser),
    ]
