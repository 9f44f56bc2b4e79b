"""Fresh worker processes that run jobs and report each result the moment it exists.

Timings are repeated in several fresh processes (so a gate can use between-process statistics),
and an implementation under test may hang or take its interpreter down. A worker is
``python -m harness.latency.worker``: it reads a JSON request on stdin and writes one JSON line
per job on the stdout it started with (the implementation's own prints go to stderr). The parent
keeps every line it received; when the worker dies or a job outlives its time limit, that job is
reported as crashed or timed out and a new worker takes the remaining jobs.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CRASHED, TIMEOUT = "crashed", "timeout"


@dataclass(frozen=True)
class WorkerJob:
    """One unit of work: ``kind`` selects the handler; ``payload`` is JSON-serialisable."""

    id: str
    kind: str
    payload: dict[str, Any]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_jobs(
    jobs: list[WorkerJob], *, threads: int, job_timeout_s: float, env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> Iterator[tuple[WorkerJob, dict[str, Any]]]:
    """Run ``jobs`` in order in fresh workers; yield (job, result) as each finishes. ``cwd``:
    the workers' directory (``python -m`` imports from it before PYTHONPATH).

    A result is the handler's dict, or {"error": ...}; a job whose worker died gets
    {"error": ..., "status": "crashed"}, one past its time limit {"status": "timeout"}.
    """
    pending = list(jobs)
    while pending:
        for job, result in _one_worker(list(pending), threads=threads,
                                       job_timeout_s=job_timeout_s, env=env, cwd=cwd):
            pending.remove(job)
            yield job, result


def _one_worker(jobs, *, threads, job_timeout_s, env, cwd):
    request = {"threads": threads,
               "jobs": [{"id": j.id, "kind": j.kind, "payload": j.payload} for j in jobs]}
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.latency.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=cwd,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def read_stdout() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    def read_stderr() -> None:
        errors.extend(process.stderr)

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    process.stdin.write(json.dumps(request))
    process.stdin.close()
    by_id = {j.id: j for j in jobs}
    done = 0
    try:  # whatever ends the caller (Ctrl-C, an error) ends the worker too
        while done < len(jobs):
            try:
                line = lines.get(timeout=job_timeout_s)
            except queue.Empty:
                process.kill()
                process.wait()
                yield jobs[done], {"status": TIMEOUT,
                                   "error": f"timeout: no result within {job_timeout_s:g} s"}
                return
            if line is None:  # the worker is gone before finishing
                code = process.wait()
                for reader in readers:
                    reader.join(timeout=1)
                tail = " ".join("".join(errors[-5:]).split())[-300:]
                yield jobs[done], {"status": CRASHED,
                                   "error": f"crashed: worker {describe_exit(code)}"
                                   + (f" ({tail})" if tail else "")}
                return
            result = json.loads(line)
            yield by_id[result.pop("id")], result
            done += 1
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    # Ctrl-C is the parent's to handle: it kills this process, and records no crash for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    request = json.load(sys.stdin)
    # Results go to the stdout this process started with; anything else printed goes to stderr.
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(int(request["threads"]))
    from harness.core.text import one_line
    from harness.latency.jobs import handle_job

    for job in request["jobs"]:
        try:
            result = handle_job(job["kind"], job["payload"])
        except Exception as error:  # the implementation's failure is this job's result
            result = {"error": one_line(error)}
        results.write(json.dumps({"id": job["id"], **result}) + "\n")
        results.flush()


if __name__ == "__main__":
    main()
