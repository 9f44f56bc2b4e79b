"""Latency benchmarks: shape grids, interleaved runs in fresh worker processes, records, a
pytest-benchmark export, and the latency section of the report.

Every (implementation, shape, phase) task is timed once in each of several fresh worker
processes, one process at a time (benchmarks never run beside anything else of ours), each
process taking the tasks in a different rotation so slow drift spreads over all of them. Next to
the tasks, each process times the machine's matmul-peak sweep (harness.peak), which gives the
fraction of this machine's matmul throughput an implementation reaches (the roofline column).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.case import Case
from harness.core.families import FAMILIES
from harness.core.spec import ImplSpec
from harness.peak import PEAK, Gemm, sweep
from harness.records import FAILED, PASSED, SKIPPED, Record, RecordWriter
from harness.timing import PHASES, Task, analytic_flops

SUITE = "latency"


@dataclass(frozen=True)
class Grid:
    """A named set of shapes, the families they are meant for, and default settings."""

    name: str
    cases: tuple[Case, ...]
    families: frozenset[str] | None = None  # None: every family
    phases: tuple[str, ...] = PHASES
    min_run_time: float = 0.5
    workers: int = 3

    def covers(self, spec: ImplSpec) -> bool:
        return self.families is None or spec.family in self.families


def varlen_cases(seq_len: int, batch: int, size: int) -> tuple[Case, ...]:
    """Lengths uniform in [T/3, T] (seeded), fed packed; and the same batch padded to T."""
    generator = np.random.default_rng(seq_len * 1000 + batch)
    lengths = tuple(int(n) for n in generator.integers(seq_len // 3, seq_len + 1, batch))
    lengths = (seq_len, *lengths[1:])  # the longest is the padded length
    padded = Case(seq_len=seq_len, batch=batch, input_size=size, hidden_size=size)
    return (padded.with_(lengths=lengths), padded)


GRIDS: dict[str, Grid] = {
    "smoke": Grid("smoke", (Case(seq_len=10, batch=4, input_size=32, hidden_size=32),),
                  min_run_time=0.05, workers=2),
    "standard": Grid("standard", (Case(seq_len=100, batch=64, input_size=512, hidden_size=512),),
                     min_run_time=1.0, workers=3),
    "deepbench": Grid(
        "deepbench",
        tuple(Case(seq_len=t, batch=b, input_size=h, hidden_size=h)
              for h in (256, 512) for b in (1, 4, 16, 64) for t in (25, 50)),
        families=frozenset({"lstm", "gru"}), phases=("inference", "forward_backward"),
        min_run_time=0.2, workers=2,
    ),
    "gate": Grid("gate", (Case(seq_len=50, batch=8, input_size=128, hidden_size=128),),
                 phases=("inference", "forward_backward"), min_run_time=0.3, workers=10),
    "varlen": Grid("varlen", varlen_cases(100, 16, 128) + varlen_cases(200, 16, 128),
                   min_run_time=0.3, workers=2),
}


def load_grid(name_or_path: str) -> Grid:
    """A built-in grid by name, or a JSON file {"name", "cases": [Case fields...], "families",
    "phases", "min_run_time", "workers"}; ValueError naming what is wrong."""
    if name_or_path in GRIDS:
        return GRIDS[name_or_path]
    path = Path(name_or_path)
    if not path.suffix == ".json" and not path.exists():
        raise ValueError(f"unknown grid {name_or_path!r}; valid: {', '.join(GRIDS)} or a "
                         "JSON grid file")
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"grid file {str(path)!r} cannot be read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"grid file {str(path)!r} does not parse: {error.msg} at line "
                         f"{error.lineno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise ValueError(f"grid file {str(path)!r} needs a non-empty \"cases\" list")
    try:
        cases = tuple(Case.from_dict(c) for c in data["cases"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"grid file {str(path)!r}: {error}") from None
    phases = tuple(data.get("phases", PHASES))
    for phase in phases:
        if phase not in PHASES:
            raise ValueError(f"grid file {str(path)!r}: phase {phase!r} is invalid; valid: "
                             f"{', '.join(PHASES)}")
    families = data.get("families")
    return Grid(str(data.get("name", path.stem)), cases,
                None if families is None else frozenset(families), phases,
                float(data.get("min_run_time", 0.5)), int(data.get("workers", 3)))


@dataclass(frozen=True)
class Plan:
    """Everything one benchmark run measures."""

    specs: tuple[ImplSpec, ...]
    grid: Grid
    phases: tuple[str, ...]
    workers: int
    min_run_time: float
    threads: int
    device: str = "cpu"
    cudnn_benchmark: tuple[bool, ...] = (True,)
    memory: bool = True

    def tasks(self) -> list[tuple[ImplSpec, Task]]:
        out = []
        for case in self.grid.cases:
            case = case.with_(device=self.device)
            for spec in self.specs:
                if not self.grid.covers(spec) or spec.why_not(case) is not None:
                    continue
                for phase in self.phases:
                    flags = self.cudnn_benchmark if self.device == "cuda" else (None,)
                    out += [(spec, Task(spec.name, case, phase, flag)) for flag in flags]
        return out

    def shapes(self) -> list[Case]:
        return [c.with_(device=self.device) for c in self.grid.cases]


def job_payload(spec: ImplSpec, task: Task, plan: Plan) -> dict[str, Any]:
    return {
        "impl": spec.name, "origin": spec.origin, "family": spec.family,
        "case": task.case.to_dict(), "phase": task.phase, "cudnn_benchmark": task.cudnn_benchmark,
        "min_run_time": plan.min_run_time, "threads": plan.threads, "memory": plan.memory,
    }


def resolve_spec(impl: str, origin: str, family: str) -> ImplSpec:
    """The spec a worker times: a --impl-class path, or a registry entry by name."""
    from harness.registry import Registry, spec_for_class_path

    if origin and ":" in origin:
        return spec_for_class_path(origin, family)
    return Registry.load().select([impl])[0]


def handle_job(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Runs inside a worker process."""
    from harness.timing import measure, measure_peak

    if kind == PEAK:
        gemm = Gemm(payload["backend"], payload["size"], payload["device"])
        timed = measure_peak(gemm, threads=payload["threads"],
                             min_run_time=payload["min_run_time"])
    else:
        case = Case.from_dict(payload["case"])
        spec = resolve_spec(payload["impl"], payload["origin"], payload["family"])
        task = Task(spec.name, case, payload["phase"], payload["cudnn_benchmark"])
        timed = measure(spec, task, threads=payload["threads"],
                        min_run_time=payload["min_run_time"], memory=payload["memory"],
                        slowdown=payload.get("slowdown", 0.0))
    return {"block_s": list(timed.block_s), "number_per_run": timed.number_per_run,
            "peak_bytes": timed.peak_bytes}


