"""Plain SQL on the database driver's own connection, for the stores' frequent statements.

SQLAlchemy spends tens of microseconds on every statement and every transaction
(compiled-cache lookup, execution context, result set-up, events). A negotiation
message costs a node a handful of statements; on SQLite they run while the node
holds its write lock (:func:`connector.store.engine.write_lock`), so that time is
paid by every writer waiting behind. The negotiation store, the audit log and the
request log therefore run their frequent statements as plain SQL on the DBAPI
connection the engine's pool hands out (``sqlite3`` or ``psycopg`` 3), in
transactions begun and ended here; everything else stays on SQLAlchemy.

Values are written in the forms SQLAlchemy uses for the same columns, so a row
written here reads back through SQLAlchemy and the other way round:

- times (:class:`connector.store.tables.UtcDateTime`): on SQLite the text
  ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, on PostgreSQL a ``timestamp with time zone``;
  read back timezone-aware in UTC;
- JSON (``sa.JSON``): on SQLite the ``json.dumps`` text, on PostgreSQL a ``json``
  value through psycopg's ``Json``; an absent value is SQL NULL.

SQL is written with ``?`` placeholders and turned into ``%s`` for psycopg.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from connector.store.engine import StoreError, write_lock


class Driver:
    """Transactions and value forms for plain SQL on one engine's database."""

    def __init__(self, engine: sa.Engine) -> None:
        """Use the database of ``engine`` (SQLite or PostgreSQL).

        Raises:
            StoreError: Another database.
        """
        name = engine.dialect.name
        if name not in ("sqlite", "postgresql"):
            raise StoreError(f"no plain-SQL support for the {name} database")
        self.engine = engine
        self.sqlite = name == "sqlite"
        """Whether the database is SQLite (else PostgreSQL)."""
        self.integrity_error: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        """What the driver raises for a violated key or constraint."""
        self._json: Any = None
        if not self.sqlite:
            from psycopg.types.json import Json

            self._json = Json

    def sql(self, text: str) -> str:
        """``text`` with its ``?`` placeholders as the driver wants them."""
        return text if self.sqlite else text.replace("?", "%s")

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A cursor in a write transaction: committed when the block ends, else rolled back.

        On SQLite the transaction begins with ``BEGIN IMMEDIATE`` under this
        process's write lock.
        """
        with write_lock(self.engine):
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                try:
                    if self.sqlite:
                        cursor.execute("BEGIN IMMEDIATE")
                    try:
                        yield cursor
                    except BaseException:
                        connection.rollback()
                        raise
                    connection.commit()
                finally:
                    cursor.close()
            finally:
                connection.close()

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A cursor for reading (each statement sees one consistent state)."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            connection.close()  # PostgreSQL: the pool's reset ends the read transaction

    def time(self, value: datetime | None) -> Any:
        """A time as the driver stores it (see the module documentation).

        Raises:
            ValueError: A naive time.
        """
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use UTC")
        utc = value.astimezone(UTC)
        if not self.sqlite:
            return utc
        return (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
        )

    def read_time(self, value: Any) -> datetime | None:
        """A stored time, timezone-aware in UTC."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise StoreError(f"a stored time is not a time: {value!r}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def json(self, value: Any) -> Any:
        """A JSON value as the driver stores it; ``None`` stays SQL NULL."""
        if value is None:
            return None
        return json.dumps(value) if self.sqlite else self._json(value)

    def read_json(self, value: Any) -> Any:
        """A stored JSON value as plain dicts and lists (SQL NULL as ``None``)."""
        if value is None or not self.sqlite:
            return value  # psycopg parses json columns itself
        return json.loads(value)


def driver_cursor(connection: sa.Connection) -> Any:
    """A DBAPI cursor on the connection under ``connection``, in its transaction."""
    return connection.connection.cursor()


__all__ = ["Driver", "driver_cursor"]
