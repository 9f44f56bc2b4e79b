"""The matrix-state ops: their forms agree, the models the scalar-decay family stands for (RetNet,
Mamba-2's SSD) are that family under the documented mappings, bad calls are one clear line, and
an op with fla's signature runs through run, bench and gate with --impl-fn and nothing else."""

from __future__ import annotations

import json
import re
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.cli import main
from harness.core.op_case import OpCase, case_from_dict
from harness.core.op_spec import spec_from_function
from harness.ops.gated_delta import gated_delta_chunk, gated_delta_recurrent
from harness.ops.mlstm import mlstm_chunk, mlstm_parallel, mlstm_recurrent
from harness.ops.scalar_decay import (
    scalar_decay_chunk,
    scalar_decay_parallel,
    scalar_decay_recurrent,
)


def randn(*shape, generator):
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def test_retnet_retention_is_scalar_decay_with_a_constant_decay_per_head():
    """RetNet: o_t = Σ_{j<=t} γ_h^(t-j) (q_t · k_j) v_j with γ_h = 1 - 2^(-5-h): the family with
    g_h = log(1 - 2^(-5-h)) at every step (and scale 1)."""
    generator = torch.Generator().manual_seed(0)
    b, t, h, d = 2, 37, 4, 8
    q, k, v = (randn(b, t, h, d, generator=generator) for _ in range(3))
    gamma = 1 - 2.0 ** (-5 - torch.arange(h, dtype=torch.float64))  # (H,)
    steps = torch.arange(t)
    lag = (steps[:, None] - steps[None, :]).clamp(min=0).double()  # (T, T)
    decay = gamma[:, None, None] ** lag * (steps[:, None] >= steps[None, :])  # (H, T, T)
    retention = torch.einsum("bthd,bshd,hts,bshe->bthe", q, k, decay, v)
    g = torch.log(gamma).expand(b, t, h)
    o, _ = scalar_decay_chunk(q, k, v, g, scale=1.0, chunk_size=16)
    torch.testing.assert_close(o, retention, atol=1e-10, rtol=1e-10)


