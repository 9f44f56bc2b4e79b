"""Results: Records (one per check or measurement), the RunInfo every record of a run shares,
and the JSON-lines files they live in."""

from harness.records.files import (
    JOB_FILE,
    RECORDS_FILE,
    RUN_FILE,
    RecordWriter,
    drop_partial_line,
    iter_records,
    load_run,
    prepare_results_dir,
    read_run_info,
    record_rows,
    write_run_info,
)
from harness.records.record import (
    AS_TORCH,
    FAILED,
    NOT_SUPPORTED,
    OUTCOMES,
    PASSED,
    SCHEMA_VERSION,
    SKIPPED,
    Record,
    ResultsError,
)
from harness.records.run_info import RunInfo, git_commit, new_run_id, processor_name

__all__ = ["AS_TORCH", "FAILED", "JOB_FILE", "NOT_SUPPORTED", "OUTCOMES", "PASSED", "RECORDS_FILE",
           "RUN_FILE", "SCHEMA_VERSION", "SKIPPED", "Record", "RecordWriter", "ResultsError",
           "RunInfo", "drop_partial_line", "git_commit", "iter_records", "load_run", "new_run_id",
           "prepare_results_dir", "processor_name", "read_run_info", "record_rows",
           "write_run_info"]
