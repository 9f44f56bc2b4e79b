"""TF32 on CUDA: the setting, its guard in TorchState, where runs and benches carry it; and the
training mode of modules that checks take gradients through (cuDNN refuses backward in eval)."""

from __future__ import annotations

import pytest
import torch

from harness.conformance.isolation import TorchState
from harness.conformance.session import SuiteRun
from harness.core.case import Case
from harness.core.precision import set_tf32, tf32_mode
from harness.core.subject import Subject
from harness.latency.grids import load_grid
from harness.latency.jobs import job_payload
from harness.latency.plan import Plan
from harness.records import RunInfo
from harness.registry import Registry


@pytest.fixture
def restored_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_set_tf32_sets_both_cudnn_and_matmul(restored_tf32):
    set_tf32("on")
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert tf32_mode() == "on"
    set_tf32("off")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert tf32_mode() == "off"
    torch.backends.cudnn.allow_tf32 = True  # torch's own default: either one is TF32
    assert tf32_mode() == "on"


def test_set_tf32_names_a_bad_mode(restored_tf32):
    with pytest.raises(ValueError, match=r"tf32 'yes' is invalid; expected one of off, on"):
        set_tf32("yes")


def test_torch_state_puts_tf32_back_and_names_it(restored_tf32):
    set_tf32("off")
    saved = TorchState.capture()
    torch.backends.cudnn.allow_tf32 = True  # what an implementation under test might do
    changed = saved.restore()
    assert "cudnn_tf32" in changed and not torch.backends.cudnn.allow_tf32


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: run.json records tf32")
def test_run_info_has_no_tf32_without_cuda():
    assert RunInfo.collect(run_id="r1", argv=[]).tf32 is None


def test_a_suite_run_passes_tf32_to_every_check():
    options = SuiteRun(files=(), out=".", tf32="on").options()
    assert options[options.index("--tf32") + 1] == "on"
    assert "--tf32" in SuiteRun(files=(), out=".").options()


def test_bench_jobs_carry_tf32():
    registry = Registry.load()
    plan = Plan(specs=(registry.specs["fast-rnn"],), grid=load_grid("smoke"),
                phases=("inference",), workers=1, min_run_time=0.01, threads=1, tf32="on")
    spec, task = plan.tasks()[0]
    assert job_payload(spec, task, plan)["tf32"] == "on"


def test_modules_for_gradients_keep_eval_mode_where_torch_gives_gradients_in_eval():
    """On the CPU torch's modules backpropagate in eval mode: gradient checks keep the case's
    mode (eval), so an implementation that drops autograd in eval mode is caught there."""
    registry = Registry.load()
    case = Case(seq_len=3, batch=2, input_size=3, hidden_size=4)
    subject = Subject(registry.specs["torch-gru"], case)
    assert not subject.build().training
    assert not subject.build(gradients=True).training
    assert not subject.train_for_gradients
    assert Subject(registry.specs["torch-gru"], case.with_(training=True)).build().training
