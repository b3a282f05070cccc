"""The negotiation store: a node's contract negotiations (table ``negotiation``).

Every change is one transaction that also appends the change's audit entries
(through :meth:`connector.store.SqlAuditLog.append_in` in the same transaction), so
a negotiation and its audit trail are on record together or not at all; a change
caused by a peer's message records the answer to it there too (the request log).

:meth:`SqlNegotiationStore.save` is optimistic: it replaces the row only where
the stored version is still the one the record was read at
(``UPDATE ... WHERE id = :id AND version = :version``). Two writers that read the
same version race, and exactly one wins: on SQLite writers are serialised by
``BEGIN IMMEDIATE``; on PostgreSQL the loser waits for the winner's row lock and
then finds the version changed.

The frequent operations (create, save, get, find, due) run plain SQL on the
driver (see :mod:`connector.store.driver`); listing uses SQLAlchemy Core. A write
returns the record it wrote (its JSON as plain dicts and lists, its times in UTC:
what a later read gives) rather than reading the row back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from connector.audit import AuditDraft, draft_entry
from connector.clock import Clock
from connector.errors import ConnectorError, already_exists, invalid_argument, not_found
from connector.negotiation.model import (
    AnsweredBeforeError,
    AuditNote,
    NegotiationRecord,
    PendingMessage,
    RequestAnswer,
    StaleNegotiationError,
)
from connector.negotiation.states import Message, NegotiationState, Role
from connector.store.audit import SqlAuditLog
from connector.store.driver import Driver
from connector.store.requests import SqlRequestLog
from connector.store.sessions import SqlStoreBase
from connector.store.tables import UtcDateTime, _id_type


class NegotiationRow(SQLModel, table=True):
    """One negotiation of this node (table ``negotiation``).

    Made by migration ``0003``; see :class:`connector.negotiation.model.NegotiationRecord`
    for what each field means.
    """

    __tablename__ = "negotiation"
    __table_args__ = (
        sa.Index("ix_negotiation_role_consumer_pid", "role", "consumer_pid"),
        sa.Index("ix_negotiation_role_provider_pid", "role", "provider_pid"),
        sa.Index("ix_negotiation_create_time_id", "create_time", "id"),
        sa.Index("ix_negotiation_next_attempt_at", "next_attempt_at"),
    )

    id: str = Field(sa_column=sa.Column(_id_type(), primary_key=True))
    """This node's process id."""
    role: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    """``consumer`` or ``provider``."""
    state: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    """A :class:`connector.negotiation.states.NegotiationState` value."""
    consumer_pid: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The consumer's process id."""
    provider_pid: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The provider's process id, or empty until known."""
    counterparty_id: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The other side's participant id."""
    counterparty_address: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The other side's protocol API, host:port."""
    dataset_id: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The dataset at the provider."""
    offer_id: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The provider's offer the negotiation started from."""
    offer: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """The latest offer (ODRL)."""
    usage: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """The consumer's stated use."""
    agreement: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=True)
    )
    """The DSP Agreement, or SQL NULL."""
    signatures: list[dict[str, Any]] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """Signatures over the agreement, a JSON array."""
    reason: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """Why it is terminated, or what it waits for."""
    pending: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=True)
    )
    """``{kind, message_id, payload, signature}`` of the unacknowledged message, or SQL NULL."""
    attempts: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    """Deliveries of the pending message tried so far."""
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    """When the pending message is due (again)."""
    version: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    """1 when created, bumped by every save."""
    create_time: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False))
    """When the negotiation was created."""
    update_time: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False))
    """When it was last saved."""
    extra: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """Further facts, a JSON object."""


