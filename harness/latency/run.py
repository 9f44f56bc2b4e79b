"""Running a benchmark: every task once in each of several fresh worker processes.

Every (implementation, shape, phase) task is timed once in each of several fresh worker
processes, one process at a time (benchmarks never run beside anything else of ours), each
process taking the tasks in a different rotation so slow drift spreads over all of them. Next to
the tasks, each process times the machine's matmul-peak sweep (harness.latency.peak), which gives
the fraction of this machine's matmul throughput an implementation reaches. Every result is
appended to the records the moment it arrives.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from harness.latency.jobs import LATENCY, PEAK_RUN_TIME, TIME, job_payload, to_record
from harness.latency.peak import PEAK, sweep
from harness.latency.plan import Plan, Side, rotated
from harness.latency.worker import WorkerJob, run_jobs
from harness.records import SKIPPED, Record, RecordWriter


def run(plan: Plan, out: Path, *, run_id: str, job_timeout_s: float = 600.0,
        progress: Callable[[str], None] | None = None) -> list[Record]:
    """Measure the plan; every result is appended to out/records.jsonl as it arrives."""
    return run_sides([Side(plan, out, run_id)], workers=plan.workers,
                     job_timeout_s=job_timeout_s, progress=progress)


def run_sides(sides: Sequence[Side], *, workers: int, job_timeout_s: float = 600.0,
              progress: Callable[[str], None] | None = None) -> list[Record]:
    """For each worker index, one fresh process per side, sides alternating (A B A B ...);
    every result is appended to its side's records as it arrives."""
    writers = [RecordWriter(side.out) for side in sides]
    records: list[Record] = []
    try:
        for worker in range(workers):
            for index in range(len(sides)):
                side = sides[(index + worker) % len(sides)] if worker % 2 else sides[index]
                writer = writers[sides.index(side)]
                plan = side.plan
                jobs = [WorkerJob(f"{worker}:peak:{g.id}", PEAK,
                            {"backend": g.backend, "size": g.size, "device": g.device,
                             "threads": plan.threads, "min_run_time": PEAK_RUN_TIME})
                        for g in sweep(plan.device)] if side.peak else []
                # Peak memory does not vary between processes: the first one measures it.
                plan_w = plan if worker == 0 else replace(plan, memory=False)
                jobs += [WorkerJob(f"{worker}:{i}", TIME,
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
                record = Record(impl=spec.name, family=spec.family, suite=LATENCY,
                                check=task.phase, outcome=SKIPPED, case_id=task.case.id,
                                case=task.case.to_dict(), message=why, origin=spec.origin,
                                run_id=run_id)
                writer.write(record)
                records.append(record)
    finally:
        writer.close()
    return records


def progress_line(record: Record) -> str:
    samples = record.metrics.get("samples_s") or []
    figure = f"{statistics.median(samples) * 1e3:9.3f} ms" if samples else "   failed  "
    return (f"worker {record.metrics['worker']}  {figure}  {record.impl:24s} "
            f"{record.check:17s} {record.case_id}"
            + (f"  ({record.message})" if record.message else ""))
