"""One check outcome or one measurement: the Record, the unit every stage writes and reads.

Records are written as JSON lines (harness.records.files) and carry the schema version; a record
of a check says not only pass or fail but by how much, against which tolerance, on how many
compared values, and how to reproduce it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

SCHEMA_VERSION = 2  # 2 added the outcome "as torch"
READABLE_VERSIONS = (1, 2)  # a version-1 file is a version-2 file without "as torch"

PASSED, FAILED, NOT_SUPPORTED, SKIPPED = "passed", "failed", "not supported", "skipped"
AS_TORCH = "as torch"
OUTCOMES = (PASSED, FAILED, AS_TORCH, NOT_SUPPORTED, SKIPPED)


class ResultsError(ValueError):
    """A results file that cannot be read: names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class Record:
    """One check outcome (or one measurement).

    impl, family, suite, check: what ran; check is the suite's test name without ``test_``.
    case: the Case as a dict (None for checks that are not about one case); case_id its id.
    outcome: passed, failed, as torch (failed the CPU contract exactly as torch's own module
        does on this device, e.g. cuDNN refusing a non-contiguous hx: reported apart from
        failures), not supported (outside the claimed contract) or skipped (the environment
        lacks something, e.g. CUDA).
    max_error, tolerance, rtol: the largest absolute error the check compared, and its bound.
    compared: how many values the check compared (a check that compared none is not a pass).
    duration_s: wall time of the check. message: why it failed or was not run.
    nodeid: the pytest node that reproduces it; origin: the entry's source (MODULE:CLASS for
        --impl-class); metrics: further named figures.
    """

    impl: str
    family: str
    suite: str
    check: str
    outcome: str
    case_id: str = ""
    case: dict[str, Any] | None = None
    max_error: float | None = None
    tolerance: float | None = None
    rtol: float | None = None
    compared: int | None = None
    duration_s: float = 0.0
    message: str | None = None
    nodeid: str = ""
    origin: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is invalid; valid: {', '.join(OUTCOMES)}")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies a check across runs: (impl, suite, check, case_id)."""
        return (self.impl, self.suite, self.check, self.case_id)

    def as_row(self) -> dict[str, Any]:
        """The fields as a dict, their values shared (not copied, as dataclasses.asdict would:
        a report reads ten thousand records)."""
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def to_json(self) -> str:
        data = {"schema_version": SCHEMA_VERSION, **self.as_row()}
        return json.dumps(data, allow_nan=True, sort_keys=False, default=plain)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        return cls(**{k: v for k, v in data.items() if k in FIELD_NAMES})


FIELD_NAMES = tuple(f.name for f in fields(Record))  # in the order records are written


def plain(value: Any) -> Any:
    """JSON for a dataclass a check put into its metrics."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"a record's metrics hold {type(value).__name__!r}, which JSON cannot "
                    "hold; valid: numbers, strings, lists, dicts, dataclasses")