PEAK_RUN_TIME = 0.1  # seconds per point of the peak sweep in each process


def rotated(items: Sequence, k: int) -> list:
    """The k-th rotation, reversed on odd k: every worker sees a different order."""
    k = k % len(items) if items else 0
    order = list(items[k:]) + list(items[:k])
    return order[::-1] if k % 2 else order


@dataclass(frozen=True)
class Side:
    """One side of an interleaved measurement: what it times, where its records go, and the
    environment of its worker processes (e.g. PYTHONPATH at another commit)."""

    plan: Plan
    out: Path
    run_id: str
    env: dict[str, str] | None = None
    peak: bool = True
    slowdown: float = 0.0


def run(plan: Plan, out: Path, *, run_id: str, job_timeout_s: float = 600.0,
        progress: Callable[[str], None] | None = None) -> list[Record]:
    """Measure the plan; every result is appended to out/records.jsonl as it arrives."""
    return run_sides([Side(plan, out, run_id)], workers=plan.workers,
                     job_timeout_s=job_timeout_s, progress=progress)


def run_sides(sides: Sequence[Side], *, workers: int, job_timeout_s: float = 600.0,
              progress: Callable[[str], None] | None = None) -> list[Record]:
    """For each worker index, one fresh process per side, sides alternating (A B A B ...);
    every result is appended to its side's records as it arrives."""
    from harness.worker import Job, run_jobs

    writers = [RecordWriter(side.out) for side in sides]
    records: list[Record] = []
    try:
        for worker in range(workers):
            for index in range(len(sides)):
                side = sides[(index + worker) % len(sides)] if worker % 2 else sides[index]
                writer = writers[sides.index(side)]
                plan = side.plan
                jobs = [Job(f"{worker}:peak:{g.id}", PEAK,
                            {"backend": g.backend, "size": g.size, "device": g.device,
                             "threads": plan.threads, "min_run_time": PEAK_RUN_TIME})
                        for g in sweep(plan.device)] if side.peak else []
                # Peak memory does not vary between processes: the first one measures it.
                plan_w = plan if worker == 0 else replace(plan, memory=False)
                jobs += [Job(f"{worker}:{i}", "time",
                             {**job_payload(spec, task, plan_w), "slowdown": side.slowdown})
                         for i, (spec, task) in enumerate(plan.tasks())]
                specs = {s.name: s for s in plan.specs}
                for job, result in run_jobs(rotated(jobs, worker), threads=plan.threads,
                                            job_timeout_s=job_timeout_s, env=side.env):
                    record = to_record(job.kind, job.payload, result, specs, worker=worker,
                                       run_id=side.run_id, threads=plan.threads)
                    writer.write(record)
                    records.append(record)
                    if progress is not None:
                        progress(progress_line(record))
    finally:
        for writer in writers:
            writer.close()
    return records


