"""Synthetic results directories for the history tests: one run per fake commit, written with the
project's own RecordWriter and RunInfo, latency in two worker processes with log-normal noise, a
few conformance checks; a step in latency or a check that starts failing where a test puts it."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from harness.records import Record, RecordWriter, RunInfo, write_run_info

FINGERPRINT = {"cpu": "Test CPU 9000", "cpu_id": "GenuineTest 6 85 7", "isa": "AVX2",
               "arch": "x86_64", "cores": 2, "memory_gib": 8, "blas": "MKL 2024",
               "onednn": "3.3"}
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
IMPLS = ("torch-gru", "torch-lstm")
PHASES = ("inference", "forward_backward")
SHAPE = "T100-B64-I256-H256"
CHECKS = ("matches_reference", "padding_invariance", "state_does_not_leak")


def fake_commit(index: int) -> str:
    return f"{index:04d}" + "c0ffee" * 6


def run_info(index: int, *, fingerprint=None, processor="Test CPU 9000", run_id=None,
             platform="Linux-6.1-x86_64", dirty=None) -> RunInfo:
    return RunInfo(
        run_id=run_id or f"run-{index:04d}", created=(START + timedelta(hours=index)).isoformat(),
        harness_version="0.1.0", torch="2.3.0", python="3.11.7", platform=platform,
        processor=processor, threads=1, cuda=None, git_commit=fake_commit(index),
        argv=["seq-harness", "job"], fingerprint=dict(fingerprint or FINGERPRINT),
        git_modified=dirty)


def write_run(directory: Path, info: RunInfo, records: list[Record]) -> Path:
    write_run_info(directory, info)
    writer = RecordWriter(directory)
    try:
        for record in records:
            writer.write(record)
    finally:
        writer.close()
    return directory


def timing(impl: str, phase: str, worker: int, samples_s: list[float], run_id: str) -> Record:
    return Record(impl=impl, family=impl.split("-")[-1], suite="latency", check=phase,
                  outcome="passed", case_id=SHAPE,
                  case={"seq_len": 100, "batch": 64, "device": "cpu", "dtype": "float32"},
                  origin="builtin", run_id=run_id,
                  metrics={"samples_s": samples_s, "worker": worker, "threads": 1,
                           "number_per_run": 10})


def check(impl: str, name: str, outcome: str, run_id: str, message=None) -> Record:
    return Record(impl=impl, family=impl.split("-")[-1], suite="values", check=name,
                  outcome=outcome, case_id="T5-B3-I3-H7",
                  case={"seq_len": 5, "batch": 3, "device": "cpu", "dtype": "float32"},
                  origin="builtin", message=message, run_id=run_id)


def build_history(root: Path, runs: int, *, noise: float = 0.02, seed: int = 0,
                  step_at: int | None = None, step: float = 0.10, step_impl: str = "torch-gru",
                  fail_at: int | None = None, first: int = 0, **info_options) -> list[Path]:
    """``runs`` run directories root/run-NNNN for commits first..first+runs-1. Each times every
    implementation and phase in two processes (base 1 ms, x (1 + step) for ``step_impl``'s
    inference from run ``step_at`` on), with run-to-run noise ``noise`` (log sd) and a little
    per-process noise; checks pass, except ``matches_reference`` of torch-gru from ``fail_at``
    on."""
    rng = np.random.default_rng(seed)
    made = []
    for index in range(first, first + runs):
        info = run_info(index, **info_options)
        records = []
        for impl in IMPLS:
            for phase in PHASES:
                level = 1e-3 * (2.0 if phase == "forward_backward" else 1.0)
                if step_at is not None and index >= step_at and impl == step_impl \
                        and phase == "inference":
                    level *= 1.0 + step
                run_level = level * math.exp(rng.normal(0.0, noise))
                for worker in range(2):
                    samples = run_level * np.exp(rng.normal(0.0, noise / 4, size=5))
                    records.append(timing(impl, phase, worker, [float(s) for s in samples],
                                          info.run_id))
            for name in CHECKS:
                failing = fail_at is not None and index >= fail_at and impl == "torch-gru" \
                    and name == "matches_reference"
                records.append(check(impl, name, "failed" if failing else "passed",
                                     info.run_id, "h_n differs by 0.3" if failing else None))
        made.append(write_run(root / f"run-{index:04d}", info, records))
    return made


def build_gate(root: Path, index: int, *, ratio: float, anchor: int = 0, ref: str = "v1.0",
               processes: int = 10, spread: float = 0.005, seed: int = 0,
               **info_options) -> Path:
    """A gate directory root (base/, head/, summary's verdicts in gate.json) of commit
    ``index`` against the anchor commit ``anchor`` (``ref``): torch-gru's inference timed in
    ``processes`` processes per side, head ``ratio`` x base with per-process noise ``spread``;
    its verdicts by the gate's own code (one look)."""
    from harness.gate.compare import gate_dirs, pair, per_process
    from harness.gate.sequential import Schedule, look
    from harness.gate.verdicts_file import write_verdicts

    rng = np.random.default_rng(seed)
    sides = {}
    for side, commit, level in (("base", anchor, 1e-3), ("head", index, 1e-3 * ratio)):
        info = run_info(index, run_id=f"gate-{index:04d}-{side}", **info_options)
        info = RunInfo(**{**info.__dict__, "git_commit": fake_commit(commit)})
        records = [timing("torch-gru", "inference", worker,
                          [float(s) for s in level * np.exp(rng.normal(0.0, spread))
                           * (1 + 0.01 * np.arange(5))], info.run_id)
                   for worker in range(processes)]
        sides[side] = (write_run(root / side, info, records), records)
    comparisons, _ = pair(per_process(sides["base"][1]), per_process(sides["head"][1]))
    progress = look(None, comparisons, schedule=Schedule(processes, 5, processes), alpha=0.01,
                    min_effect=0.03)
    summary = gate_dirs(root / "base", root / "head", progress, min_effect=0.03,
                        stopped="the most, --max-workers", title=f"gate at {ref}")
    write_verdicts(summary, root, base_ref=ref, alpha=0.01, min_effect=0.03)
    return root
