"""Latency results in pytest-benchmark's JSON format, so ``pytest-benchmark compare`` reads them."""

from __future__ import annotations

from typing import Any

from harness.latency.jobs import LATENCY
from harness.latency.peak import PEAK
from harness.latency.samples import timings
from harness.records import Record


def pytest_benchmark_json(records: list[Record], info) -> dict[str, Any]:
    """The results in pytest-benchmark's JSON format (``pytest-benchmark compare`` reads it):
    one benchmark per (implementation, shape, phase), its data the per-iteration samples."""
    from pytest_benchmark import __version__ as pb_version
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.stats import Stats

    benchmarks = []
    by_key = {(r.impl, r.case_id, r.check): r for r in records if r.suite == LATENCY}
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
