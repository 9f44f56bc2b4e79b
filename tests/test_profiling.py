"""Profiling: traces where TensorBoard and Perfetto look for them, the operator table, torch's
globals left as they were, and bad input refused with the bad value named."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import torch

from harness.core.case import Case
from harness.core.phases import PHASES
from harness.profiling.request import ProfileError, ProfileRequest, parse_shape
from harness.profiling.run import ProfileResult, profile
from harness.registry import choose_one
from harness.report.profile import size_text, write_profile_document


def resolve_spec(impl=None, impl_class=None, family=None):
    return choose_one(impl=impl, impl_class=impl_class, family=family)

TINY = "5,2,3,4"
# The tensorboard handler's layout, which the torch-tb-profiler plugin reads.
TB_NAME = re.compile(r"^[\w-]+\.\d+\.pt\.trace\.json$")


@dataclass
class Profiled:
    """One profile run, and torch's global state around it."""

    impl: str
    phase: str
    result: ProfileResult
    threads_after: int
    rng_unchanged: bool

    def trace_names(self) -> set[str]:
        events = json.loads(self.result.trace.read_text())["traceEvents"]
        return {e.get("name", "") for e in events}


@pytest.fixture(
    scope="module",
    params=[("torch-lstm", "inference"), ("scratch-gru", "forward_backward")],
    ids=lambda p: "-".join(p),
)
def profiled(request, tmp_path_factory) -> Profiled:
    impl, phase = request.param
    out = tmp_path_factory.mktemp("profile") / impl
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    # A caller's thread count that differs from the profile's, to see it put back.
    torch.set_num_threads(2)
    try:
        spec = resolve_spec(impl)
        req = ProfileRequest(spec, parse_shape(TINY), phase=phase, steps=2, warmup=1)
        result = profile(req, out, argv=["seq-harness", "profile", impl, "--shape", TINY])
        threads_after = torch.get_num_threads()
        write_profile_document(req, result)
    finally:
        torch.set_num_threads(threads)
    return Profiled(impl, phase, result, threads_after, torch.equal(rng, torch.get_rng_state()))


def test_trace_json_is_a_chrome_trace(profiled):
    data = json.loads(profiled.result.trace.read_text())
    assert profiled.result.trace == profiled.result.out / "trace.json"
    assert isinstance(data["traceEvents"], list) and data["traceEvents"]
    names = profiled.trace_names()
    assert any(n.startswith("aten::") for n in names)
    # Only the active steps are kept: #0 is the schedule's wait step, #1 its warm-up step.
    assert {n for n in names if n.startswith("ProfilerStep#")} == {"ProfilerStep#2",
                                                                   "ProfilerStep#3"}


def test_tensorboard_dir_holds_one_trace_in_the_plugin_layout(profiled):
    traces = list((profiled.result.out / "tb").glob("*.pt.trace.json"))
    assert traces == [profiled.result.tb_trace]
    assert TB_NAME.match(traces[0].name), traces[0].name
    assert traces[0].name.startswith(f"{profiled.impl}_{profiled.phase}.")
    data = json.loads(traces[0].read_text())
    assert data["traceEvents"]
    assert traces[0].read_bytes() == profiled.result.trace.read_bytes()


def test_report_names_the_run_and_tables_the_operators(profiled):
    text = (profiled.result.out / "profile.md").read_text()
    assert profiled.result.report == profiled.result.out / "profile.md"
    for fact in (profiled.impl, "T5-B2-I3-H4", profiled.phase, torch.__version__,
                 "| threads            | 1 ", "tensorboard --logdir", "torch-tb-profiler>=0.4.3",
                 "ui.perfetto.dev", "chrome://tracing", f"seq-harness profile {profiled.impl}"):
        assert fact in text, fact
    assert re.search(r"^\| `aten::\w+` +\| \d+ ", text, re.MULTILINE), text
    assert "| operator" in text and "self CPU (ms)" in text and "CPU mem" in text


def test_operator_frame_is_sorted_and_holds_only_operators(profiled):
    frame = profiled.result.operators
    assert 0 < len(frame) <= 20
    assert list(frame["self_cpu_ms"]) == sorted(frame["self_cpu_ms"], reverse=True)
    assert not frame["operator"].str.startswith(("ProfilerStep", "seq-harness/")).any()
    assert frame["self_cpu_share"].between(0, 1).all() and frame["self_cpu_share"].sum() <= 1
    assert (frame["calls"] > 0).all()
    assert profiled.result.device_operators is None  # a CPU case records no device time
    assert profiled.result.step_ms > 0


