"""What to profile: one implementation, one case, one phase — validated before anything runs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.core.case import Case
from harness.core.phases import check_phase
from harness.core.spec import ImplSpec
from harness.core.values import integer_at_least

DEFAULT_SHAPE = "100,64,512,512"
SHAPE_FIELDS = ("seq_len", "batch", "input_size", "hidden_size", "num_layers")
SHAPE_USAGE = "expected T,B,I,H or T,B,I,H,L as positive integers, e.g. 100,64,512,512"


class ProfileError(RuntimeError):
    """The implementation failed while being profiled (one line naming the phase and case)."""


def parse_shape(text: str, *, device: str = "cpu", dtype: str = "float32") -> Case:
    """The case of a ``--shape`` string: ``T,B,I,H`` or ``T,B,I,H,L`` (num_layers)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (4, 5):
        raise ValueError(f"--shape {text!r} has {len(parts)} fields; {SHAPE_USAGE}")
    values: dict[str, int] = {}
    for name, part in zip(SHAPE_FIELDS, parts):
        # ASCII digits only: int() would also take '+3', '1_000' and non-ASCII digits.
        if not re.fullmatch(r"[0-9]+", part) or int(part) < 1:
            raise ValueError(f"--shape {text!r}: {name} {part!r} is invalid; {SHAPE_USAGE}")
        values[name] = int(part)
    return Case(**values, device=device, dtype=dtype)


@dataclass(frozen=True)
class ProfileRequest:
    """What to profile, validated on construction so bad input fails before anything runs.

    spec, case: the implementation and the configuration it runs (the case's device decides
        whether CUDA activity is recorded).
    phase: inference, forward or forward_backward (see PHASE_TEXT).
    steps: profiled steps; the tables are totals over them.
    warmup: plain steps before the profiler starts, so first-call costs (oneDNN primitive
        creation, allocator growth, lazy initialisation) stay out of the profile.
    wait, profiler_warmup: the profiler schedule's steps before recording: skipped, then traced
        and discarded (the profiler's own start-up cost lands there).
    threads: torch intra-op threads while profiling.
    top: rows of each operator table.
    """

    spec: ImplSpec
    case: Case
    phase: str = "inference"
    steps: int = 5
    warmup: int = 2
    wait: int = 1
    profiler_warmup: int = 1
    threads: int = 1
    top: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ImplSpec):
            raise TypeError(f"spec={self.spec!r} is invalid; expected an ImplSpec")
        if not isinstance(self.case, Case):
            raise TypeError(f"case={self.case!r} is invalid; expected a Case")
        check_phase(self.phase)
        for name, minimum in (("steps", 1), ("warmup", 0), ("wait", 0), ("profiler_warmup", 1),
                              ("threads", 1), ("top", 1)):
            integer_at_least(name, getattr(self, name), minimum)
        why = self.spec.why_not(self.case)
        if why is None and self.phase != "inference" and not self.spec.capabilities.autograd:
            why = "not supported: autograd (inference only: profile --phase inference)"
        if why is not None:
            raise ValueError(f"{self.spec.name} cannot run case {self.case.id}: {why}")

    @property
    def uses_cuda(self) -> bool:
        return self.case.device == "cuda"