def skip_all(plans: Sequence[Plan], out: Path, *, run_id: str, why: str) -> list[Record]:
    """A skipped record for every task of the plans (the environment lacks what they need)."""
    writer = RecordWriter(out)
    records = []
    try:
        for plan in plans:
            for spec, task in plan.tasks():
                record = Record(impl=spec.name, family=spec.family, suite=SUITE,
                                check=task.phase, outcome=SKIPPED, case_id=task.case.id,
                                case=task.case.to_dict(), message=why, origin=spec.origin,
                                run_id=run_id)
                writer.write(record)
                records.append(record)
    finally:
        writer.close()
    return records


def to_record(kind: str, payload: dict[str, Any], result: dict[str, Any], specs, *,
              worker: int, run_id: str, threads: int) -> Record:
    error = result.get("error")
    samples = result.get("block_s") or []
    metrics = {"samples_s": samples, "number_per_run": result.get("number_per_run"),
               "worker": worker, "threads": threads}
    if kind == PEAK:
        gemm = Gemm(payload["backend"], payload["size"], payload["device"])
        impl, family, check, origin = PEAK, PEAK, "gemm", ""
        case_id, case = gemm.id, None
        metrics.update(backend=gemm.backend, size=gemm.size, flops=gemm.flops)
    else:
        spec = specs[payload["impl"]]
        impl, family, check, origin = spec.name, spec.family, payload["phase"], spec.origin
        parsed = Case.from_dict(payload["case"])
        case_id, case = parsed.id, parsed.to_dict()
        metrics.update(peak_bytes=result.get("peak_bytes"),
                       cudnn_benchmark=payload.get("cudnn_benchmark"))
    return Record(
        impl=impl, family=family, suite=SUITE, check=check,
        outcome=FAILED if error else PASSED, case_id=case_id, case=case,
        duration_s=sum(samples) * (result.get("number_per_run") or 0),
        message=error, origin=origin, metrics=metrics, run_id=run_id,
    )


