"""History across commits and machines: a database (SQLAlchemy: SQLite or PostgreSQL) that
indexes results directories, and the judgement of its series over commits (change points in
latency, checks that started failing). The JSONL results stay the record; this is their index."""

from harness.history.changes import Change, change_points, describe_changes, detect
from harness.history.database import (
    DEFAULT_FILE,
    ENV,
    HistoryError,
    open_database,
    resolve_url,
)
from harness.history.holdings import MachineHoldings, holdings
from harness.history.ingest import Added, add_directories
from harness.history.judge import Breakage, Judgement, SeriesChange, judge
from harness.history.machines import MachineIdentity, identify
from harness.history.schema import SCHEMA_VERSION

__all__ = ["DEFAULT_FILE", "ENV", "SCHEMA_VERSION", "Added", "Breakage", "Change", "HistoryError",
           "Judgement", "MachineHoldings", "MachineIdentity", "SeriesChange", "add_directories",
           "change_points", "describe_changes", "detect", "holdings", "identify", "judge",
           "open_database", "resolve_url"]
