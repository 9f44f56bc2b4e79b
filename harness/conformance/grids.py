"""Case grids the suites share: small exact-check shapes and the layout/length variations that
real bugs hide behind.

Sizes follow PyTorch's own RNN tests (sequence 5, batch 3, input 3, hidden 7, up to 3 layers):
small enough for exact float32 comparisons at 1e-5, large enough that a swapped gate or a
transposed state cannot cancel out by accident.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from harness.core.case import Case
from harness.core.families import Family

BASE = Case(seq_len=5, batch=3, input_size=3, hidden_size=7)


def product(base: Case = BASE, **axes: Iterable) -> list[Case]:
    """Every combination of the given field values on top of ``base``."""
    names = list(axes)
    return [base.with_(**dict(zip(names, values)))
            for values in itertools.product(*(axes[n] for n in names))]


def layouts(base: Case = BASE) -> list[Case]:
    """batch_first x bidirectional x 1-3 layers."""
    return product(base, batch_first=(False, True), bidirectional=(False, True),
                   num_layers=(1, 2, 3))


def varlen(fam: Family, *, batch_first: bool | None = None) -> list[Case]:
    """Variable-length batches: sorted and unsorted lengths, with and without hx, both
    directions, stacked layers, float64, and PyTorch's own 2-layer bidirectional packed case."""
    cases = [
        BASE.with_(lengths=(5, 3, 1)),                       # sorted, longest first
        BASE.with_(lengths=(2, 5, 3)),                       # unsorted
        BASE.with_(lengths=(2, 5, 3), with_hx=True),
        BASE.with_(lengths=(3, 5, 1), bidirectional=True),
        BASE.with_(lengths=(3, 5, 1), bidirectional=True, with_hx=True, num_layers=2),
        BASE.with_(lengths=(4, 2, 5), batch_first=True, bidirectional=True),
        BASE.with_(lengths=(1, 4, 2), num_layers=2, dtype="float64", with_hx=True),
        BASE.with_(seq_len=10, batch=7, lengths=(10, 10, 6, 2, 2, 1, 1), num_layers=2,
                   bidirectional=True),
        BASE.with_(seq_len=6, batch=4, lengths=(6, 6, 6, 6)),  # packed, nothing shorter
        BASE.with_(batch=1, lengths=(3,), bidirectional=True),  # one sequence, padded
    ]
    if fam.supports_proj:
        cases.append(BASE.with_(lengths=(2, 5, 3), proj_size=4, bidirectional=True,
                                with_hx=True))
    if batch_first is not None:
        cases = [c.with_(batch_first=batch_first) for c in cases]
    return cases
