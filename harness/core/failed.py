"""What a failed check raises: the one exception the suites' adapter records as a failed check
(any other is "raised during the check"). Here, below every stage that raises it."""

from __future__ import annotations


class CheckFailed(AssertionError):
    """A conformance check found a difference from the expected behaviour."""
