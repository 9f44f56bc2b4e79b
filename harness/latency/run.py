"""Running a benchmark: every task once in each of several fresh worker processes.

Every (implementation, shape, phase) task is timed once in each of several fresh worker
processes, one process at a time (benchmarks never run beside anything else of ours), each
process taking the tasks in a different rotation so slow drift spreads over all of them. Next to
the tasks, each process times the machine's matmul-peak sweep (harness.latency.peak), which gives
the fraction of this machine's matmul throughput an implementation reaches. Every result is
appended to the records the moment it arrives.

A run that resumes passes the keys of what is already recorded (``done``, see
harness.latency.jobs.record_key): those jobs are not run again.

Before the timings, a plan that asks for it times each implementation's first call on each shape
(harness.latency.first_call), each in a worker process of its own with an empty inductor cache;
and timings an implementation declares it cannot do (an unavailable entry, an inference-only one
in the forward and forward_backward phases) are recorded as *not supported*, with why.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import replace
from pathlib import Path

from harness.core.op_case import case_from_dict
from harness.latency.jobs import (
    FIRST_CALL,
    LATENCY,
    PEAK_RUN_TIME,
    TIME,
    job_key,
    job_payload,
    to_record,
)
from harness.latency.peak import PEAK, sweep
from harness.latency.plan import Plan, Side, rotated
from harness.latency.worker import TIMEOUT, WorkerJob, run_jobs
from harness.records import NOT_SUPPORTED, SKIPPED, Record, RecordWriter


def run(plan: Plan, out: Path, *, run_id: str, job_timeout_s: float = 600.0,
        progress: Callable[[str], None] | None = None, done: Set[tuple] = frozenset()
        ) -> list[Record]:
    """Measure the plan; every result is appended to out/records.jsonl as it arrives."""
    records = not_supported(plan, out, run_id=run_id, done=done)
    records += first_calls(plan, out, run_id=run_id, job_timeout_s=job_timeout_s,
                           progress=progress, done=done)
    return records + run_sides([Side(plan, out, run_id)], workers=plan.workers,
                               job_timeout_s=job_timeout_s, progress=progress, done=done)


def not_supported(plan: Plan, out: Path, *, run_id: str, done: Set[tuple] = frozenset()
                  ) -> list[Record]:
    """A *not supported* record for every timing the plan's implementations cannot do."""
    return write_unmeasured(
        ((spec, task, why) for spec, task, why in plan.unsupported()
         if (spec.name, task.case.id, task.phase, None, None) not in done),
        out, outcome=NOT_SUPPORTED, run_id=run_id)


def write_unmeasured(tasks: Iterable[tuple], out: Path, *, outcome: str, run_id: str
                     ) -> list[Record]:
    """A record with ``outcome`` and the reason for each (spec, task, why), nothing timed."""
    writer = RecordWriter(out)
    records = []
    try:
        for spec, task, why in tasks:
            record = Record(impl=spec.name, family=spec.family, suite=LATENCY, check=task.phase,
                            outcome=outcome, case_id=task.case.id, case=task.case.to_dict(),
                            message=why, origin=spec.origin, run_id=run_id)
            writer.write(record)
            records.append(record)
    finally:
        writer.close()
    return records


def first_calls(plan: Plan, out: Path, *, run_id: str, job_timeout_s: float,
                progress: Callable[[str], None] | None = None, done: Set[tuple] = frozenset()
                ) -> list[Record]:
    """Each implementation's first call on each shape, each in a fresh worker process with an
    empty inductor cache (a cold compile)."""
    writer = RecordWriter(out)
    specs = {s.name: s for s in plan.specs}
    records = []
    try:
        for number, (spec, case) in enumerate(plan.first_calls()):
            payload = {"impl": spec.name, "origin": spec.origin, "family": spec.family,
                       "case": case.to_dict(), "threads": plan.threads}
            if job_key(FIRST_CALL, payload, 0) in done:
                continue
            with tempfile.TemporaryDirectory(prefix="seq-harness-inductor-") as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                for job, result in run_jobs([WorkerJob(f"first:{number}", FIRST_CALL, payload)],
                                            threads=plan.threads, job_timeout_s=job_timeout_s,
                                            env=env):
                    record = to_record(job.kind, job.payload, result, specs, worker=0,
                                       run_id=run_id, threads=plan.threads)
                    writer.write(record)
                    records.append(record)
                    if progress is not None:
                        progress(progress_line(record))
    finally:
        writer.close()
    return records