def test_phase_decides_what_runs(profiled):
    names = profiled.trace_names()
    backward = any("Backward" in n for n in names)
    if profiled.phase == "forward_backward":
        assert {"seq-harness/forward", "seq-harness/backward"} <= names and backward
    else:
        assert "seq-harness/inference" in names and not backward


def test_threads_are_put_back_and_the_global_rng_is_untouched(profiled):
    assert profiled.threads_after == 2
    assert profiled.rng_unchanged


def test_an_earlier_profile_is_refused_then_replaced_with_overwrite(tmp_path):
    req = ProfileRequest(resolve_spec("torch-gru"), parse_shape(TINY), steps=1, warmup=0)
    out = tmp_path / "p"
    profile(req, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"already holds a profile.*--overwrite") as caught:
        profile(req, out)
    assert str(out) in str(caught.value)
    result = profile(req, out, overwrite=True)
    assert list((out / "tb").glob("*.pt.trace.json")) == [result.tb_trace]
    assert (out / "notes.txt").read_text() == "mine"  # only a profile's own files are removed


def test_a_failing_implementation_is_a_profile_error_and_leaves_out_alone(tmp_path):
    out = tmp_path / "p"
    profile(ProfileRequest(resolve_spec("torch-gru"), parse_shape(TINY), steps=1), out)
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    spec = resolve_spec(None, "tests.mutants.broken:RaisingGRU", "gru")
    with pytest.raises(ProfileError) as caught:
        profile(ProfileRequest(spec, parse_shape(TINY)), out, overwrite=True)
    assert spec.name in str(caught.value) and "T5-B2-I3-H4" in str(caught.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_cuda_is_refused_before_anything_runs(tmp_path):
    req = ProfileRequest(resolve_spec("torch-lstm"), parse_shape(TINY, device="cuda"))
    with pytest.raises(ValueError, match=r"'cuda' is unavailable.*valid here: cpu"):
        profile(req, tmp_path / "p")
    assert not (tmp_path / "p").exists()


# Input ---------------------------------------------------------------------------------------


def test_shape_gives_the_case():
    assert parse_shape("100,64,512,512") == Case(100, 64, 512, 512)
    assert parse_shape(" 7, 3,2 ,5,2", device="cuda") == Case(7, 3, 2, 5, num_layers=2,
                                                              device="cuda")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "''"),
        ("5,2,3", "'5,2,3'"),
        ("5,2,3,4,2,9", "'5,2,3,4,2,9'"),
        ("5,2,x,4", "input_size 'x'"),
        ("5,0,3,4", "batch '0'"),
        ("5,-2,3,4", "batch '-2'"),
        ("5,2,3,4.5", "hidden_size '4.5'"),
        ("5,2,3,4,", "num_layers ''"),
        ("5,2,3,+4", "hidden_size '+4'"),
    ],
)
def test_bad_shape_is_refused_naming_the_value(text, named):
    with pytest.raises(ValueError) as caught:
        parse_shape(text)
    message = str(caught.value)
    assert f"--shape {text!r}" in message and named in message and "T,B,I,H" in message


@pytest.mark.parametrize("phase", ["backward", "Inference", "", "train"])
def test_bad_phase_is_refused_naming_the_value_and_the_choices(phase):
    with pytest.raises(ValueError) as caught:
        ProfileRequest(resolve_spec("torch-lstm"), parse_shape(TINY), phase=phase)
    message = str(caught.value)
    assert repr(phase) in message and all(p in message for p in PHASES)


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("threads", 0), ("warmup", -1), ("top", 0), ("steps", 1.5), ("threads", True)],
)
def test_bad_counts_are_refused_naming_the_value(field, value):
    with pytest.raises(ValueError, match=rf"{field}={value!r} is invalid"):
        ProfileRequest(resolve_spec("torch-lstm"), parse_shape(TINY), **{field: value})


def test_a_case_outside_the_claimed_contract_is_refused():
    case = parse_shape(TINY, dtype="float16")
    with pytest.raises(ValueError, match=r"torch-lstm cannot run case .*f16.*dtype float16"):
        ProfileRequest(resolve_spec("torch-lstm"), case)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((None, None, None), "name one implementation"),
        (("torch-lstm", "harness.impls.scratch:ScratchGRU", "gru"), "name one implementation"),
        (("nope",), "'nope'"),
        (("torch-lstm", None, "gru"), "--family 'gru'"),
        ((None, "harness.impls.scratch:ScratchGRU", None), "needs --family"),
    ],
)
def test_the_implementation_must_be_exactly_one(args, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        resolve_spec(*args)


def test_size_text():
    assert [size_text(n) for n in (0, 472, -472, 86_700, 3 * 1024**3, 5 * 1024**4)] == [
        "0 B", "472 B", "-472 B", "84.7 KiB", "3.0 GiB", "5120.0 GiB"]