def test_mamba2_ssd_is_scalar_decay_with_q_c_k_b_v_x_dt_and_g_a_dt():
    """Mamba-2's SSD (ssd_minimal_discrete's recurrence): h_t = exp(Δ_t A) h_(t-1) + Δ_t B_t
    x_t^T, y_t = h_t^T C_t, with A < 0 per head: the family with q = C, k = B, v = x Δ,
    g = A Δ and scale 1."""
    generator = torch.Generator().manual_seed(1)
    b, t, h, n, p = 2, 29, 3, 6, 5
    x = randn(b, t, h, p, generator=generator)
    dt = F.softplus(randn(b, t, h, generator=generator))  # Δ > 0
    a = -torch.rand(h, generator=generator, dtype=torch.float64) - 0.1  # A < 0
    bb, cc = randn(b, t, h, n, generator=generator), randn(b, t, h, n, generator=generator)
    state, ys = torch.zeros(b, h, n, p, dtype=torch.float64), []
    for step in range(t):
        decay = torch.exp(dt[:, step] * a)[..., None, None]  # (B, H, 1, 1)
        state = decay * state + dt[:, step, :, None, None] * (
            bb[:, step, :, :, None] * x[:, step, :, None, :])
        ys.append(torch.einsum("bhnp,bhn->bhp", state, cc[:, step]))
    ssd = torch.stack(ys, 1)
    o, final = scalar_decay_chunk(cc, bb, x * dt[..., None], a * dt, scale=1.0, chunk_size=8,
                                  output_final_state=True)
    torch.testing.assert_close(o, ssd, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(final, state, atol=1e-10, rtol=1e-10)


FORMS = [
    (scalar_decay_recurrent, scalar_decay_chunk, ("g",)),
    (scalar_decay_recurrent, scalar_decay_parallel, ("g",)),
    (gated_delta_recurrent, gated_delta_chunk, ("g", "beta")),
    (mlstm_recurrent, mlstm_chunk, ("i", "f")),
    (mlstm_recurrent, mlstm_parallel, ("i", "f")),
]


@pytest.mark.parametrize(("reference", "form", "gates"), FORMS,
                         ids=[f.__name__ for _, f, _ in FORMS])
def test_every_form_equals_the_loop_in_float64(reference, form, gates):
    generator = torch.Generator().manual_seed(2)
    b, t, h, k_dim, v_dim = 2, 70, 3, 7, 5
    q, k = randn(b, t, h, k_dim, generator=generator), randn(b, t, h, k_dim, generator=generator)
    v = randn(b, t, h, v_dim, generator=generator)
    if "beta" in gates:
        k = F.normalize(k, dim=-1)
    values = {"g": F.logsigmoid(torch.rand(b, t, h, generator=generator,
                                           dtype=torch.float64)) / 4,
              "beta": torch.rand(b, t, h, generator=generator, dtype=torch.float64),
              "i": randn(b, t, h, generator=generator),
              "f": randn(b, t, h, generator=generator) + 3}
    args = [values[name] for name in gates]
    want, want_state = reference(q, k, v, *args, output_final_state=True)
    got, got_state = form(q, k, v, *args, output_final_state=True)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    for mine, theirs in zip(*(s if isinstance(s, tuple) else (s,)
                              for s in (got_state, want_state))):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(("call", "says"), [
    (lambda q, k, v, g: scalar_decay_chunk(q, k[..., :1], v, g), "k has shape"),
    (lambda q, k, v, g: scalar_decay_chunk(q, k, v, g[:, :2]), "g has shape"),
    (lambda q, k, v, g: scalar_decay_chunk(q, k, v, g, chunk_size=0),
     "chunk_size 0 is invalid"),
    (lambda q, k, v, g: scalar_decay_chunk(q[:1], k[:1], v[:1], g[:1],
                                           cu_seqlens=torch.tensor([0, 3, 2])),
     re.escape("cu_seqlens [0, 3, 2] is invalid; expected non-decreasing offsets")),
    (lambda q, k, v, g: scalar_decay_chunk(q, k, v, g, cu_seqlens=torch.tensor([0, 4])),
     "cu_seqlens needs a batch of 1"),
    (lambda q, k, v, g: scalar_decay_chunk(q, k, v, g, initial_state=torch.zeros(5, 1, 2, 2)),
     re.escape("initial_state has a part of shape (5, 1, 2, 2); expected (2, 1, 2, 2)")),
])
def test_a_bad_call_is_one_line_naming_the_bad_value(call, says):
    q, k, v, g = torch.zeros(2, 4, 1, 2), torch.zeros(2, 4, 1, 2), torch.zeros(2, 4, 1, 2), \
        torch.zeros(2, 4, 1)
    with pytest.raises(ValueError, match=says) as raised:
        call(q, k, v, g)
    assert "\n" not in str(raised.value)


def test_op_cases_are_validated_and_round_trip_through_records():
    case = OpCase(seq_len=16, lengths=(0, 0, 16), heads=2, with_state=True, chunk_size=8)
    assert case_from_dict(json.loads(json.dumps(case.to_dict()))) == case
    assert case.cu_seqlens.tolist() == [0, 0, 0, 16] and case.sequences == 3
    with pytest.raises(ValueError, match=r"lengths=\(3, 4\) sum to 7; expected seq_len=8"):
        OpCase(seq_len=8, lengths=(3, 4))
    with pytest.raises(ValueError, match="variable lengths are one concatenated batch"):
        OpCase(seq_len=7, batch=2, lengths=(3, 4))


def fixed_scale_op(q, k, v, g, beta, *, initial_state=None, output_final_state=False,
                   cu_seqlens=None):
    """A kernel with no scale keyword: q always times K^-1/2."""
    return gated_delta_recurrent(q, k, v, g, beta, initial_state=initial_state,
                                 output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def test_an_op_without_a_scale_keyword_is_not_given_one():
    """Its signature says it takes no scale: the cases that pass one are not supported, saying
    why, instead of failing on a TypeError; every other case runs."""
    spec = spec_from_function(fixed_scale_op, family_name="gated_delta")
    assert not spec.capabilities.scale and "no scale" in spec.capabilities.differences(
        spec.family_def)
    assert spec.why_not(OpCase(seq_len=8, scale=1.0)) == "not supported: the scale keyword"
    assert spec.why_not(OpCase(seq_len=8)) is None
    assert spec_from_function(lambda q, k, v, g, beta, **kwargs: None, name="by-kwargs",
                              family_name="gated_delta").capabilities.scale


USER_OP = '''
"""A user's kernel with fla's signature, nothing declared."""
from harness.ops.gated_delta import gated_delta_chunk


def my_gated_delta(q, k, v, g, beta, *, scale=None, initial_state=None,
                   output_final_state=False, cu_seqlens=None, chunk_size=64):
    return gated_delta_chunk(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                             chunk_size=chunk_size)
'''


@pytest.fixture
def user_op(tmp_path, monkeypatch) -> list[str]:
    """A user's module with an fla-signature kernel, importable from the working directory."""
    (tmp_path / "userops.py").write_text(textwrap.dedent(USER_OP))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"name": "tiny", "cases": [
        OpCase(seq_len=64, heads=2).to_dict()], "phases": ["inference"]}))
    return ["--impl-fn", "userops:my_gated_delta", "--family", "gated_delta"]


