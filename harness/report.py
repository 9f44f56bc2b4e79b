"""The markdown report of one or more runs: what passed, what failed, by how much, and how to
reproduce each failure.

Records become a pandas DataFrame; every table is rendered by tabulate (DataFrame.to_markdown).
Anything that came from an implementation (names, error messages) is escaped, so a ``|`` or a
newline cannot break a table.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.alone import reproduce_argv
from harness.core.machine import labels
from harness.core.text import code, md
from harness.records import (
    FAILED,
    NOT_SUPPORTED,
    OUTCOMES,
    PASSED,
    SKIPPED,
    ResultsError,
    RunInfo,
    load_run,
    record_rows,
)
from harness.selection import suite_names, suite_rank


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
    # Machines are named by what tells them apart (two "AMD EPYC" of different ISA levels).
    names = labels([(i.fingerprint, i.processor, i.cuda) for i in infos])
    rows = []
    for (directory, records), name in zip(runs, names):
        for row in record_rows(records):
            row["machine"] = name
            row["run_dir"] = str(directory)
            rows.append(row)
    columns = ["impl", "family", "suite", "check", "outcome", "case_id", "case", "max_error",
               "tolerance", "rtol", "compared", "duration_s", "message", "nodeid", "origin",
               "metrics", "run_id", "machine", "run_dir"]
    return infos, pd.DataFrame(rows, columns=columns)


def warn(message: str) -> None:
    print(f"seq-harness: warning: {message}", file=sys.stderr)


def cell(group: pd.DataFrame) -> str:
    """One matrix cell: passes out of checks run, failures flagged, not-supported counted."""
    counts = group["outcome"].value_counts()
    passed, failed = int(counts.get(PASSED, 0)), int(counts.get(FAILED, 0))
    unsupported, skipped = int(counts.get(NOT_SUPPORTED, 0)), int(counts.get(SKIPPED, 0))
    ran = passed + failed
    parts = []
    if failed:
        parts.append(f"❌ {failed} of {ran} failed")
    elif ran:
        parts.append(f"✅ {passed}")
    if unsupported:
        parts.append(f"{unsupported} n/s")
    if skipped:
        parts.append(f"{skipped} skipped")
    return " · ".join(parts) or "—"


def worst(series: pd.Series) -> str:
    values = series.dropna()
    return "—" if values.empty else f"{values.max():.1e}"


MEASURED_ONLY = ("latency",)  # suites with their own section and no place in the matrix


def matrix(frame: pd.DataFrame) -> str:
    """Implementations x suites: counts per cell, and the worst error of each implementation."""
    frame = frame[~frame["suite"].isin(MEASURED_ONLY)]
    suites = sorted(dict.fromkeys(frame["suite"]), key=suite_rank)
    by_machine = frame["machine"].nunique() > 1  # several machines: a row per machine
    keys = ["machine", "impl", "family"] if by_machine else ["impl", "family"]
    rows = []
    for values, group in frame.groupby(keys, sort=False):
        named = dict(zip(keys, values))
        row = {"machine": md(named["machine"])} if by_machine else {}
        row.update({"implementation": md(named["impl"]), "family": md(named["family"])})
        for suite in suites:
            in_suite = group[group["suite"] == suite]
            row[md(suite)] = cell(in_suite) if len(in_suite) else "—"
        row["worst error"] = worst(group["max_error"])
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def errors_matrix(frame: pd.DataFrame) -> str:
    """Worst absolute error per implementation x suite (checks that compare numbers)."""
    measured = frame.dropna(subset=["max_error"])
    if measured.empty:
        return ""
    table = measured.pivot_table(index="impl", columns="suite", values="max_error",
                                 aggfunc="max", sort=False)
    table = table[sorted(table.columns, key=suite_rank)]
    table = table.map(lambda v: "—" if pd.isna(v) else f"{v:.1e}")
    table.index = [md(i) for i in table.index]
    table.columns = [md(c) for c in table.columns]
    return table.to_markdown(disable_numparse=True)


def size_of(case: object) -> int:
    if not isinstance(case, dict):
        return 0
    batch = 1 if case.get("batch") is None else case["batch"]
    layers = case.get("num_layers", 1) * (2 if case.get("bidirectional") else 1)
    return case.get("seq_len", 0) * batch * case.get("hidden_size", 0) * layers


def reproduce(row: pd.Series) -> str:
    """A command that runs exactly this check on exactly this case."""
    if row["suite"] not in suite_names():  # e.g. an entry point that failed to load
        return "seq-harness list"
    return shlex.join(["seq-harness", *reproduce_argv(
        impl=row["impl"], family=row["family"], suite=row["suite"], nodeid=row["nodeid"] or "",
        origin=str(row["origin"] or ""))])


def alone_lines(row: pd.Series) -> list[str]:
    """What re-running the failure alone in a fresh process showed, when it was done."""
    metrics = row["metrics"] if isinstance(row["metrics"], dict) else {}
    if metrics.get("alone") == "failed":
        return ["Fails alone too: confirmed in a fresh process.", ""]
    if metrics.get("alone") != "passed":
        return []
    target = shlex.split(reproduce(row))[:-2]  # the same command without -k: the whole suite
    return ["**Passed when run alone** in a fresh process: this check fails only after the "
            "checks that ran before it in the same process (process-wide state leaked). "
            f"Reproduce with them: {code(shlex.join([*target, '--workers', '0']))}.", ""]


def failures(frame: pd.DataFrame) -> list[str]:
    """A section per failing check: the smallest failing case as the reproducer, the others
    listed."""
    failed = frame[frame["outcome"] == FAILED]
    lines: list[str] = []
    groups = failed.groupby(["impl", "suite", "check"], sort=False)
    for number, ((impl, suite, check), group) in enumerate(groups, start=1):
        ran = frame[(frame["impl"] == impl) & (frame["suite"] == suite)
                    & (frame["check"] == check) & frame["outcome"].isin([PASSED, FAILED])]
        group = group.assign(size=group["case"].map(size_of)).sort_values("size", kind="stable")
        first = group.iloc[0]
        lines += [
            f"### {number}. {md(impl)} · {md(suite)} · {md(check)}",
            "",
            f"Failed on {len(group)} of {len(ran)} cases. Smallest: {code(first['case_id'])}.",
            "",
            f"> {md(first['message'] if isinstance(first['message'], str) else 'no message')}",
            "",
            f"Reproduce: {code(reproduce(first))}",
            "",
            *alone_lines(first),
        ]
        if first["machine"]:
            lines += [f"Machine: {md(first['machine'])}.", ""]
        others = [code(c) for c in group["case_id"].iloc[1:] if c]
        if others:
            lines += ["<details><summary>Other failing cases</summary>", "",
                      ", ".join(others), "", "</details>", ""]
    return lines


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
            "commit": md((i.git_commit or "—")[:12]),
            "created": md(i.created),
        }
        for i, name in zip(infos, names)
    ]
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return [*commands, "", table, ""] if commands else [table, ""]


def render(dirs: Sequence[str | os.PathLike], output: Path | None = None) -> str:
    """The report's markdown. With ``output`` (where it will be written), sections that draw
    plots save them beside it and link them relatively."""
    infos, frame = to_frame(dirs)
    counts = frame["outcome"].value_counts()
    summary = ", ".join(f"{int(counts.get(o, 0))} {o}" for o in OUTCOMES)
    lines = ["# seq-harness report", "", *header(infos)]
    lines += [
        "## Summary",
        "",
        f"{len(frame)} records over {frame['impl'].nunique()} implementations and "
        f"{frame['suite'].nunique()} suites: {summary}.",
        "",
    ]
    if frame.empty:
        return "\n".join([*lines, "No checks were recorded.", ""])
    if frame["suite"].isin(MEASURED_ONLY).all():
        lines += ["## Conformance", "", "This run has timings only.", ""]
    else:
        lines += [
            "## Conformance",
            "",
            "Each cell counts the checks of one suite on one implementation: ✅ all passed, "
            "❌ failures out of those run; *n/s* are cases outside what the implementation "
            "claims (not counted as passes). Worst error is the largest absolute difference "
            "from the torch reference of the family with the same weights.",
            "",
            matrix(frame),
            "",
        ]
    errors = errors_matrix(frame[~frame["suite"].isin(MEASURED_ONLY)])
    if errors:
        lines += ["### Worst absolute error per suite", "", errors, ""]
    if output is not None:
        for section in SECTIONS:
            lines += section(frame, Path(output))
    failing = failures(frame)
    lines += ["## Failures", ""]
    lines += failing or ["None: every check that ran passed.", ""]
    skipped = frame[frame["outcome"] == SKIPPED]
    if not skipped.empty:
        reasons = skipped["message"].fillna("").value_counts()
        lines += ["## Skipped", ""]
        lines += [f"- {int(n)} checks: {md(reason)}" for reason, n in reasons.items()]
        lines.append("")
    return "\n".join(lines)


def measurement_sections(frame: pd.DataFrame, output: Path) -> list[str]:
    """Sections of suites that measure more than pass or fail (their modules render them)."""
    from harness import adding, bench, stability

    lines: list[str] = []
    for module in (stability, adding, bench):
        lines += module.report_section(frame, output)
    return lines


SECTIONS = (measurement_sections,)


def write_report(dirs: Sequence[str | os.PathLike], output: str | os.PathLike) -> Path:
    """Render the report of ``dirs`` into ``output`` (a markdown file)."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(dirs, path)
    path.write_text(text)
    return path
