"""What a diagnosis found for one failing case, and how it says it: the record every diagnoser
returns (modules', ops', the backward pass's), its sentence, names and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.case import Case
from harness.diagnosis.behaviours import Behaviour
from harness.diagnosis.shrink import describe
from harness.diagnosis.signatures import Signature


@dataclass(frozen=True)
class Diagnosis:
    """What the diagnosis found for one implementation on one failing case.

    case: the failing case; smallest: the smallest case that still fails (the same when it
    could not shrink); error: the plain reference's largest difference there; matched: the
    signatures whose transformed reference equals the implementation there; tried: how many
    signatures applied; reference: how messages name the reference ("torch lstm");
    behaviours: what experiments over several calls showed, where no signature matched
    (harness.diagnosis.behaviours); backward: a check of gradients failed where the forward
    pass equals the reference's on the case itself (nothing else showed); differing: then the
    gradients that differ on the smallest case (harness.diagnosis.backward)."""

    case: Case
    smallest: Case
    error: float
    matched: tuple[Signature, ...]
    tried: int
    reference: str
    behaviours: tuple[Behaviour, ...] = ()
    backward: bool = False
    differing: tuple[str, ...] = ()

    @property
    def sentence(self) -> str:
        if self.backward and self.matched:
            first, *others = self.matched
            said = (f"its forward pass equals {self.reference} and its gradients equal "
                    f"{self.reference}'s with {first.says}: {first.hint}")
            if others:
                said += " (they also equal " + "; ".join(s.says for s in others) + ")"
            return said
        if self.backward and not self.differing:
            return (f"its forward pass equals {self.reference} on this case, and so do its "
                    "gradients in a plain call: the bug is in the backward pass as this check "
                    "calls it (twice in one graph, an output changed in place, a zero or "
                    "detached initial state, a frozen model, after an inference call: see the "
                    "check's description; the report's reproduce command runs it)")
        if self.backward:
            which = ""
            if self.differing:  # the directions of one parameter gradient said once
                named = dict.fromkeys(n.split(" (along")[0] for n in self.differing)
                verb = "differs" if len(named) == 1 else "differ"
                which = f" ({', '.join(named)} {verb} on the smallest failing case)"
            tried = f" ({self.tried} tried)" if self.tried else ""
            return (f"its forward pass equals {self.reference} on this case and its gradients "
                    f"do not{which}: the bug is in the backward pass (a custom "
                    "autograd.Function's backward, a .detach() or .data in the forward, an "
                    "in-place write to a tensor saved for backward); no known bug pattern names "
                    f"it further{tried}")
        if self.behaviours and not self.matched:
            first, *others = self.behaviours
            said = f"it {first.says}: {first.hint}"
            if others:
                said += " (it also " + "; ".join(b.says for b in others) + ")"
            return said
        if not self.matched:
            return (f"no known bug pattern matches ({self.tried} tried on the smallest failing "
                    f"case, {describe(self.smallest)})")
        first, *others = self.matched
        said = f"output equals {self.reference} with {first.says}: {first.hint}"
        if others:
            said += " (it also equals " + "; ".join(s.says for s in others) + ")"
        return said

    @property
    def names(self) -> tuple[str, ...]:
        return (("backward-only",) if self.backward else ()) + tuple(
            s.name for s in (*self.matched, *self.behaviours))

    def to_metrics(self) -> dict:
        return {"signatures": list(self.names), "sentence": self.sentence,
                "smallest_case": self.smallest.id, "smallest": describe(self.smallest),
                "error": self.error, "tried": self.tried}