def progress_line(record: Record) -> str:
    samples = record.metrics.get("samples_s") or []
    figure = f"{statistics.median(samples) * 1e3:9.3f} ms" if samples else "   failed  "
    return (f"worker {record.metrics['worker']}  {figure}  {record.impl:24s} "
            f"{record.check:17s} {record.case_id}"
            + (f"  ({record.message})" if record.message else ""))


# Statistics ------------------------------------------------------------------------------------


NOISY_IQR = 0.20  # IQR over median above this: the blocks of a timing scatter
NOISY_SPREAD = 1.2  # largest over smallest per-process median above this: processes disagree


@dataclass(frozen=True)
class Timing:
    """All samples of one (implementation, shape, phase), per worker process. Statistics are
    computed from the raw samples, never stored."""

    per_process: tuple[tuple[float, ...], ...]
    flops: int = 0
    peak_bytes: int | None = None
    tokens: int = 0  # B * T of the shape (valid steps for variable lengths)
    case: Case | None = None

    @property
    def samples(self) -> list[float]:
        return [s for block in self.per_process for s in block]

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples))

    @property
    def q1_s(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3_s(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def min_s(self) -> float:
        return min(self.samples)

    @property
    def process_medians(self) -> list[float]:
        return [float(np.median(p)) for p in self.per_process if p]

    @property
    def process_spread(self) -> float:
        """Largest over smallest per-process median (1.0 = processes agree)."""
        medians = self.process_medians
        return max(medians) / min(medians) if medians else math.nan

    @property
    def noise(self) -> str | None:
        """Why this timing is not to be trusted as it is (None when nothing says so): blocks
        scattered (IQR over median above 20%) or processes disagreeing (per-process medians
        more than 1.2x apart)."""
        reasons = []
        if self.iqr_s / self.median_s > NOISY_IQR:
            reasons.append(f"IQR {self.iqr_s / self.median_s:.0%} of the median "
                           f"(> {NOISY_IQR:.0%})")
        if self.process_spread > NOISY_SPREAD:
            reasons.append(f"processes {self.process_spread:.2f}x apart (> {NOISY_SPREAD:g}x)")
        return "; ".join(reasons) or None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.median_s

    @property
    def gflops(self) -> float:
        return self.flops / self.median_s / 1e9


def timings(records: Iterable[Record]) -> dict[tuple[str, str, str], Timing]:
    """(impl, case_id, phase) -> Timing, from passed latency records."""
    grouped: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.suite == SUITE and r.outcome == PASSED and r.metrics.get("samples_s"):
            grouped.setdefault((r.impl, r.case_id, r.check), []).append(r)
    out = {}
    for key, group in grouped.items():
        per_process = tuple(tuple(r.metrics["samples_s"]) for r in group)
        impl, _, phase = key
        if impl == PEAK:
            out[key] = Timing(per_process, flops=int(group[0].metrics["flops"]))
            continue
        case = Case.from_dict(group[0].case)
        peaks = [r.metrics.get("peak_bytes") for r in group if r.metrics.get("peak_bytes")]
        family = FAMILIES.get(group[0].family)
        out[key] = Timing(
            per_process,
            flops=analytic_flops(case, family, phase) if family else 0,
            peak_bytes=max(peaks) if peaks else None,
            tokens=sum(case.effective_lengths),
            case=case,
        )
    return out


@dataclass(frozen=True)
class PartialFailure:
    """A timing that failed in some worker processes and not in others: the failure depends
    on what ran before it in the process (or on chance), and is worth reading."""

    key: tuple[str, str, str]  # (impl, case id, phase)
    failed: int
    processes: int
    message: str

    def __str__(self) -> str:
        impl, case_id, phase = self.key
        return (f"{impl} {phase} {case_id}: failed in {self.failed} of {self.processes} "
                f"processes ({self.message})")


def partial_failures(records: Iterable[Record]) -> list[PartialFailure]:
    """Timings with both failed and passed records."""
    grouped: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.suite == SUITE and r.outcome in (PASSED, FAILED):
            grouped.setdefault((r.impl, r.case_id, r.check), []).append(r)
    out = []
    for key, group in grouped.items():
        failed = [r for r in group if r.outcome == FAILED]
        if failed and len(failed) < len(group):
            out.append(PartialFailure(key, len(failed), len(group), failed[0].message or ""))
    return out


def peak_of(measured: dict[tuple[str, str, str], Timing]) -> tuple[float, str] | None:
    """The machine's matmul peak (GFLOP/s) and the sweep point that reached it."""
    points = [(t.gflops, case_id) for (impl, case_id, _), t in measured.items() if impl == PEAK]
    return max(points) if points else None


def reference_impl(family: str) -> str:
    """The torch.nn entry each family's timings are compared with."""
    return "torch-" + family.replace("_", "-")


# pytest-benchmark export -------------------------------------------------------------------------


def pytest_benchmark_json(records: list[Record], info) -> dict[str, Any]:
    """The results in pytest-benchmark's JSON format (``pytest-benchmark compare`` reads it):
    one benchmark per (implementation, shape, phase), its data the per-iteration samples."""
    from pytest_benchmark import __version__ as pb_version
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.stats import Stats

    benchmarks = []
    by_key = {(r.impl, r.case_id, r.check): r for r in records if r.suite == SUITE}
    for (impl, case_id, phase), timing in timings(records).items():
        if impl == PEAK:
            continue
        stats = Stats()
        for sample in timing.samples:
            stats.update(sample)
        record = by_key[(impl, case_id, phase)]
        data = stats.as_dict()
        data.update(data=timing.samples, iterations=1)
        benchmarks.append({
            "group": f"{phase} {case_id}",
            "name": f"test_{phase}[{impl}:{case_id}]",
            "fullname": f"seq-harness::test_{phase}[{impl}:{case_id}]",
            "params": {"impl": impl, "case": case_id, "phase": phase},
            "param": f"{impl}:{case_id}",
            "extra_info": {"family": record.family, "tokens_per_s": timing.tokens_per_s,
                           "gflops": timing.gflops, "peak_bytes": timing.peak_bytes,
                           "processes": len(timing.per_process),
                           "process_spread": timing.process_spread},
            "options": {"disable_gc": False, "timer": "torch.utils.benchmark.Timer",
                        "min_rounds": len(timing.samples), "max_time": None, "min_time": None,
                        "precision": None, "confidence": None, "warmup": True},
            "stats": data,
        })
    return {
        "machine_info": {**pytest_benchmark_generate_machine_info(), "torch": info.torch,
                         "threads": info.threads, "cuda": info.cuda},
        "commit_info": {"id": info.git_commit, "project": "seq-harness"},
        "benchmarks": benchmarks,
        "datetime": info.created,
        "version": pb_version,
    }


# Report -------------------------------------------------------------------------------------------


def report_section(frame, output: Path) -> list[str]:
    """The latency section; timings from different machines are never merged: a section each."""
    latency = frame[frame["suite"] == SUITE]
    machines = list(dict.fromkeys(latency["machine"]))
    lines = []
    for number, machine in enumerate(machines):
        rows = latency[latency["machine"] == machine]
        records = [Record.from_dict({k: v for k, v in row.items()
                                     if k in Record.__dataclass_fields__})
                   for row in rows.to_dict("records")]
        title = f"Latency on {machine}" if len(machines) > 1 else "Latency"
        lines += machine_section(records, output, title=title,
                                 suffix=f"-{number}" if len(machines) > 1 else "")
    return lines


SUSPECT = "⚠"  # marks a figure not to be trusted as printed; the legend line says why


def machine_section(records: list[Record], output: Path, *, title: str,
                    suffix: str) -> list[str]:
    """Per phase: implementation x shape with median, spread, ratio to torch, throughput,
    roofline fraction and peak memory, noisy and suspect figures marked; timings that failed in
    some processes only; plots of latency against hidden size and length."""
    import pandas as pd

    from harness.core.text import md

    measured = timings(records)
    peak = peak_of(measured)
    families = {r.impl: r.family for r in records}
    lines = [f"## {md(title)}", "",
             "Medians over every timed block of every worker process (torch.utils.benchmark "
             "blocked_autorange, one process at a time). *IQR* is the interquartile range over "
             "the median; *spread* the largest over the smallest per-process median; *ratio* is "
             "the median over the torch.nn module of the same family; *% peak* is GFLOP/s "
             "(analytic matmul FLOPs) over this machine's matmul peak (below); *peak MB* is the "
             "tensor memory high-water mark of one call.", ""]
    if peak is not None:
        gflops, point = peak
        backend = next(r.metrics.get("backend") for r in records
                       if r.impl == PEAK and r.case_id == point)
        lines += [f"Machine peak: {gflops:.1f} GFLOP/s float32, reached by {md(backend)} on a "
                  f"{point.rsplit('-', 1)[1]}-square GEMM: the best of a sweep of GEMM sizes "
                  "and backends timed in every worker process of this run.", ""]
    noisy = suspect = 0
    for phase in PHASES:
        rows = []
        for (impl, case_id, p), t in measured.items():
            if p != phase or impl == PEAK:
                continue
            reference = measured.get((reference_impl(families[impl]), case_id, phase))
            share = t.gflops / peak[0] if peak else None
            marks = []
            if t.noise:
                marks.append(f"{SUSPECT} noisy: {t.noise}")
                noisy += 1
            if share is not None and share > 1:
                marks.append(f"{SUSPECT} above the machine peak")
                suspect += 1
            rows.append({
                "implementation": md(impl),
                "shape": md(case_id),
                "median ms": f"{t.median_s * 1e3:.3f}",
                "IQR": f"{t.iqr_s / t.median_s:.1%}",
                "spread": f"{t.process_spread:.3f}",
                "ratio": f"{t.median_s / reference.median_s:.2f}x" if reference else "—",
                "tokens/s": f"{t.tokens_per_s:,.0f}",
                "GFLOP/s": f"{t.gflops:.2f}",
                "% peak": "—" if share is None else (
                    f"{SUSPECT} {share:.0%}" if share > 1 else f"{share:.0%}"),
                "peak MB": "—" if t.peak_bytes is None else f"{t.peak_bytes / 2**20:.1f}",
                "note": md("; ".join(marks)),
            })
        if not rows:
            continue
        table = pd.DataFrame(rows).sort_values(["shape", "implementation"], kind="stable")
        if not table["note"].str.len().any():
            table = table.drop(columns="note")
        lines += [f"### {phase.replace('_', '+')}", "",
                  table.to_markdown(index=False, disable_numparse=True), ""]
    timed = sum(1 for (impl, _, _) in measured if impl != PEAK)
    lines += [f"{SUSPECT} marks a figure not to be trusted as printed: *noisy* when the blocks "
              f"scatter (IQR above {NOISY_IQR:.0%} of the median) or the processes disagree "
              f"(spread above {NOISY_SPREAD:g}); *above the machine peak* when a timing's "
              "GFLOP/s exceeds the peak measured in the same run (the FLOP count or the timing "
              f"is off). This run: {noisy} of {timed} timings noisy, {suspect} above the peak.",
              ""]
    partial = partial_failures(records)
    if partial:
        lines += ["### Timings that failed in some processes only", "",
                  "The same timing passed in other worker processes: the failure depends on "
                  "what ran before it in the process, or on chance.", ""]
        lines += [f"- {md(p)}" for p in partial] + [""]
    lines += packed_versus_padded(measured)
    for png, what in plot_latency(measured, families, output, suffix=suffix):
        lines += [f"![latency against {what}]({os.path.relpath(png, output.parent)})", ""]
    return lines


def packed_versus_padded(measured: dict) -> list[str]:
    """Where a grid times a variable-length batch (fed packed) and the same batch padded to its
    longest sequence, the cost of each way per valid token."""
    import pandas as pd

    from harness.core.text import md

    rows = []
    for (impl, _, phase), packed in measured.items():
        case = packed.case
        if impl == PEAK or case is None or not case.varlen:
            continue
        padded = measured.get((impl, case.with_(lengths=None).id, phase))
        if padded is None:
            continue
        valid = sum(case.lengths)
        rows.append({
            "implementation": md(impl), "phase": phase.replace("_", "+"),
            "shape": md(case.id),
            "padded ms": f"{padded.median_s * 1e3:.3f}",
            "packed ms": f"{packed.median_s * 1e3:.3f}",
            "packed / padded": f"{packed.median_s / padded.median_s:.2f}x",
            "valid tokens/s padded": f"{valid / padded.median_s:,.0f}",
            "valid tokens/s packed": f"{valid / packed.median_s:,.0f}",
        })
    if not rows:
        return []
    table = pd.DataFrame(rows).sort_values(["shape", "phase", "implementation"], kind="stable")
    return ["### Variable lengths: packed versus padded", "",
            "The same batch (lengths uniform in [T/3, T]) fed packed (or with lengths=, for "
            "entries that pack internally) and padded to its longest sequence. Packing skips "
            "the padded steps and pays for sorting and bookkeeping; below 1.00x it wins.", "",
            table.to_markdown(index=False, disable_numparse=True), ""]


def plot_latency(measured: dict, families: dict, output: Path,
                 suffix: str = "") -> list[tuple[Path, str]]:
    """Median latency against hidden size and against sequence length, where the grid varies
    them (other dimensions held at their most common value); one line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    # (impl, phase, case, median) of fixed-length shapes: packed ones are compared in the tables.
    rows = [(impl, phase, t.case, t.median_s) for (impl, _, phase), t in measured.items()
            if impl != PEAK and t.case is not None and t.case.lengths is None]
    made = []
    for axis, label in (("hidden_size", "hidden size"), ("seq_len", "sequence length")):
        values = {getattr(c, axis) for _, _, c, _ in rows}
        if len(values) < 2:
            continue
        others = [k for k in ("seq_len", "batch", "hidden_size") if k != axis]
        common = {k: statistics.mode([getattr(c, k) for _, _, c, _ in rows]) for k in others}
        lines: dict[str, dict[str, list]] = {}  # phase -> implementation -> (x, median) points
        for impl, phase, case, median in rows:
            if all(getattr(case, k) == common[k] for k in others):
                lines.setdefault(phase, {}).setdefault(impl, []).append(
                    (getattr(case, axis), median))
        phases = [p for p in PHASES
                  if any(len(points) >= 2 for points in lines.get(p, {}).values())]
        if not phases:
            continue
        fig, axes = plt.subplots(1, len(phases), figsize=(4.5 * len(phases), 3.8), squeeze=False)
        for ax, phase in zip(axes[0], phases):
            for impl, points in sorted(lines[phase].items()):
                if len(points) >= 2:
                    ax.plot(*zip(*sorted(points)), marker="o", label=impl, linewidth=1)
            ax.set_yscale("log")
            ax.set_title(phase.replace("_", "+"))
            ax.set_xlabel(label)
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("median seconds")
        axes[0][-1].legend(fontsize=6)
        fixed = ", ".join(f"{k}={v}" for k, v in common.items())
        fig.suptitle(f"latency against {label} ({fixed})", fontsize=9)
        fig.tight_layout()
        path = output.parent / f"{output.stem}-latency-{axis}{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append((path, label))
    return made
