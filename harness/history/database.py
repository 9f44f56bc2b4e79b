"""Opening a history database: which URL, how SQLite is set up for several writers, and the
schema version check.

The URL is ``--db``, else $SEQ_HARNESS_DB, else the SQLite file ``seq-harness-history.sqlite``
in the current directory; a value without ``://`` is a path to an SQLite file. SQLite runs in WAL
mode (readers never block the writer) and every transaction starts with BEGIN IMMEDIATE (writers
queue for the lock up to a timeout instead of failing midway on an upgrade from read to write);
PostgreSQL needs nothing of the kind. A database written by another schema version is upgraded
when this version knows how, and refused in one line otherwise.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from harness.history.schema import (
    SCHEMA_VERSION,
    TABLES,
    AnchorComparison,
    Base,
    SchemaVersion,
)

ENV = "SEQ_HARNESS_DB"
DEFAULT_FILE = "seq-harness-history.sqlite"
SQLITE_LOCK_TIMEOUT_S = 120.0  # how long a writer waits for another one's transaction


def _add_anchor_comparisons(connection: Connection) -> None:
    """1 -> 2: the anchor comparisons table (nothing else changed)."""
    AnchorComparison.__table__.create(connection, checkfirst=True)


# Upgrades: from version -> a function that brings a database of that version to the next one,
# inside the opening transaction. Version 1 is the first; an older database is refused.
UPGRADES: Mapping[int, Callable[[Connection], None]] = {1: _add_anchor_comparisons}


class HistoryError(ValueError):
    """A database that cannot be used as it is (unreachable, unknown URL, another schema
    version): the message is the one line the command prints."""


def resolve_url(db: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The database URL from ``--db``, $SEQ_HARNESS_DB or the default SQLite file."""
    environ = os.environ if environ is None else environ
    value = db or environ.get(ENV) or DEFAULT_FILE
    return value if "://" in value else f"sqlite:///{value}"


def shown(url: str) -> str:
    """The URL as messages print it: its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``; HistoryError naming the URL when SQLAlchemy cannot use it."""
    from sqlalchemy.engine import make_url

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as error:
        raise HistoryError(f"--db {shown(url)!r}: not a database URL ({error}); use "
                           "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") from None
    if backend not in ("sqlite", "postgresql"):
        raise HistoryError(f"--db {shown(url)!r}: {backend!r} is not supported; use "
                           "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    try:
        if backend == "sqlite":
            engine = create_engine(url, connect_args={"timeout": SQLITE_LOCK_TIMEOUT_S})
            _serialise_sqlite_writers(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except NoSuchModuleError:
        raise HistoryError(f"--db {shown(url)!r}: unknown database kind; use sqlite:///PATH or "
                           "postgresql+psycopg://USER@HOST/DB") from None
    except ArgumentError as error:
        raise HistoryError(f"--db {shown(url)!r}: not a database URL ({error}); use "
                           "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") from None
    except ModuleNotFoundError as error:
        raise HistoryError(f"--db {shown(url)!r}: the driver is not installed ({error.name}); "
                           "for PostgreSQL: pip install 'seq-harness[postgres]'") from None
    return engine


def into_wal(cursor) -> None:
    """PRAGMA journal_mode=WAL, again while SQLite says "locked": two connections switching a
    new file at once each hold a read lock and want the write lock, and SQLite answers one of
    them at once, without its busy timeout (it would deadlock). Up to the lock timeout."""
    deadline = time.monotonic() + SQLITE_LOCK_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))  # apart: not again in step with the other


def _serialise_sqlite_writers(engine: Engine) -> None:
    """WAL, a lock timeout, and BEGIN IMMEDIATE (SQLAlchemy's recipe: the driver's own
    transaction handling off, so that SQLAlchemy's begin emits ours)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_LOCK_TIMEOUT_S * 1000)}")
        into_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_database(db: str | None = None, *, create: bool = True) -> Engine:
    """The engine of a ready database: its tables created when it has none (``create``), its
    schema version checked (upgraded where an upgrade is known). HistoryError otherwise."""
    url = resolve_url(db)
    if not create:
        _must_exist(url)
    engine = make_engine(url)
    try:
        for attempt in range(3):
            try:
                with engine.begin() as connection:
                    _ready(connection, url, create=create)
                break
            except (IntegrityError, ProgrammingError):
                # PostgreSQL: another writer created the tables between our look and our
                # CREATE; look again (it is there now)
                if attempt == 2:
                    raise
    except OperationalError as error:
        engine.dispose()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise HistoryError(f"--db {shown(url)!r}: cannot open the database ({reason})") from None
    except HistoryError:
        engine.dispose()
        raise
    return engine


def _must_exist(url: str) -> None:
    """An SQLite file to read must be there (connecting would create an empty one)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # make_engine names the bad URL
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None, "", ":memory:")
    if sqlite_file and not os.path.isfile(parsed.database):
        raise HistoryError(f"--db {shown(url)!r}: no such SQLite file; add results first "
                               "with `seq-harness history add DIR`")


def _ready(connection: Connection, url: str, *, create: bool) -> None:
    names = set(inspect(connection).get_table_names())
    ours = {t.name for t in TABLES}
    if SchemaVersion.__tablename__ not in names:
        if names & ours:
            raise HistoryError(f"--db {shown(url)!r} holds tables named like the history's "
                               f"({', '.join(sorted(names & ours))}) but no schema_version: "
                               "not a seq-harness history database")
        if not create:
            raise HistoryError(f"--db {shown(url)!r} holds no history yet; add results with "
                               "`seq-harness history add DIR`")
        Base.metadata.create_all(connection)
        connection.execute(SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION))
        return
    versions = connection.execute(select(SchemaVersion.version)).scalars().all()
    if len(versions) != 1:
        raise HistoryError(f"--db {shown(url)!r}: schema_version holds {len(versions)} rows, "
                           "expected one")
    version = versions[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(f"--db {shown(url)!r} has history schema version {version}, newer "
                           f"than this seq-harness reads ({SCHEMA_VERSION}): upgrade seq-harness")
    while version < SCHEMA_VERSION:
        if version not in UPGRADES:
            raise HistoryError(f"--db {shown(url)!r} has history schema version {version}; "
                               f"this seq-harness reads version {SCHEMA_VERSION} and cannot "
                               f"upgrade from {version}: add the results again into a new "
                               "database")
        UPGRADES[version](connection)
        version += 1
        connection.execute(SchemaVersion.__table__.update().values(version=version))
