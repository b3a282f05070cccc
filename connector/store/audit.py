"""The audit log in the node's database (tables ``audit_entry`` and ``audit_head``).

Appends are serialised on the head row: PostgreSQL locks it with ``SELECT ... FOR
UPDATE``; on SQLite the write transaction (``BEGIN IMMEDIATE``) is exclusive
already. The entry is inserted and the head moved in the same transaction, either
the log's own or the caller's (see :meth:`SqlAuditLog.append`), so an entry is on
record exactly when the change it records is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from connector.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditVerification,
    ChainCheck,
    next_entry,
)
from connector.clock import Clock, SystemClock
from connector.store import tables as _tables  # noqa: F401  (registers the tables)
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
        draft = next_entry(
            (0, GENESIS_HASH),
            time=self._now(),
            kind=kind,
            actor=actor,
            peer=peer,
            subject=subject,
            payload=payload,
        )
        if connection is None:
            with self._writer.begin() as own:
                return self._append(own, draft)
        return self._append(self._callers(connection), draft)

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

    def _append(self, connection: sa.Connection, draft: AuditEntry) -> AuditEntry:
        head = connection.execute(_head_query().with_for_update()).one_or_none()
        if head is None:
            raise StoreError(_HEAD_MISSING + "; nothing can be appended")
        entry = next_entry(
            (int(head.seq), str(head.hash)),
            time=self._now(),
            kind=draft.kind,
            actor=draft.actor,
            peer=draft.peer,
            subject=draft.subject,
            payload=draft.payload,
        )
        connection.execute(
            _ENTRY.insert().values(
                seq=entry.seq,
                time=entry.time,
                kind=entry.kind,
                actor=entry.actor,
                peer=entry.peer,
                subject=entry.subject,
                payload=entry.payload,
                prev_hash=entry.prev_hash,
                hash=entry.hash,
            )
        )
        connection.execute(
            _HEAD.update().where(_HEAD.c.id == _HEAD_ID).values(seq=entry.seq, hash=entry.hash)
        )
        return entry

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
