"""Failures: a section per failing check with its smallest failing case, the command that
reproduces it (and whether it fails alone), and the checks that were skipped, with why."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pandas as pd

from harness.conformance.alone import reproduce_argv
from harness.conformance.suites import suite_names
from harness.core.text import code, md
from harness.records import FAILED, PASSED, SKIPPED


def render(frame: pd.DataFrame, output: Path | None) -> list[str]:
    """## Failures (always), ## Skipped (when some check was)."""
    if frame.empty:
        return []
    lines = ["## Failures", ""]
    lines += diagnoses(frame)
    lines += failures(frame, output) or ["None: every check that ran passed.", ""]
    skipped = frame[frame["outcome"] == SKIPPED]
    if not skipped.empty:
        kinds = skipped["suite"].map(lambda suite: "timings" if suite == "latency" else "checks")
        reasons = pd.Series(list(zip(kinds, skipped["message"].fillna("")))).value_counts()
        lines += ["## Skipped", ""]
        lines += [f"- {int(n)} {kind}: {md(reason)}" for (kind, reason), n in reasons.items()]
        lines.append("")
    return lines


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


def alone_lines(group: pd.DataFrame) -> list[str]:
    """What re-running the failure alone in a fresh process showed, when it was done: on the
    check's first failing case, which need not be the smallest one the section shows."""
    confirmed = [row for _, row in group.iterrows()
                 if isinstance(row["metrics"], dict) and "alone" in row["metrics"]]
    if not confirmed:
        return []
    row = confirmed[0]
    case = "" if row["case_id"] == group.iloc[0]["case_id"] else f" (case {code(row['case_id'])})"
    if row["metrics"]["alone"] == "failed":
        return [f"Fails alone too{case}: confirmed in a fresh process.", ""]
    if row["metrics"]["alone"] != "passed":
        return []
    target = shlex.split(reproduce(row))[:-2]  # the same command without -k: the whole suite
    return [f"**Passed when run alone**{case} in a fresh process: this check fails only after "
            "the checks that ran before it in the same process (process-wide state leaked). "
            f"Reproduce with them: {code(shlex.join([*target, '--workers', '0']))}.", ""]


def diagnosis_of(row) -> dict:
    metrics = row["metrics"] if isinstance(row["metrics"], dict) else {}
    found = metrics.get("diagnosis")
    return found if isinstance(found, dict) else {}


def diagnoses(frame: pd.DataFrame) -> list[str]:
    """What the failed value checks were diagnosed as (harness.diagnosis): per implementation
    and diagnosis, the checks it explains and the smallest case that still fails."""
    failed = frame[frame["outcome"] == FAILED]
    rows: dict[tuple[str, str], dict] = {}
    for _, row in failed.iterrows():
        found = diagnosis_of(row)
        if not found:
            continue
        entry = rows.setdefault((row["impl"], found["sentence"]), {
            "implementation": md(row["impl"]), "diagnosis": md(found["sentence"]),
            "smallest failing case": md(found.get("smallest", "")), "checks": set()})
        entry["checks"].add(f"{row['suite']}::{row['check']}")
    if not rows:
        return []
    table = [{**entry, "checks": f"{len(entry['checks'])}: " + ", ".join(
        md(c) for c in sorted(entry["checks"]))} for entry in rows.values()]
    return ["### Diagnosis", "",
            "Each failed value check was shrunk to the smallest case that still fails and tried "
            "against the family's known bug patterns (the reference with a known mistake): a "
            "pattern is named only where the reference with that mistake equals the "
            "implementation and the plain reference does not.", "",
            pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]


def script_line(script: str | None, run_dir: str, output: Path | None,
                raises: str | None = None) -> list[str]:
    """A link to the check's repro script (``script`` is relative to the run's directory),
    relative to where the report is written; ``raises``: what its call is and raises."""
    if not script:
        return []
    path = Path(run_dir) / script
    if output is not None:
        path = Path(os.path.relpath(path.resolve(), output.resolve().parent))
    what = raises or "both results side by side"
    return [f"Repro script (the smallest case, {what}): "
            f"[{md(str(path))}]({path.as_posix()}) — run it with `python {path.as_posix()}`.",
            ""]


def failures(frame: pd.DataFrame, output: Path | None = None) -> list[str]:
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
        message = first["message"] if isinstance(first["message"], str) else "no message"
        said = diagnosis_of(first)
        message = message.split("\ndiagnosis: ")[0]
        lines += [
            f"### {number}. {md(impl)} · {md(suite)} · {md(check)}",
            "",
            f"Failed on {len(group)} of {len(ran)} cases. Smallest: {code(first['case_id'])}.",
            "",
            f"> {md(message)}",
            "",
            *([f"**Diagnosis**: {md(said['sentence'])}. Smallest failing case: "
               f"{md(said.get('smallest', ''))}.", ""] if said else []),
            *(script_line(said.get("script"), first["run_dir"], output,
                          said.get("raises") and f"{said.get('call')}, which raises "
                          f"{said['raises']}") if said else []),
            f"Reproduce: {code(reproduce(first))}",
            "",
            *alone_lines(group),
        ]
        if first["machine"]:
            lines += [f"Machine: {md(first['machine'])}.", ""]
        others = [code(c) for c in group["case_id"].iloc[1:] if c]
        if others:
            lines += ["<details><summary>Other failing cases</summary>", "",
                      ", ".join(others), "", "</details>", ""]
    return lines
