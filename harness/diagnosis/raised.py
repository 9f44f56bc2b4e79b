"""A check that failed because the implementation raised: where one plain call on the case's
own inputs raises the same exception, the case is shrunk while it still does, the exception
is said in a sentence (its type and first line), and the repro script makes that one call, so
the traceback a user steps through is the implementation's, not a check's.

Where the check takes a backward pass and the forward call alone returns, the call is tried with
one backward pass (random upstream gradients into inputs, state and parameters): an in-place
write to a tensor autograd saved raises only there. A check whose exception neither shows (it
raised under the check's own calls: a state fed back, strided inputs, a batch the check made)
gets no diagnosis: its reproduce command stays the way to see it.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from harness.core import backprop
from harness.core.case import Case
from harness.core.op_case import OpCase
from harness.core.op_subject import OpSubject
from harness.core.spec import ImplSpec
from harness.core.subject import Subject
from harness.diagnosis import op_diagnose, shrink

TOTAL_S = 30.0  # seconds of shrinking per implementation in one process; then no more
SAID = 200  # characters of the exception's first line in the sentence


def call_once(spec: ImplSpec, case: Case | OpCase, *, backward: bool = False) -> None:
    """One call of the implementation on the case's own inputs (its fixed seeds), as a user
    would make it: autograd on, nothing compared; with ``backward``, one backward pass from
    random upstream gradients too (into the inputs, the state and every parameter). Raises
    what the implementation raises."""
    if isinstance(case, OpCase):
        subject = OpSubject(spec, case)
        if backward:
            backprop.gradients(spec.factory, subject, subject.inputs(), None)
        else:
            subject.run(subject.inputs())
        return
    subject = Subject(spec, case)
    module, inputs = subject.build(), subject.inputs()
    if backward:
        backprop.backward(lambda given: subject.run(module, given), module, inputs, None,
                          seed=case.data_seed)
    else:
        subject.run(module, inputs)


def raised_by(spec: ImplSpec, case: Case | OpCase, *, backward: bool = False
              ) -> Exception | None:
    """What one plain call (with ``backward``, and its backward pass) raises on ``case``
    (None: it returns)."""
    try:
        call_once(spec, case, backward=backward)
    except Exception as error:
        return error
    return None


def first_line(error: BaseException) -> str:
    line = (str(error).strip().splitlines() or [""])[0]
    return line if len(line) <= SAID else line[:SAID - 3] + "..."


@dataclasses.dataclass(frozen=True)
class Raised:
    """One plain call (``backward``: one forward and backward pass) raises ``kind`` on ``case``
    and still on ``smallest``; ``message``: the exception's first line there."""

    case: Case | OpCase
    smallest: Case | OpCase
    kind: str
    message: str
    backward: bool = False  # the call's backward pass raises it, its forward pass does not

    @property
    def call(self) -> str:
        return ("one forward and backward pass" if self.backward else "one plain call")

    @property
    def sentence(self) -> str:
        said = f": {self.message}" if self.message else ""
        return (f"{self.call} of the implementation on the check's inputs raises "
                f"{self.kind}{said} (the repro script makes that call: the traceback is the "
                "implementation's)")

    @property
    def names(self) -> tuple[str, ...]:
        return (f"raises-{self.kind}",)

    def to_metrics(self) -> dict:
        return {"signatures": list(self.names), "sentence": self.sentence,
                "smallest_case": self.smallest.id, "smallest": shrink.describe(self.smallest),
                "raises": self.kind, "call": self.call}


class Raisings:
    """The raised failures of one implementation in this process, each case's remembered, with
    a budget of shrinking time (then no more)."""

    def __init__(self, spec: ImplSpec, budget_s: float = TOTAL_S) -> None:
        self.spec, self.budget_s, self.spent_s = spec, budget_s, 0.0
        self.found: dict[tuple[str, str, bool], Raised | None] = {}

    def of(self, case: Case | OpCase, error: BaseException, *, backward: bool = False
           ) -> Raised | None:
        """The diagnosis of a check that raised ``error`` on ``case``: None where one plain call
        on the case (where the check takes a backward pass, ``backward``: then one with its
        backward pass too) does not raise the same type, or the budget is spent."""
        kind = type(error)
        key = (case.id, kind.__qualname__, backward)
        if key not in self.found:
            if self.spent_s >= self.budget_s:
                return None
            started = time.monotonic()
            with torch.random.fork_rng():  # the checks after this one draw as they would have
                found = self._diagnose(case, kind, backward=False)
                if found is None and backward:
                    found = self._diagnose(case, kind, backward=True)
            self.found[key] = found
            self.spent_s += time.monotonic() - started
        return self.found[key]

    def _diagnose(self, case: Case | OpCase, kind: type, *, backward: bool) -> Raised | None:
        def still_raises(candidate) -> bool:
            return type(raised_by(self.spec, candidate, backward=backward)) is kind

        if not still_raises(case):
            return None
        if isinstance(case, OpCase):
            smallest = op_diagnose.shrink(self.spec, case, still_raises)
        else:
            smallest = shrink.shrink(self.spec, case, still_raises)
        error = raised_by(self.spec, smallest, backward=backward)
        return Raised(case, smallest, kind.__name__, first_line(error), backward)
