"""Records as one pandas DataFrame: the single input of every report section.

All records of the given run directories, each row with the machine it ran on (named by what
tells machines apart; a timing's also by its torch thread count where runs on one machine used
different ones: timings at one and at two threads are different series, never pooled) and its
run directory. A run given twice is refused: it would count twice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import pandas as pd

from harness.core.machine import labels
from harness.latency.jobs import LATENCY
from harness.records import ResultsError, RunInfo, load_run, record_rows


def to_frame(dirs: Sequence[str | os.PathLike]) -> tuple[list[RunInfo], pd.DataFrame]:
    """All records of the given run directories as one frame, with the run's machine attached.
    A run given twice (the same run id in two directories) is refused: it would count twice."""
    infos, runs, seen = [], [], {}
    for directory in dirs:
        info, records = load_run(directory, on_partial=warn)
        if info.run_id in seen:
            raise ResultsError(f"{directory}: run {info.run_id} is already given as "
                               f"{seen[info.run_id]}; each run may be merged once")
        seen[info.run_id] = directory
        infos.append(info)
        runs.append((directory, records))
    machines = labels([(i.fingerprint, i.processor, i.cuda) for i in infos])
    rows = []
    for (directory, records), machine, setting in zip(runs, machines, settings(infos)):
        for row in record_rows(records):
            row["machine"] = setting if row["suite"] == LATENCY else machine
            row["run_dir"] = str(directory)
            rows.append(row)
    columns = ["impl", "family", "suite", "check", "outcome", "case_id", "case", "max_error",
               "tolerance", "rtol", "compared", "duration_s", "message", "nodeid", "origin",
               "metrics", "run_id", "machine", "run_dir"]
    return infos, pd.DataFrame(rows, columns=columns)


def settings(infos: Sequence[RunInfo]) -> list[str]:
    """Per run, what its timings were measured on: the machine, named by what tells machines
    apart (two "AMD EPYC" of different ISA levels), plus the torch thread count where runs on
    that machine used different ones ("AMD EPYC (AVX2), 2 threads")."""
    names = labels([(i.fingerprint, i.processor, i.cuda) for i in infos])
    counts: dict[str, set[int]] = {}
    for name, info in zip(names, infos):
        counts.setdefault(name, set()).add(info.threads)
    return [f"{name}, {info.threads} thread{'' if info.threads == 1 else 's'}"
            if len(counts[name]) > 1 else name for name, info in zip(names, infos)]


def warn(message: str) -> None:
    print(f"seq-harness: warning: {message}", file=sys.stderr)
