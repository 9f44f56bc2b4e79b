"""The jobs a latency worker process runs, and the Records their results become.

A job is a kind (``time`` a task, one ``peak`` GEMM of the machine's matmul-peak sweep, or the
``first_call`` of an implementation on a shape) and a JSON payload; ``handle_job`` runs one
inside a worker process (harness.latency.worker), and ``to_record`` turns its result, or its
failure, into a Record in the parent.
"""

from __future__ import annotations

from typing import Any

from harness.core.op_case import case_from_dict
from harness.core.precision import set_tf32
from harness.core.spec import ImplSpec
from harness.latency.first_call import PHASE as FIRST_CALL_PHASE
from harness.latency.first_call import first_call
from harness.latency.peak import PEAK, Gemm
from harness.latency.plan import Plan
from harness.latency.timing import Task, measure, measure_peak
from harness.records import FAILED, PASSED, SKIPPED, Record
from harness.registry import spec_by_origin

LATENCY = "latency"  # the suite name of every latency record
TIME = "time"
FIRST_CALL = "first_call"  # also the check name of its records
PEAK_RUN_TIME = 0.1  # seconds per point of the peak sweep in each process


def record_key(record: Record) -> tuple:
    """What a latency record measured: (implementation, shape, check, worker, cudnn flag); a run
    that resumes skips every job whose key is already recorded."""
    return (record.impl, record.case_id, record.check, record.metrics.get("worker"),
            record.metrics.get("cudnn_benchmark"))


def job_key(kind: str, payload: dict[str, Any], worker: int) -> tuple:
    """The record_key of the record a job will become."""
    if kind == PEAK:
        return PEAK, Gemm(payload["backend"], payload["size"], payload["device"]).id, "gemm", \
            worker, None
    check = FIRST_CALL if kind == FIRST_CALL else payload["phase"]
    return (payload["impl"], case_from_dict(payload["case"]).id, check, worker,
            payload.get("cudnn_benchmark"))


def job_payload(spec: ImplSpec, task: Task, plan: Plan) -> dict[str, Any]:
    return {
        "impl": spec.name, "origin": spec.origin, "family": spec.family,
        "case": task.case.to_dict(), "phase": task.phase, "cudnn_benchmark": task.cudnn_benchmark,
        "min_run_time": plan.min_run_time, "threads": plan.threads, "memory": plan.memory,
        "tf32": plan.tf32,
    }


def handle_job(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Runs inside a worker process."""
    set_tf32(payload.get("tf32", "off"))
    if kind == FIRST_CALL:
        spec = spec_by_origin(payload["impl"], payload["origin"], payload["family"])
        first = first_call(spec, case_from_dict(payload["case"]), threads=payload["threads"])
        return {"first_call_s": first.seconds, "graphs": first.graphs,
                "graph_breaks": first.graph_breaks, "rss_bytes": first.rss_bytes}
    if kind == PEAK:
        gemm = Gemm(payload["backend"], payload["size"], payload["device"])
        timed = measure_peak(gemm, threads=payload["threads"],
                             min_run_time=payload["min_run_time"])
    else:
        case = case_from_dict(payload["case"])
        spec = spec_by_origin(payload["impl"], payload["origin"], payload["family"])
        task = Task(spec.name, case, payload["phase"], payload["cudnn_benchmark"])
        timed = measure(spec, task, threads=payload["threads"],
                        min_run_time=payload["min_run_time"], memory=payload["memory"],
                        slowdown=payload.get("slowdown", 0.0))
    return {"block_s": list(timed.block_s), "number_per_run": timed.number_per_run,
            "peak_bytes": timed.peak_bytes, "peak_rss_bytes": timed.peak_rss_bytes,
            "kernel": timed.kernel}


def to_record(kind: str, payload: dict[str, Any], result: dict[str, Any], specs, *,
              worker: int, run_id: str, threads: int, wall_s: float | None = None,
              over_limit: str | None = None) -> Record:
    """``wall_s``: the job's whole cost as the parent saw it (a worker's start, the build, the
    warm-up and the timing), what a time budget spends. ``over_limit``: for a result past a
    time limit that is the plan's own (a grid too slow to time in full, not a guard against a
    hang), why it is not measured: it is recorded skipped with that message, not failed."""
    error = result.get("error")
    skipped = over_limit is not None
    samples = result.get("block_s") or []
    metrics = {"samples_s": samples, "number_per_run": result.get("number_per_run"),
               "worker": worker, "threads": threads}
    if wall_s is not None:
        metrics["wall_s"] = round(wall_s, 4)
    if skipped:
        metrics["over_limit"] = True
        error = f"not measured: {error}, {over_limit}"
    if kind == PEAK:
        gemm = Gemm(payload["backend"], payload["size"], payload["device"])
        impl, family, check, origin = PEAK, PEAK, "gemm", ""
        case_id, case = gemm.id, None
        metrics.update(backend=gemm.backend, size=gemm.size, flops=gemm.flops)
    else:
        spec = specs[payload["impl"]]
        impl, family, origin = spec.name, spec.family, spec.origin
        check = FIRST_CALL if kind == FIRST_CALL else payload["phase"]
        parsed = case_from_dict(payload["case"])
        case_id, case = parsed.id, parsed.to_dict()
        if kind == FIRST_CALL:
            metrics.update(first_call_s=result.get("first_call_s"), phase=FIRST_CALL_PHASE,
                           graphs=result.get("graphs"), graph_breaks=result.get("graph_breaks"),
                           rss_bytes=result.get("rss_bytes"))
        else:
            metrics.update(peak_bytes=result.get("peak_bytes"),
                           peak_rss_bytes=result.get("peak_rss_bytes"),
                           kernel=result.get("kernel"),
                           cudnn_benchmark=payload.get("cudnn_benchmark"))
    return Record(
        impl=impl, family=family, suite=LATENCY, check=check,
        outcome=SKIPPED if skipped else FAILED if error else PASSED, case_id=case_id, case=case,
        duration_s=(result.get("first_call_s") or 0.0) if kind == FIRST_CALL
        else sum(samples) * (result.get("number_per_run") or 0),
        message=error, origin=origin, metrics=metrics, run_id=run_id,
    )
