"""The audit log in the node's database (tables ``audit_entry`` and ``audit_head``).

Appends are serialised on the head row: PostgreSQL locks it with ``SELECT ... FOR
UPDATE``; on SQLite the write transaction (``BEGIN IMMEDIATE``) is exclusive
already. The entry is inserted and the head moved in the same transaction, either
the log's own or the caller's (see :meth:`SqlAuditLog.append`), so an entry is on
record exactly when the change it records is. Entries appended together share one
lock of the head, one time and one insert; appends run plain SQL on the driver
(see :mod:`connector.store.driver`), reading and verifying run on SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from connector.audit import (
    AuditDraft,
    AuditEntry,
    AuditVerification,
    ChainCheck,
    chain_entry,
    draft_entry,
)
from connector.clock import Clock, SystemClock
from connector.store import tables as _tables  # noqa: F401  (registers the tables)
from connector.store.driver import Driver, driver_cursor
from connector.store.engine import WRITE_OPTION, StoreError

_ENTRY: Final = SQLModel.metadata.tables["audit_entry"]
_HEAD: Final = SQLModel.metadata.tables["audit_head"]
_HEAD_ID: Final = 1
_PAGE: Final = 1000
"""Entries read at a time while verifying."""
_HEAD_MISSING: Final = (
    "the audit log's head is missing: the audit_head row was deleted outside the node"
)


class SqlAuditLog:
    """A :class:`connector.audit.AuditLog` in SQLite or PostgreSQL."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        """Use a migrated database.

        Args:
            engine: From :func:`connector.store.create_engine`, after
                :func:`connector.store.migrate`.
            clock: Source of entry times; the system clock by default.
        """
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._clock: Clock = clock or SystemClock()
        self._driver = Driver(engine)
        sql = self._driver.sql
        self._sql_head = sql(_HEAD_SQL if self._driver.sqlite else _HEAD_SQL + " FOR UPDATE")
        self._sql_insert = sql(_INSERT_SQL)
        self._sql_move_head = sql(_MOVE_HEAD_SQL)

    def append(
        self,
        kind: str,
        *,
        actor: str,
        peer: str = "",
        subject: str = "",
        payload: Mapping[str, Any],
        connection: sa.Connection | Session | None = None,
    ) -> AuditEntry:
        """Append an entry; see :meth:`connector.audit.AuditLog.append`.

        Without ``connection`` the entry is appended in a transaction of its own.
        With one, it is appended inside the caller's transaction, which must be in
        progress on this log's database: the entry is on record when the caller
        commits and is gone if it rolls back. Until then the head is locked and
        other appends wait, so append late in a transaction and commit soon after.
        On SQLite the transaction must have been begun for writing (a connection or
        session of ``engine.execution_options(hanse_write=True)``, see
        :data:`connector.store.engine.WRITE_OPTION`); the returned entry counts only
        once the caller has committed.

        Args:
            kind: What happened.
            actor: Who did it.
            peer: The participant on the other side, if any.
            subject: What it concerns, if anything.
            payload: The details, a JSON object.
            connection: A connection or session in the caller's transaction.

        Returns:
            The entry appended.

        Raises:
            ValueError: A malformed entry, or a ``connection`` not in a transaction,
                on another database, or (SQLite) not begun for writing.
            StoreError: The head row is missing (the log was tampered with).
        """
        # Check the entry before touching the database (the caller's transaction
        # must not be left half-written by a malformed entry); number, time and
        # chain it once the head is locked.
        draft = draft_entry(kind=kind, actor=actor, peer=peer, subject=subject, payload=payload)
        return self.append_drafts([draft], connection=connection)[0]

    def append_drafts(
        self,
        drafts: Sequence[AuditDraft],
        *,
        connection: sa.Connection | Session | None = None,
    ) -> list[AuditEntry]:
        """Append several entries, in order, under one lock of the head.

        The entries are numbered one after the other and share one time; otherwise
        as :meth:`append` (with ``connection``: inside the caller's transaction).

        Args:
            drafts: From :func:`connector.audit.draft_entry`.
            connection: A connection or session in the caller's transaction.

        Returns:
            The entries appended.

        Raises:
            ValueError: A ``connection`` not fit to append in (see :meth:`append`).
            StoreError: The head row is missing (the log was tampered with).
        """
        if not drafts:
            return []
        if connection is None:
            with self._driver.write() as cursor:
                return self.append_in(cursor, drafts)
        cursor = driver_cursor(self._callers(connection))
        try:
            return self.append_in(cursor, drafts)
        finally:
            cursor.close()

    def append_in(self, cursor: Any, drafts: Sequence[AuditDraft]) -> list[AuditEntry]:
        """Append entries with a driver cursor in the caller's write transaction.

        For the stores that run plain SQL (see :mod:`connector.store.driver`) on this
        log's database: the caller has begun the transaction for writing and commits it.

        Raises:
            StoreError: The head row is missing (the log was tampered with).
        """
        if not drafts:
            return []
        driver = self._driver
        cursor.execute(self._sql_head)
        head = cursor.fetchone()
        if head is None:
            raise StoreError(_HEAD_MISSING + "; nothing can be appended")
        now = self._now()
        last = (int(head[0]), str(head[1]))
        entries = []
        for draft in drafts:
            entry = chain_entry(draft, last, time=now)
            entries.append(entry)
            last = (entry.seq, entry.hash)
        stored_time = driver.time(now)
        cursor.executemany(
            self._sql_insert,
            [
                (
                    entry.seq,
                    stored_time,
                    entry.kind,
                    entry.actor,
                    entry.peer,
                    entry.subject,
                    driver.json(entry.payload),
                    entry.prev_hash,
                    entry.hash,
                )
                for entry in entries
            ],
        )
        cursor.execute(self._sql_move_head, last)
        return entries

    def entries(
        self,
        *,
        after_seq: int = 0,
        limit: int = 100,
        subject: str = "",
        kind_prefix: str = "",
    ) -> list[AuditEntry]:
        """See :meth:`connector.audit.AuditLog.entries`."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = _page(after_seq, limit)
        if subject:
            query = query.where(_ENTRY.c.subject == subject)
        if kind_prefix:
            # substr, not LIKE: exact and case-sensitive on both backends, no escaping.
            query = query.where(sa.func.substr(_ENTRY.c.kind, 1, len(kind_prefix)) == kind_prefix)
        with self._engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    def verify(self) -> AuditVerification:
        """See :meth:`connector.audit.AuditLog.verify`.

        Reads the head and every entry from one snapshot (PostgreSQL: a
        ``REPEATABLE READ`` transaction), so appends going on meanwhile are not
        mistaken for damage; entries are read a page at a time.
        """
        with self._snapshot() as connection:
            head = connection.execute(_head_query()).one_or_none()

            def locate(hash_: str) -> int | None:
                found = connection.execute(
                    sa.select(_ENTRY.c.seq).where(_ENTRY.c.hash == hash_)
                ).scalar_one_or_none()
                return None if found is None else int(found)

            check = ChainCheck(locate=locate)
            after = 0
            while True:
                rows = connection.execute(_page(after, _PAGE)).all()
                for row in rows:
                    finding = check.add(_entry(row))
                    if finding is not None:
                        return finding
                if len(rows) < _PAGE:
                    break
                after = int(rows[-1].seq)
        if head is None:
            sound = check.finish(None).entries
            return AuditVerification(
                ok=False, entries=sound, first_bad_seq=None, problem=_HEAD_MISSING
            )
        return check.finish((int(head.seq), str(head.hash)))

    def head(self) -> tuple[int, str]:
        """See :meth:`connector.audit.AuditLog.head`.

        Raises:
            StoreError: The head row is missing (the log was tampered with).
        """
        with self._engine.connect() as connection:
            head = connection.execute(_head_query()).one_or_none()
        if head is None:
            raise StoreError(_HEAD_MISSING)
        return int(head.seq), str(head.hash)

    def _callers(self, given: sa.Connection | Session) -> sa.Connection:
        """The connection of the caller's transaction, once it is fit to append in."""
        if not given.in_transaction():
            raise ValueError(
                "append(connection=...) needs a transaction in progress "
                "(inside `with connection.begin():` or `with session.begin():`)"
            )
        connection = given.connection() if isinstance(given, Session) else given
        if connection.engine.url != self._engine.url:
            raise ValueError(
                "append(connection=...) got a connection to another database than the audit log's"
            )
        if connection.dialect.name == "sqlite" and not connection.get_execution_options().get(
            WRITE_OPTION
        ):
            raise ValueError(
                "on SQLite, append(connection=...) needs a transaction begun for writing: "
                f"use engine.execution_options({WRITE_OPTION}=True) for the connection "
                "or session, so that its BEGIN IMMEDIATE takes the write lock"
            )
        return connection

    def _snapshot(self) -> sa.Connection:
        connection = self._engine.connect()
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        return connection

    def _now(self) -> datetime:
        now = self._clock.now()
        if now.tzinfo is None:
            raise ValueError("the clock returned a naive datetime; it must be timezone-aware")
        return now.astimezone(UTC)


def _head_query() -> sa.Select[tuple[Any, Any]]:
    return sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == _HEAD_ID)


# Plain SQL for appends (see connector.store.driver), "?" placeholders.
_HEAD_SQL: Final = "SELECT seq, hash FROM audit_head WHERE id = 1"
_INSERT_SQL: Final = (
    "INSERT INTO audit_entry (seq, time, kind, actor, peer, subject, payload, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MOVE_HEAD_SQL: Final = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"


def _page(after_seq: int, limit: int) -> sa.Select[Any]:
    return sa.select(_ENTRY).where(_ENTRY.c.seq > after_seq).order_by(_ENTRY.c.seq).limit(limit)


def _entry(row: sa.Row[Any]) -> AuditEntry:
    fields = row._mapping
    return AuditEntry(
        seq=int(fields["seq"]),
        time=fields["time"],
        kind=fields["kind"],
        actor=fields["actor"],
        peer=fields["peer"],
        subject=fields["subject"],
        payload=fields["payload"],
        prev_hash=fields["prev_hash"],
        hash=fields["hash"],
    )