class SqlNegotiationStore(SqlStoreBase):
    """A :class:`connector.negotiation.model.NegotiationStore` in SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: sa.Engine,
        audit: SqlAuditLog,
        clock: Clock | None = None,
        *,
        requests: SqlRequestLog | None = None,
    ) -> None:
        """Use a migrated database.

        Args:
            engine: From :func:`connector.store.create_engine`, after
                :func:`connector.store.migrate`.
            audit: The audit log on the same database; each change's notes are
                appended to it in the change's transaction.
            clock: Source of create and update times; the system clock by default.
            requests: The request log on the same database, where the answer to
                the request that caused a change is recorded in the change's
                transaction; one on ``engine`` by default.
        """
        super().__init__(engine, clock)
        self._audit = audit
        self._requests = requests or SqlRequestLog(engine, clock)
        self._driver = Driver(engine)
        sql = self._driver.sql
        self._sql_insert = sql(_INSERT_SQL)
        self._sql_update = sql(_UPDATE_SQL)
        self._sql_version = sql(_VERSION_SQL)
        self._sql_get = sql(_GET_SQL)
        self._sql_find_consumer = sql(_FIND_SQL + "consumer_pid = ?" + _FIND_ORDER)
        self._sql_find_provider = sql(_FIND_SQL + "provider_pid = ?" + _FIND_ORDER)
        self._sql_find_both = sql(_FIND_SQL + "consumer_pid = ? AND provider_pid = ?" + _FIND_ORDER)
        self._sql_due = sql(_DUE_SQL)

    def create(
        self,
        record: NegotiationRecord,
        audit: Sequence[AuditNote] = (),
        *,
        answer: RequestAnswer | None = None,
    ) -> NegotiationRecord:
        """Insert a new negotiation (version 1) and its audit entries in one transaction.

        The record's version and times are ignored; the audit entries name
        ``record.id`` as their subject. With ``answer``, the answer to the request
        that caused the negotiation is recorded in the request log in the same
        transaction.

        Returns:
            The negotiation as stored.

        Raises:
            ConnectorError: ``ALREADY_EXISTS`` (reason ``TRANSITION_INVALID``) if
                the id is taken; nothing is written then, no audit entry either.
            AnsweredBeforeError: ``answer``'s request has an answer on record
                already (a duplicate was answered first); nothing is written.
            ValueError: A naive ``next_attempt_at``, or a malformed audit note
                (nothing is written).
        """
        values = _values(record)
        drafts = _drafts(audit, subject=record.id)
        now = self._now()
        row = {**values, "id": record.id, "version": 1, "create_time": now, "update_time": now}
        driver = self._driver
        try:
            with driver.write() as cursor:
                cursor.execute(self._sql_insert, self._parameters(row, _COLUMNS))
                self._record_answer(cursor, answer)
                self._audit.append_in(cursor, drafts)
        except driver.integrity_error:
            # The id is taken (or a concurrent writer took it first).
            with driver.read() as cursor:
                cursor.execute(self._sql_version, (record.id,))
                if cursor.fetchone() is not None:
                    raise _exists(record.id) from None
            raise
        return _record(row)

    def get(self, negotiation_id: str) -> NegotiationRecord:
        """The negotiation with this id.

        Raises:
            ConnectorError: ``NEGOTIATION_NOT_FOUND``.
        """
        with self._driver.read() as cursor:
            cursor.execute(self._sql_get, (negotiation_id,))
            found = cursor.fetchone()
        if found is None:
            raise _not_found(negotiation_id)
        return self._read_record(found)

    def find(
        self, role: Role, *, consumer_pid: str = "", provider_pid: str = ""
    ) -> NegotiationRecord | None:
        """This node's negotiation in ``role`` with those process ids, if any.

        Each process id given must match; an empty one is not looked at. Should
        several match, the oldest is returned.

        Raises:
            ValueError: Neither process id is given.
        """
        if not consumer_pid and not provider_pid:
            raise ValueError("find needs a consumer_pid or a provider_pid")
        role_value = Role(role).value
        parameters: tuple[str, ...]
        if consumer_pid and provider_pid:
            query, parameters = self._sql_find_both, (role_value, consumer_pid, provider_pid)
        elif consumer_pid:
            query, parameters = self._sql_find_consumer, (role_value, consumer_pid)
        else:
            query, parameters = self._sql_find_provider, (role_value, provider_pid)
        with self._driver.read() as cursor:
            cursor.execute(query, parameters)
            found = cursor.fetchone()
        return None if found is None else self._read_record(found)

    def save(
        self,
        record: NegotiationRecord,
        audit: Sequence[AuditNote] = (),
        *,
        answer: RequestAnswer | None = None,
    ) -> NegotiationRecord:
        """Replace the stored version ``record.version`` with ``record`` (version + 1).

        Every field but the id and the create time is replaced; the update time
        comes from the clock. The audit entries (subject ``record.id``) are
        appended in the same transaction, and so is ``answer`` (see :meth:`create`).

        Returns:
            The negotiation as stored.

        Raises:
            StaleNegotiationError: The stored version is not ``record.version``
                (someone else saved first); nothing is written, no audit entry either.
            AnsweredBeforeError: As :meth:`create`; nothing is written.
            ConnectorError: ``NEGOTIATION_NOT_FOUND`` if there is no such negotiation.
            ValueError: A naive ``next_attempt_at``, or a malformed audit note
                (nothing is written).
        """
        values = _values(record)
        drafts = _drafts(audit, subject=record.id)
        now = self._now()
        changes = {**values, "version": record.version + 1, "update_time": now}
        parameters = (*self._parameters(changes, _CHANGED), record.id, record.version)
        driver = self._driver
        with driver.write() as cursor:
            cursor.execute(self._sql_update, parameters)
            updated = cursor.fetchone()
            if updated is None:
                cursor.execute(self._sql_version, (record.id,))
                current = cursor.fetchone()
                if current is None:
                    raise _not_found(record.id)
                raise StaleNegotiationError(
                    f"negotiation {record.id!r} is at version {current[0]}, "
                    f"not {record.version}: it changed since it was read"
                )
            self._record_answer(cursor, answer)
            self._audit.append_in(cursor, drafts)
        created = driver.read_time(updated[0])
        return _record({**changes, "id": record.id, "create_time": created})

    def append_audit(self, audit: Sequence[AuditNote]) -> None:
        """Append audit entries that change no negotiation, in one transaction.

        Each entry's subject is its payload's ``negotiation`` (a string), or empty.

        Raises:
            ValueError: A malformed note; none of the entries is appended then.
        """
        if not audit:
            return
        drafts = _drafts(audit, subject=None)
        with self._driver.write() as cursor:
            self._audit.append_in(cursor, drafts)

    def list_negotiations(
        self, *, limit: int = 50, before: str = "", state: str = ""
    ) -> list[NegotiationRecord]:
        """Negotiations, newest first by create time (then id, descending).

        Args:
            limit: Page size, at least 1.
            before: Start after this negotiation's id (the last one of the previous
                page): only negotiations older than it in that order.
            state: If set, only negotiations in this state (a
                :class:`connector.negotiation.states.NegotiationState` value).

        Returns:
            The page; fewer than ``limit`` means there is no next page.

        Raises:
            ConnectorError: ``PAGE_TOKEN_INVALID`` if ``before`` names no negotiation.
            ValueError: ``limit`` below 1, or an unknown ``state``.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = sa.select(_TABLE).order_by(_C.create_time.desc(), _C.id.desc()).limit(limit)
        if state:
            query = query.where(_C.state == NegotiationState(state).value)
        with self._engine.connect() as connection:
            if before:
                anchor = connection.execute(_GET, {"nid": before}).first()
                if anchor is None:
                    raise invalid_argument(
                        f"no negotiation {before!r} to continue the list from; "
                        "start again from the first page",
                        reason="PAGE_TOKEN_INVALID",
                    )
                created = _C.create_time
                query = query.where(
                    sa.or_(
                        created < anchor.create_time,
                        sa.and_(created == anchor.create_time, _C.id < before),
                    )
                )
            return [_record(row._mapping) for row in connection.execute(query)]

    def due(self, now: datetime, limit: int = 32) -> list[NegotiationRecord]:
        """Negotiations whose pending message is due at ``now``, earliest first.

        Due: a pending message and ``next_attempt_at`` at or before ``now``; ties
        are ordered by id.

        Raises:
            ValueError: A naive ``now``, or ``limit`` below 1.
        """
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now.isoformat()}; use a timezone-aware one")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._driver.read() as cursor:
            cursor.execute(self._sql_due, (self._driver.time(now), limit))
            return [self._read_record(found) for found in cursor.fetchall()]

    def _record_answer(self, cursor: Any, answer: RequestAnswer | None) -> None:
        """Record ``answer`` in the transaction of ``cursor``, or refuse a second one."""
        if answer is None:
            return
        earlier = self._requests.remember_in(
            cursor, answer.method, answer.request_id, answer.response
        )
        if earlier is not None:
            raise AnsweredBeforeError(earlier)

    def _parameters(self, row: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
        """The values of ``columns`` of ``row``, as the driver stores them."""
        driver = self._driver
        out = []
        for name in columns:
            value = row[name]
            if name in _JSON_COLUMNS:
                value = driver.json(value)
            elif name in _TIME_COLUMNS:
                value = driver.time(value)
            out.append(value)
        return out

    def _read_record(self, found: Sequence[Any]) -> NegotiationRecord:
        """The record of a row selected as :data:`_COLUMNS`."""
        driver = self._driver
        row = dict(zip(_COLUMNS, found, strict=True))
        for name in _JSON_COLUMNS:
            row[name] = driver.read_json(row[name])
        for name in _TIME_COLUMNS:
            row[name] = driver.read_time(row[name])
        return _record(row)


_TABLE: Final = SQLModel.metadata.tables[NegotiationRow.__tablename__]
_C = _TABLE.c

_GET: Final = sa.select(_TABLE).where(_C.id == sa.bindparam("nid"))

_COLUMNS: Final = tuple(column.name for column in _TABLE.columns)
"""Every column, in the table's order: what the plain-SQL statements select."""
_CHANGED: Final = tuple(name for name in _COLUMNS if name not in ("id", "create_time"))
"""The columns a save sets."""
_JSON_COLUMNS: Final = frozenset(c.name for c in _TABLE.columns if isinstance(c.type, sa.JSON))
_TIME_COLUMNS: Final = frozenset(c.name for c in _TABLE.columns if isinstance(c.type, UtcDateTime))

# Plain SQL for the driver (see connector.store.driver), "?" placeholders; built from
# the column names above, never from input.
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM negotiation"  # noqa: S608
_GET_SQL: Final = f"{_SELECT} WHERE id = ?"
_VERSION_SQL: Final = "SELECT version FROM negotiation WHERE id = ?"
_INSERT_SQL: Final = (
    f"INSERT INTO negotiation ({', '.join(_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_UPDATE_SQL: Final = (
    f"UPDATE negotiation SET {', '.join(f'{name} = ?' for name in _CHANGED)} "  # noqa: S608
    "WHERE id = ? AND version = ? RETURNING create_time"
)
"""A save: no row returned means the version (or the negotiation) is not there."""
_FIND_SQL: Final = f"{_SELECT} WHERE role = ? AND "
_FIND_ORDER: Final = " ORDER BY create_time, id LIMIT 1"
_DUE_SQL: Final = (
    f"{_SELECT} WHERE pending IS NOT NULL AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, id LIMIT ?"
)


def _drafts(notes: Sequence[AuditNote], *, subject: str | None) -> list[AuditDraft]:
    """The notes as checked audit drafts; ``subject=None`` takes it from each payload."""
    drafts = []
    for note in notes:
        if subject is None:
            named = note.payload.get("negotiation", "")
            entry_subject = named if isinstance(named, str) else ""
        else:
            entry_subject = subject
        drafts.append(
            draft_entry(
                kind=note.kind,
                actor=note.actor,
                peer=note.peer,
                subject=entry_subject,
                payload=note.payload,
            )
        )
    return drafts


def _values(record: NegotiationRecord) -> dict[str, Any]:
    """The columns of ``record`` a save replaces (all but id, version and times)."""
    if record.next_attempt_at is not None and record.next_attempt_at.tzinfo is None:
        raise ValueError(
            f"negotiation {record.id!r} has a naive next_attempt_at "
            f"{record.next_attempt_at.isoformat()}; use a timezone-aware datetime"
        )
    pending = record.pending
    return {
        "role": Role(record.role).value,
        "state": NegotiationState(record.state).value,
        "consumer_pid": record.consumer_pid,
        "provider_pid": record.provider_pid,
        "counterparty_id": record.counterparty_id,
        "counterparty_address": record.counterparty_address,
        "dataset_id": record.dataset_id,
        "offer_id": record.offer_id,
        "offer": _plain(record.offer),
        "usage": _plain(record.usage),
        "agreement": None if record.agreement is None else _plain(record.agreement),
        "signatures": [_plain(signature) for signature in record.signatures],
        "reason": record.reason,
        "pending": None
        if pending is None
        else {
            "kind": Message(pending.kind).value,
            "message_id": pending.message_id,
            "payload": _plain(pending.payload),
            "signature": None if pending.signature is None else _plain(pending.signature),
            "from_state": None if pending.from_state is None else pending.from_state.value,
        },
        "attempts": record.attempts,
        "next_attempt_at": None
        if record.next_attempt_at is None
        else record.next_attempt_at.astimezone(UTC),
        "extra": _plain(record.extra),
    }


def _plain(value: Any) -> Any:
    """``value`` as plain dicts and lists, ready for JSON."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value  # the common leaves, without the slower abstract-class checks
    if kind is dict or isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [_plain(item) for item in value]
    return value


def _record(row: Mapping[Any, Any]) -> NegotiationRecord:
    """The record of a row (a result row's mapping, or the values just written)."""
    pending = row["pending"]
    agreement = row["agreement"]
    return NegotiationRecord(
        id=row["id"],
        role=Role(row["role"]),
        state=NegotiationState(row["state"]),
        consumer_pid=row["consumer_pid"],
        provider_pid=row["provider_pid"],
        counterparty_id=row["counterparty_id"],
        counterparty_address=row["counterparty_address"],
        dataset_id=row["dataset_id"],
        offer_id=row["offer_id"],
        offer=dict(row["offer"]),
        usage=dict(row["usage"]),
        agreement=None if agreement is None else dict(agreement),
        signatures=tuple(dict(signature) for signature in row["signatures"]),
        reason=row["reason"],
        pending=None
        if pending is None
        else PendingMessage(
            kind=Message(pending["kind"]),
            message_id=pending["message_id"],
            payload=dict(pending["payload"]),
            signature=None if pending.get("signature") is None else dict(pending["signature"]),
            from_state=None
            if pending.get("from_state") is None
            else NegotiationState(pending["from_state"]),
        ),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        version=row["version"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        extra=dict(row["extra"]),
    )


def _not_found(negotiation_id: str) -> ConnectorError:
    return not_found(
        "NEGOTIATION_NOT_FOUND",
        f"no negotiation {negotiation_id!r} on this node",
        negotiation_id=negotiation_id,
    )


def _exists(negotiation_id: str) -> ConnectorError:
    return already_exists(
        "TRANSITION_INVALID",
        f"negotiation {negotiation_id!r} exists already; a new negotiation needs a new process id",
        negotiation_id=negotiation_id,
    )


__all__ = ["NegotiationRow", "SqlNegotiationStore"]