def worker_jobs(side: Side, worker: int) -> list[WorkerJob]:
    """What worker process number ``worker`` of a side runs: the peak sweep (when the side has
    it), then every task of its plan, in the worker's rotation."""
    plan = side.plan
    jobs = [WorkerJob(f"{worker}:peak:{g.id}", PEAK,
                      {"backend": g.backend, "size": g.size, "device": g.device,
                       "threads": plan.threads, "min_run_time": PEAK_RUN_TIME})
            for g in sweep(plan.device)] if side.peak and plan.peak else []
    # Peak memory does not vary between processes: the first one measures it.
    plan_w = plan if worker == 0 else replace(plan, memory=False)
    jobs += [WorkerJob(f"{worker}:{i}", TIME,
                       {**job_payload(spec, task, plan_w), "slowdown": side.slowdown})
             for i, (spec, task) in enumerate(plan.tasks())]
    return rotated(jobs, worker)


def run_sides(sides: Sequence[Side], *, workers: int | Sequence[int],
              job_timeout_s: float = 600.0, progress: Callable[[str], None] | None = None,
              done: Set[tuple] = frozenset(), deadline: float | None = None,
              over_limit: str | None = None) -> list[Record]:
    """For each worker index (``workers``: how many, or which), one fresh process per side,
    sides alternating (A B A B ...); every result is appended to its side's records as it
    arrives. ``done``: jobs already recorded (of a single side's run that resumes).
    ``deadline`` (time.monotonic()): no job starts after it (the one running finishes); what
    is not measured then is the caller's to record (see ``left_out``). ``over_limit``: why a
    timing past ``job_timeout_s`` is not measured, where that limit is the plan's own
    (``to_record``); None: it failed (a hang)."""
    writers = [RecordWriter(side.out) for side in sides]
    records: list[Record] = []
    indices = range(workers) if isinstance(workers, int) else workers
    try:
        for worker in indices:
            for index in range(len(sides)):
                if deadline is not None and time.monotonic() >= deadline:
                    return records
                side = sides[(index + worker) % len(sides)] if worker % 2 else sides[index]
                writer = writers[sides.index(side)]
                jobs = [j for j in worker_jobs(side, worker)
                        if job_key(j.kind, j.payload, worker) not in done]
                if not jobs:
                    continue
                specs = {s.name: s for s in side.plan.specs}
                threads = side.plan.threads
                started = time.monotonic()
                for job, result in run_jobs(jobs, threads=threads, job_timeout_s=job_timeout_s,
                                            env=side.env, cwd=side.cwd):
                    record = to_record(job.kind, job.payload, result, specs, worker=worker,
                                       run_id=side.run_id, threads=threads,
                                       wall_s=time.monotonic() - started,
                                       over_limit=over_limit
                                       if result.get("status") == TIMEOUT else None)
                    started = time.monotonic()
                    writer.write(record)
                    records.append(record)
                    if progress is not None:
                        progress(progress_line(record))
                    if deadline is not None and started >= deadline:
                        return records
    finally:
        for writer in writers:
            writer.close()
    return records


def left_out(side: Side, worker: int, recorded: Set[tuple], *, why: str) -> list[Record]:
    """A skipped record, with ``why``, for each job of the side's worker ``worker`` that is not
    in ``recorded`` (record keys): the timings a time budget did not reach. Their metrics say
    ``left_out`` (a resumed job measures them and drops these records)."""
    specs = {s.name: s for s in side.plan.specs}
    records = []
    for job in worker_jobs(side, worker):
        if job.kind != TIME or job_key(job.kind, job.payload, worker) in recorded:
            continue
        spec, case = specs[job.payload["impl"]], case_from_dict(job.payload["case"])
        records.append(Record(
            impl=spec.name, family=spec.family, suite=LATENCY, check=job.payload["phase"],
            outcome=SKIPPED, case_id=case.id, case=case.to_dict(), message=why,
            origin=spec.origin, run_id=side.run_id,
            metrics={"worker": worker, "threads": side.plan.threads, "left_out": True,
                     "cudnn_benchmark": job.payload.get("cudnn_benchmark")}))
    writer = RecordWriter(side.out)
    try:
        for record in records:
            writer.write(record)
    finally:
        writer.close()
    return records


def skip_all(plans: Sequence[Plan], out: Path, *, run_id: str, why: str) -> list[Record]:
    """A skipped record for every task of the plans (the environment lacks what they need)."""
    return write_unmeasured(((spec, task, why) for plan in plans for spec, task in plan.tasks()),
                            out, outcome=SKIPPED, run_id=run_id)


def progress_line(record: Record) -> str:
    samples = record.metrics.get("samples_s") or []
    first = record.metrics.get("first_call_s")
    if samples:
        figure = f"{statistics.median(samples) * 1e3:9.3f} ms"
    elif first is not None:
        figure = f"{first * 1e3:9.1f} ms"
    else:
        figure = "   failed  "
    return (f"worker {record.metrics['worker']}  {figure}  {record.impl:24s} "
            f"{record.check:17s} {record.case_id}"
            + (f"  ({record.message})" if record.message else ""))
