"""A check that failed because the implementation raised: where one plain call on the case's
own inputs raises the same exception, the case is shrunk while it still does, the exception
is said in a sentence (its type and first line), and the repro script makes that one call, so
the traceback a user steps through is the implementation's, not a check's.

A check whose exception no plain call shows (it raised under the check's own calls: a backward
pass, a state fed back, strided inputs) gets no diagnosis: its reproduce command stays the way
to see it.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.diagnosis import op_diagnose, shrink

TOTAL_S = 30.0  # seconds of shrinking per implementation in one process; then no more
SAID = 200  # characters of the exception's first line in the sentence


def call_once(spec: ImplSpec, case: Case | OpCase) -> None:
    """One call of the implementation on the case's own inputs (its fixed seeds), as a user
    would make it: autograd on, nothing compared. Raises what the implementation raises."""
    if isinstance(case, OpCase):
        subject = OpSubject(spec, case)
        subject.run(subject.inputs())
    else:
        subject = Subject(spec, case)
        subject.run(subject.build(), subject.inputs())


def raised_by(spec: ImplSpec, case: Case | OpCase) -> Exception | None:
    """What one plain call raises on ``case`` (None: it returns)."""
    try:
        call_once(spec, case)
    except Exception as error:
        return error
    return None


def first_line(error: BaseException) -> str:
    line = (str(error).strip().splitlines() or [""])[0]
    return line if len(line) <= SAID else line[:SAID - 3] + "..."


@dataclasses.dataclass(frozen=True)
class Raised:
    """One plain call raises ``kind`` on ``case`` and still on ``smallest``; ``message``: the
    exception's first line there."""

    case: Case | OpCase
    smallest: Case | OpCase
    kind: str
    message: str

    @property
    def sentence(self) -> str:
        said = f": {self.message}" if self.message else ""
        return (f"one plain call of the implementation on the check's inputs raises "
                f"{self.kind}{said} (the repro script makes that call: the traceback is the "
                "implementation's)")

    @property
    def names(self) -> tuple[str, ...]:
        return (f"raises-{self.kind}",)

    def to_metrics(self) -> dict:
        return {"signatures": list(self.names), "sentence": self.sentence,
                "smallest_case": self.smallest.id, "smallest": shrink.describe(self.smallest),
                "raises": self.kind}


class Raisings:
    """The raised failures of one implementation in this process, each case's remembered, with
    a budget of shrinking time (then no more)."""

    def __init__(self, spec: ImplSpec, budget_s: float = TOTAL_S) -> None:
        self.spec, self.budget_s, self.spent_s = spec, budget_s, 0.0
        self.found: dict[tuple[str, str], Raised | None] = {}

    def of(self, case: Case | OpCase, error: BaseException) -> Raised | None:
        """The diagnosis of a check that raised ``error`` on ``case``: None where one plain call
        on the case does not raise the same type, or the budget is spent."""
        kind = type(error)
        key = (case.id, kind.__qualname__)
        if key not in self.found:
            if self.spent_s >= self.budget_s:
                return None
            started = time.monotonic()
            self.found[key] = self._diagnose(case, kind)
            self.spent_s += time.monotonic() - started
        return self.found[key]

    def _diagnose(self, case: Case | OpCase, kind: type) -> Raised | None:
        def still_raises(candidate) -> bool:
            return type(raised_by(self.spec, candidate)) is kind

        with torch.random.fork_rng():  # the checks after this one draw as they would have
            if not still_raises(case):
                return None
            if isinstance(case, OpCase):
                smallest = op_diagnose.shrink(self.spec, case, still_raises)
            else:
                smallest = shrink.shrink(self.spec, case, still_raises)
            error = raised_by(self.spec, smallest)
        return Raised(case, smallest, kind.__name__, first_line(error))
