"""``--atol``/``--rtol``: a one-off run's tolerance for every value check, in place of the
declared ones (harness.conformance.tolerance resolves which applies). Apart from the tolerances
themselves so that the command line and the xdist controller check the two numbers without
importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Override:
    """``--atol``/``--rtol`` of a one-off run (None where not given)."""

    atol: float | None = None
    rtol: float | None = None

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 1e300):
                raise ValueError(f"--{name} {value} is invalid; expected a finite number >= 0")

    @property
    def given(self) -> bool:
        return self.atol is not None or self.rtol is not None