def test_a_kernel_with_fla_s_signature_runs_through_run_and_bench(user_op, tmp_path):
    assert main(["run", *user_op, "--suite", "values", "--suite", "chunking", "--workers",
                 "0", "--out", "run"]) == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").open()]
    assert {r["impl"] for r in records} == {"my-gated-delta"}
    assert any(r["check"] == "chunk_size_invariance" and r["outcome"] == "passed"
               for r in records)  # a chunk_size keyword: every chunk size is taken
    assert main(["bench", *user_op, "--impl", "gated-delta-recurrent", "--grid", "grid.json",
                 "--workers", "1", "--min-run-time", "0.01", "--no-memory", "--no-first-call",
                 "--no-peak", "--out", "bench"]) == 0
    timed = {json.loads(x)["impl"] for x in (tmp_path / "bench" / "records.jsonl").open()}
    assert {"my-gated-delta", "gated-delta-recurrent"} <= timed


@pytest.mark.slow
def test_a_kernel_with_fla_s_signature_runs_through_the_gate(user_op, tmp_path):
    code = main(["gate", "--base-impl", "gated-delta-chunk", "--head-impl-fn",
                 "userops:my_gated_delta", "--family", "gated_delta", "--grid", "grid.json",
                 "--phase", "inference", "--workers", "6", "--max-workers", "6",
                 "--min-run-time", "0.01", "--out", "gate"])
    # The same kernel twice: the verdict (OK, REGRESSION, INCONCLUSIVE) is the statistics'
    # business; a summary of both sides' six processes each is this test's.
    assert code in (0, 1, 2, 4)
    assert (tmp_path / "gate" / "summary.md").is_file()
    for side in ("base", "head"):
        timed = [json.loads(x) for x in (tmp_path / "gate" / side / "records.jsonl").open()]
        assert len({r["metrics"]["worker"] for r in timed}) == 6


DOCS = (Path(__file__).resolve().parent.parent / "docs" / "ops.md").read_text()
STAND_IN = '''

def retention_bhtd(q, k, v, decay, scale, state):
    """A stand-in for a user's [B, H, T, D] kernel taking decay factors (the doc's import)."""
    import torch

    from harness.ops.scalar_decay import scalar_decay_chunk

    o, final = scalar_decay_chunk(*(t.transpose(1, 2) for t in (q, k, v)),
                                  torch.log(decay).transpose(1, 2), scale=scale,
                                  initial_state=state, output_final_state=True)
    return o.transpose(1, 2), final
'''


@pytest.fixture
def fresh_mypkg():
    """The docs' mypkg, forgotten afterwards: README's tests import a mypkg of their own in the
    same worker process."""
    yield
    for name in [n for n in sys.modules if n == "mypkg" or n.startswith("mypkg.")]:
        del sys.modules[name]


