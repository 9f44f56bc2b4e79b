"""determinism: two calls of an op on the same inputs, on the CPU, are bitwise equal — output
and final state."""

from __future__ import annotations

import torch

from harness.conformance.op_grids import BASE
from harness.conformance.plugin import cases
from harness.conformance.suites import SuiteInfo

SUITE = SuiteInfo(order=16)


@cases(lambda fam: [BASE.with_(seq_len=100), BASE.with_(seq_len=83, batch=1,
                                                       lengths=(1, 17, 0, 65))], kind="op")
def test_bitwise_repeatable(subject, check):
    if subject.case.device != "cpu":
        check.not_supported(f"device {subject.case.device}: bitwise repeatability is a CPU "
                            "promise (GPU kernels may use atomics)")
    inputs = subject.inputs()
    first, second = subject.run(inputs).named(), subject.run(inputs).named()
    for name, tensor in first.items():
        same = torch.equal(tensor, second[name]) or bool(
            (tensor.isnan() == second[name].isnan()).all()
            and torch.equal(tensor.nan_to_num(0.0), second[name].nan_to_num(0.0)))
        check.holds(f"{name} repeated", same,
                    f"{name} differs between two calls on the same inputs: largest difference "
                    f"{float((tensor.double() - second[name].double()).abs().max()):.3g}")
