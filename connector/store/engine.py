"""Database engines and schema migrations for the node's stores.

A node keeps its state in SQLite (the embedded default: one file, write-ahead log)
or in PostgreSQL (production, several replicas sharing one database). Both are
reached through :func:`create_engine`, and both get their schema from the Alembic
migrations next to this module through :func:`migrate`, which every node runs at
start.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory of the node's schema."""

SQLITE_BUSY_TIMEOUT_MS: Final = 5000
"""How long an SQLite connection waits for another writer before it gives up."""

WRITE_OPTION: Final = "hanse_write"
"""Execution option marking a transaction that will write.

On SQLite such a transaction starts with ``BEGIN IMMEDIATE``, taking the write lock
at once (waiting up to the busy timeout) rather than failing when it later turns a
read into a write. PostgreSQL ignores it.
"""

_MIGRATION_LOCK_KEY: Final = 0x48414E5345  # "HANSE": a pg_advisory_xact_lock key.

_SQLITE_WRITE_LOCKS: dict[str, threading.RLock] = {}
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()


class StoreError(Exception):
    """The database cannot be used as configured (bad URL, unreachable server).

    The message names the database (without its password) and what to do. It is
    a configuration error, not a refusal of a request: the node should not start.
    """


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite database in the file ``path``.

    Args:
        path: The database file; a relative path is made absolute.

    Returns:
        A ``sqlite:///`` URL for :func:`create_engine`.
    """
    return URL.create("sqlite", database=str(path.resolve())).render_as_string()


def create_engine(url: str) -> sa.Engine:
    """An engine for the node's database.

    ``sqlite:///PATH`` opens (and creates) a database file; the parent directory is
    created and every connection uses the write-ahead log, foreign keys,
    a busy timeout and ``synchronous=NORMAL``. ``postgresql://`` (or
    ``postgresql+psycopg://``) connects to PostgreSQL through psycopg 3, checking
    pooled connections before use.

    Args:
        url: The database URL.

    Returns:
        An engine; no connection is opened yet.

    Raises:
        StoreError: The URL is malformed, names another database, names an
            in-memory SQLite database, or its directory cannot be created.
    """
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgresql_engine(parsed)
    raise StoreError(
        f"unsupported database URL {_shown(parsed)}: use sqlite:///PATH for the embedded "
        "database or postgresql://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL"
    )


@contextmanager
def write_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold this process's turn to write to the engine's SQLite database.

    SQLite lets one transaction write at a time; another writer's ``BEGIN IMMEDIATE``
    waits in SQLite's busy handler, which sleeps in steps of up to 100 ms and leaves
    the processor idle. Writers of one process therefore queue on a lock per
    database file first and start the moment the one before them commits. Take it
    around the whole write transaction (begin to commit). The lock is reentrant;
    after the busy timeout without it, the writer goes on and leaves the waiting to
    SQLite. On PostgreSQL it does nothing.

    Args:
        engine: An engine from :func:`create_engine`.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    key = str(engine.url.database)
    with _SQLITE_WRITE_LOCKS_GUARD:
        lock = _SQLITE_WRITE_LOCKS.setdefault(key, threading.RLock())
    acquired = lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        yield
    finally:
        if acquired:
            lock.release()


def migrate(engine: sa.Engine) -> None:
    """Bring the database schema up to the newest migration.

    Idempotent and safe at every node start. On PostgreSQL the upgrade runs in one
    transaction under an advisory lock, so nodes that share a database and start
    together migrate one after the other; on SQLite it runs in one ``BEGIN
    IMMEDIATE`` transaction with foreign-key actions off (so that a migration that
    rebuilds a table does not cascade deletes), and the foreign keys are checked
    before it commits.

    Args:
        engine: An engine from :func:`create_engine`.

    Raises:
        StoreError: The database cannot be reached, or (SQLite) a migration would
            leave rows whose foreign keys point nowhere; nothing is changed then.
    """
    config = _alembic_config()
    with _connect(engine.execution_options(**{WRITE_OPTION: True})) as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # PRAGMA foreign_keys is a no-op inside a transaction: set it before BEGIN.
            _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY))
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite:
                    _check_sqlite_foreign_keys(connection)
        finally:
            if sqlite:
                _outside_transaction(connection, "PRAGMA foreign_keys=ON")


def schema_revision(engine: sa.Engine) -> str | None:
    """The migration the database is at.

    Args:
        engine: An engine from :func:`create_engine`.

    Returns:
        The Alembic revision id, or ``None`` for a database never migrated.

    Raises:
        StoreError: The database cannot be reached.
    """
    with _connect(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest migration this code knows; :func:`migrate` brings a database there."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"malformed database URL {url.split('@')[-1]!r}: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: URL) -> sa.Engine:
    if url.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise StoreError(f"unsupported SQLite driver in {_shown(url)}: use sqlite:///PATH")
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise StoreError(
            f"in-memory or URI SQLite database {_shown(url)} is not supported: "
            "use sqlite:///PATH with a file (a temporary directory in tests)"
        )
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory of the SQLite database {_shown(url)}: {exc}; "
            "choose a writable path"
        ) from exc
    engine = sa.create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:
    # SQLAlchemy emits BEGIN itself (see _begin_sqlite_transaction), so that reads
    # and DDL are transactional too; the sqlite3 module must not emit its own.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _enable_wal(dbapi_connection)
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _enable_wal(dbapi_connection: Any) -> None:
    # Switching a new database to WAL needs an exclusive lock, and SQLite answers
    # "database is locked" at once, without the busy timeout, when connections
    # opened together race for it: retry until the timeout.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _begin_sqlite_transaction(connection: sa.Connection) -> None:
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


def _postgresql_engine(url: URL) -> sa.Engine:
    if url.drivername != "postgresql+psycopg":
        raise StoreError(
            f"unsupported PostgreSQL driver in {_shown(url)}: use postgresql:// "
            "or postgresql+psycopg:// (psycopg 3)"
        )
    return sa.create_engine(url, pool_pre_ping=True)


def _connect(engine: sa.Engine) -> sa.Connection:
    try:
        return engine.connect()
    except OperationalError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        advice = (
            "check that the file is readable and writable and no other program holds it"
            if engine.dialect.name == "sqlite"
            else "check that the server is running and that the URL, user and password are right"
        )
        raise StoreError(
            f"cannot reach the database {_shown(engine.url)}: {detail}; {advice}"
        ) from exc


def _outside_transaction(connection: sa.Connection, statement: str) -> None:
    driver_connection: Any = connection.connection.driver_connection
    driver_connection.execute(statement)


def _check_sqlite_foreign_keys(connection: sa.Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StoreError(
            f"migration left rows whose foreign keys point nowhere in {', '.join(tables)}; "
            "the migration was rolled back"
        )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)
