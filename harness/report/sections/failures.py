"""Failures: a section per failing check with its smallest failing case, the command that
reproduces it (and whether it fails alone), and the checks that were skipped, with why."""

from __future__ import annotations

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
    lines += failures(frame) or ["None: every check that ran passed.", ""]
    skipped = frame[frame["outcome"] == SKIPPED]
    if not skipped.empty:
        reasons = skipped["message"].fillna("").value_counts()
        lines += ["## Skipped", ""]
        lines += [f"- {int(n)} checks: {md(reason)}" for reason, n in reasons.items()]
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
