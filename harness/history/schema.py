"""The history database's tables, as SQLAlchemy 2 ORM classes.

The JSONL results stay the immutable record; these tables index them across commits and machines:
a ``Run`` per results directory's run.json, the ``Machine`` it ran on (by hardware, not hostname),
a ``Series`` per thing measured or checked on a machine, and per run its latency ``Point`` s (one
per worker process) or its check ``Outcome``; a gate of head against a fixed anchor (``gate
--base-ref``) adds an ``AnchorComparison`` per timing (version 2). Every natural key is a unique
constraint without NULLs (NULLs never collide in SQL), so adding the same records twice, or from
two writers at once, inserts nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2  # the version this seq-harness writes; harness.history.database checks it

LATENCY, CHECK = "latency", "check"  # Series.kind


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[float]: JSON, list[str]: JSON}


class SchemaVersion(Base):
    """One row: the version of these tables the database was created with (or upgraded to)."""

    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class Machine(Base):
    """identity: a digest of the fingerprint's hardware fields (harness.history.machines) and the
    user's ``--machine`` name; label: how tables name it; name: the user's name or ''."""

    __tablename__ = "machines"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    label: Mapped[str] = mapped_column(String(300))
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON)


class Run(Base):
    """One run.json. commit_time and parent_commit: from the git checkout the results directory
    lies in, when it knows the commit (else NULL); created: when the run started (UTC); dirty:
    run.json's git_modified (tracked files differed from the commit)."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200), unique=True)
    commit: Mapped[str | None] = mapped_column(String(64))
    parent_commit: Mapped[str | None] = mapped_column(String(64))
    commit_time: Mapped[datetime | None] = mapped_column(DateTime)
    branch: Mapped[str | None] = mapped_column(String(200))
    dirty: Mapped[bool | None]
    created: Mapped[datetime] = mapped_column(DateTime)
    harness_version: Mapped[str] = mapped_column(String(50))
    torch: Mapped[str] = mapped_column(String(100))
    python: Mapped[str] = mapped_column(String(50))
    cuda: Mapped[str | None] = mapped_column(String(200))
    threads: Mapped[int]
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id"), index=True)
    source: Mapped[str] = mapped_column(Text)  # the directory it was first added from
    argv: Mapped[list[str]] = mapped_column(JSON)


class Series(Base):
    """What one line over commits is about. kind: latency (check = the phase, case_id the
    shape, threads the worker's threads) or check (suite, check and case_id of a conformance
    check; threads 0)."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("machine_id", "kind", "impl", "origin", "family", "suite",
                                       "check", "case_id", "threads", "device", "dtype",
                                       name="series_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    impl: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(500))
    family: Mapped[str] = mapped_column(String(100))
    suite: Mapped[str] = mapped_column(String(100))
    check: Mapped[str] = mapped_column(String(200))
    case_id: Mapped[str] = mapped_column(String(300))
    threads: Mapped[int]
    device: Mapped[str] = mapped_column(String(50))
    dtype: Mapped[str] = mapped_column(String(50))


class Point(Base):
    """One worker process's timing in one run: median_s of its per-iteration block times, and
    those block times themselves."""

    __tablename__ = "points"
    __table_args__ = (UniqueConstraint("series_id", "run_id", "worker", name="point_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    worker: Mapped[int]
    median_s: Mapped[float] = mapped_column(Float)
    samples_s: Mapped[list[float]] = mapped_column(JSON)
    number_per_run: Mapped[int | None]


class Outcome(Base):
    """One check's outcome in one run (passed, failed, as torch, not supported, skipped)."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("series_id", "run_id", name="outcome_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    message: Mapped[str | None] = mapped_column(Text)
    max_error: Mapped[float | None] = mapped_column(Float)
    tolerance: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)


class AnchorComparison(Base):
    """One timing of a gate of head against a fixed anchor (``gate --base-ref REF``): run_id
    the gate's head run, series_id the head timing's latency series, base_run_id the anchor's
    run; ratio (head over anchor) with its interval (NULL where the gate gave none), the
    gate's verdict on it, processes per side, the p that decided it, the gate's alpha,
    minimum effect and overall status. Added in schema version 2."""

    __tablename__ = "anchor_comparisons"
    __table_args__ = (UniqueConstraint("run_id", "series_id", name="anchor_comparison_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    base_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    anchor_ref: Mapped[str] = mapped_column(String(200))
    anchor_commit: Mapped[str] = mapped_column(String(64))
    ratio: Mapped[float] = mapped_column(Float)
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(50))
    base_processes: Mapped[int]
    head_processes: Mapped[int]
    p: Mapped[float] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)
    min_effect: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))


TABLES = [t.__table__ for t in (SchemaVersion, Machine, Run, Series, Point, Outcome,
                                AnchorComparison)]
