"""The markdown report of one or more runs: a summary line, every section in order (the verdict
first), then the runs it was made from (commands, machines, commits).

Sections are modules of harness.report.sections, each ``render(frame, output) -> lines``; with
``output`` (where the report will be written), sections that draw plots save them beside it and
link them relatively. Anything that came from an implementation (names, error messages) is
escaped, so a ``|`` or a newline cannot break a table.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.core.machine import labels
from harness.core.text import code, md
from harness.records import AS_TORCH, OUTCOMES, RunInfo
from harness.report.frame import to_frame
from harness.report.sections import SECTIONS


def header(infos: Sequence[RunInfo]) -> list[str]:
    commands = [f"Produced by {code(shlex.join(i.argv))}." for i in infos if i.argv]
    names = labels([(i.fingerprint, i.processor, i.cuda) for i in infos])
    rows = [
        {
            "run": md(i.run_id),
            "machine": md(name),
            "threads": i.threads,
            "torch": md(i.torch),
            "python": md(i.python),
            "commit": md((i.git_commit or "—")[:12] + (" + changes" if i.git_modified else "")),
            "created": md(i.created),
        }
        for i, name in zip(infos, names)
    ]
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    resumes = [line for i in infos if i.resumes for line in (resumed(i), "")]
    notes = [*resumes, *(line for i in infos if i.stopped for line in (stop_line(i), ""))]
    return [*commands, "", table, "", *notes] if commands else [table, "", *notes]


def stop_line(info: RunInfo) -> str:
    """A line for a run that ended before every selected check ran."""
    return (f"**Run {md(info.run_id)} stopped early**: {md(info.stopped)}. Its records are the "
            "checks run by then, not every selected one.")


def resumed(info: RunInfo) -> str:
    """A line for a run continued by --resume: when, by what, and whether other code ran."""
    last = info.resumes[-1]
    times = "once" if len(info.resumes) == 1 else f"{len(info.resumes)} times"
    code_note = (" **on other code than its start** (its records come from more than one "
                 "code state; the history counts it as modified)" if info.mixed else
                 ", on the code it started with")
    return (f"Run {md(info.run_id)} was resumed {times}, last at {md(last.get('at', '?'))} by "
            f"{code(shlex.join(last.get('argv', [])))}{code_note}.")


def render(dirs: Sequence[str | os.PathLike], output: Path | None = None) -> str:
    """The report's markdown (see the module docstring)."""
    infos, frame = to_frame(dirs)
    counts = frame["outcome"].value_counts()
    summary = ", ".join(f"{int(counts.get(o, 0))} {o}" for o in OUTCOMES
                        if o != AS_TORCH or counts.get(o, 0))
    lines = ["# seq-harness report", "",
             f"{len(frame)} records over {frame['impl'].nunique()} implementations and "
             f"{frame['suite'].nunique()} suites: {summary}. The runs, commands and machines "
             "are at the end.", ""]
    lines += [line for i in infos if i.stopped for line in (stop_line(i), "")]
    if frame.empty:
        return "\n".join([*lines, "No checks were recorded.", "", "## Runs", "",
                          *header(infos)])
    for section in SECTIONS:
        lines += section.render(frame, None if output is None else Path(output))
    lines += ["## Runs", "", *header(infos)]
    return "\n".join(lines)


def write_report(dirs: Sequence[str | os.PathLike], output: str | os.PathLike) -> Path:
    """Render the report of ``dirs`` into ``output`` (a markdown file)."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(dirs, path)
    path.write_text(text)
    return path
