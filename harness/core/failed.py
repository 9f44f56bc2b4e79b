"""What a failed check raises: the one exception the suites' adapter records as a failed check
(any other is "raised during the check"). Here, below every stage that raises it."""

from __future__ import annotations


class CheckFailed(AssertionError):
    """A conformance check found a difference from the expected behaviour."""


class Explained(CheckFailed):
    """A failure whose check knows its cause: ``pattern`` names it, ``sentence`` says it with the
    fix, and the diagnosis records them as found instead of searching (the failing case is one
    its shrinking cannot rebuild, say weights at an extreme, which ``at`` names)."""

    def __init__(self, message: str, *, pattern: str, sentence: str, at: str = "") -> None:
        super().__init__(message)
        self.pattern, self.sentence, self.at = pattern, sentence, at