def test_the_docs_examples_run_as_written(tmp_path, monkeypatch, fresh_mypkg):
    """docs/ops.md: its two modules become mypkg.kernels (with a stand-in for the [B, H, T, D]
    kernel the second imports) and mypkg.adapters; every command runs, narrowed."""
    kernels, adapters = re.findall(r"^```python\n(.*?)^```", DOCS, flags=re.S | re.M)
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kernels.py").write_text(kernels + STAND_IN)
    (package / "adapters.py").write_text(adapters)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = [line.strip() for block in re.findall(r"^```sh\n(.*?)^```", DOCS, flags=re.S | re.M)
             for line in block.splitlines() if line.strip()]
    assert len(lines) == 5
    for n, line in enumerate(lines):
        argv = shlex.split(line, comments=True)[1:]
        if argv[0] == "run":
            # the suites' cases but the long ones (T = 1000, 1024, 2100: the loop's seconds)
            argv += ["--suite", "values", "--suite", "varlen", "--workers", "0",
                     "-k", "not T1000 and not T1024 and not T2100"]
        else:
            if "--impl" not in argv and "--impl-fn" not in argv:  # the speed section's
                argv += ["--impl", "scalar-decay-chunk"]  # commands, one fast entry
            argv += ["--phase", "inference", "--workers", "1", "--min-run-time", "0.01",
                     "--no-memory", "--no-first-call", "--no-peak"]
        assert main([*argv, "--out", str(tmp_path / f"out{n}")]) == 0, line
        records = [json.loads(x) for x in (tmp_path / f"out{n}" / "records.jsonl").open()]
        assert any(r["outcome"] == "passed" for r in records)
        assert not any(r["outcome"] == "failed" for r in records), line


def constant_stabiliser_mlstm(q, k, v, i, f, *, scale=None, initial_state=None,
                              output_final_state=False, cu_seqlens=None, chunk_size=64):
    """A correct mLSTM form whose final stabiliser m is a constant for autograd (as fused
    kernels keep it): the same values, and the gradient of what the state means (C e^m, n e^m)
    reaches the inputs through C and n instead of m."""
    o, state = mlstm_chunk(q, k, v, i, f, scale=scale, initial_state=initial_state,
                           output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                           chunk_size=chunk_size)
    if state is None:
        return o, None
    c, n, m = state
    moved = (m - m.detach()).exp()  # 1, carrying m's gradient
    return o, (c * moved[..., None, None], n * moved[..., None], m.detach())


def test_an_mlstm_form_with_a_constant_stabiliser_passes_the_gradient_checks(tmp_path):
    """The final state's gradients are compared through what it means (C e^(m - m_ref),
    n e^(m - m_ref)), never through m itself: a form that carries m as a constant, or another
    stabiliser, is as correct as the reference (both failed op_gradients_match_reference and
    op_gradcheck when the loss took the raw parts)."""
    code = main(["run", "--impl-fn", f"{__name__}:constant_stabiliser_mlstm", "--family",
                 "mlstm", "--suite", "gradients", "--workers", "0", "--confirm-alone", "0",
                 "--no-report", "--out", str(tmp_path)])
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert {r["outcome"] for r in records} <= {"passed", "not supported"}, [
        r["message"] for r in records if r["outcome"] == "failed"]
    assert code == 0 and sum(r["outcome"] == "passed" for r in records) >= 8


PICKY_OPS = '''
"""A kernel for T a multiple of 4 only, and one of another family's signature."""
from harness.ops.scalar_decay import scalar_decay_chunk


def multiple_of_four(q, k, v, g, **kwargs):
    if q.shape[1] % 4:
        raise RuntimeError(f"T={q.shape[1]} must be a multiple of 4")
    return scalar_decay_chunk(q, k, v, g, **kwargs)


def two_gates(q, k, v, g, beta, *, output_final_state=False):
    raise AssertionError("never called")
'''


def test_an_op_raising_on_some_cases_is_checked_and_one_of_another_signature_refused(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "pickyops.py").write_text(PICKY_OPS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--impl-fn", "pickyops:multiple_of_four", "--family", "scalar_decay",
                 "--suite", "values", "-k", "matches_reference and (T15-B2-H4-K16-V16-state or "
                 "T64-B2-H4-K16-V16-state)", "--workers", "0", "--out", "run"]) == 1
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").open()]
    values = [r for r in records if r["check"] == "matches_reference"]
    raised = [r for r in values if r["outcome"] == "failed"]
    assert [r["case"]["seq_len"] for r in raised] == [15]
    assert "T=15 must be a multiple of 4" in raised[0]["message"]
    assert [r["case"]["seq_len"] for r in values if r["outcome"] == "passed"] == [64]
    capsys.readouterr()
    assert main(["run", "--impl-fn", "pickyops:two_gates", "--family", "scalar_decay",
                 "--workers", "0", "--out", "refused"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not take family scalar_decay's arguments (q, k, v, g" in error
    assert "missing a required argument: 'beta'" in error
    assert not (tmp_path / "refused" / "records.jsonl").exists()
