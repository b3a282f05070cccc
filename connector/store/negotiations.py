"""The negotiation store: a node's contract negotiations (table ``negotiation``).

Every change is one transaction that also appends the change's audit entries
(through :meth:`connector.store.SqlAuditLog.append` in the same transaction), so
a negotiation and its audit trail are on record together or not at all.

:meth:`SqlNegotiationStore.save` is optimistic: it replaces the row only where
the stored version is still the one the record was read at
(``UPDATE ... WHERE id = :id AND version = :version``). Two writers that read the
same version race, and exactly one wins: on SQLite writers are serialised by
``BEGIN IMMEDIATE``; on PostgreSQL the loser waits for the winner's row lock and
then finds the version changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from connector.clock import Clock
from connector.errors import ConnectorError, already_exists, invalid_argument, not_found
from connector.negotiation.model import (
    AuditNote,
    NegotiationRecord,
    PendingMessage,
    StaleNegotiationError,
)
from connector.negotiation.states import Message, NegotiationState, Role
from connector.store.audit import SqlAuditLog
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

    def __init__(self, engine: sa.Engine, audit: SqlAuditLog, clock: Clock | None = None) -> None:
        """Use a migrated database.

        Args:
            engine: From :func:`connector.store.create_engine`, after
                :func:`connector.store.migrate`.
            audit: The audit log on the same database; each change's notes are
                appended to it in the change's transaction.
            clock: Source of create and update times; the system clock by default.
        """
        super().__init__(engine, clock)
        self._audit = audit

    def create(
        self, record: NegotiationRecord, audit: Sequence[AuditNote] = ()
    ) -> NegotiationRecord:
        """Insert a new negotiation (version 1) and its audit entries in one transaction.

        The record's version and times are ignored; the audit entries name
        ``record.id`` as their subject.

        Returns:
            The negotiation as stored.

        Raises:
            ConnectorError: ``ALREADY_EXISTS`` (reason ``TRANSITION_INVALID``) if
                the id is taken; nothing is written then, no audit entry either.
            ValueError: A naive ``next_attempt_at``, or a malformed audit note
                (nothing is written).
        """
        values = _values(record)
        now = self._now()
        try:
            with self._write() as session:
                if session.get(NegotiationRow, record.id) is not None:
                    raise _exists(record.id)
                row = NegotiationRow(
                    id=record.id, version=1, create_time=now, update_time=now, **values
                )
                session.add(row)
                session.flush()
                self._append(session, audit, subject=record.id)
                result = self._reread(session, record.id)
        except IntegrityError:
            # A concurrent writer took the id between the check and the insert.
            with self._read() as session:
                if session.get(NegotiationRow, record.id) is not None:
                    raise _exists(record.id) from None
            raise
        return result

    def get(self, negotiation_id: str) -> NegotiationRecord:
        """The negotiation with this id.

        Raises:
            ConnectorError: ``NEGOTIATION_NOT_FOUND``.
        """
        with self._read() as session:
            row = session.get(NegotiationRow, negotiation_id)
            if row is None:
                raise _not_found(negotiation_id)
            return _record(row)

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
        query = select(NegotiationRow).where(col(NegotiationRow.role) == Role(role).value)
        if consumer_pid:
            query = query.where(col(NegotiationRow.consumer_pid) == consumer_pid)
        if provider_pid:
            query = query.where(col(NegotiationRow.provider_pid) == provider_pid)
        query = query.order_by(col(NegotiationRow.create_time), col(NegotiationRow.id)).limit(1)
        with self._read() as session:
            row = session.exec(query).first()
            return None if row is None else _record(row)

    def save(self, record: NegotiationRecord, audit: Sequence[AuditNote] = ()) -> NegotiationRecord:
        """Replace the stored version ``record.version`` with ``record`` (version + 1).

        Every field but the id and the create time is replaced; the update time
        comes from the clock. The audit entries (subject ``record.id``) are
        appended in the same transaction.

        Returns:
            The negotiation as stored.

        Raises:
            StaleNegotiationError: The stored version is not ``record.version``
                (someone else saved first); nothing is written, no audit entry either.
            ConnectorError: ``NEGOTIATION_NOT_FOUND`` if there is no such negotiation.
            ValueError: A naive ``next_attempt_at``, or a malformed audit note
                (nothing is written).
        """
        values = _values(record)
        now = self._now()
        with self._write() as session:
            updated = session.exec(
                sa.update(NegotiationRow)
                .where(
                    col(NegotiationRow.id) == record.id,
                    col(NegotiationRow.version) == record.version,
                )
                .values(**values, version=record.version + 1, update_time=now)
            )
            if updated.rowcount != 1:
                current = session.get(NegotiationRow, record.id)
                if current is None:
                    raise _not_found(record.id)
                raise StaleNegotiationError(
                    f"negotiation {record.id!r} is at version {current.version}, "
                    f"not {record.version}: it changed since it was read"
                )
            self._append(session, audit, subject=record.id)
            return self._reread(session, record.id)

    def append_audit(self, audit: Sequence[AuditNote]) -> None:
        """Append audit entries that change no negotiation, in one transaction.

        Each entry's subject is its payload's ``negotiation`` (a string), or empty.

        Raises:
            ValueError: A malformed note; none of the entries is appended then.
        """
        if not audit:
            return
        with self._write() as session:
            self._append(session, audit, subject=None)

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
        query = (
            select(NegotiationRow)
            .order_by(col(NegotiationRow.create_time).desc(), col(NegotiationRow.id).desc())
            .limit(limit)
        )
        if state:
            query = query.where(col(NegotiationRow.state) == NegotiationState(state).value)
        with self._read() as session:
            if before:
                anchor = session.get(NegotiationRow, before)
                if anchor is None:
                    raise invalid_argument(
                        f"no negotiation {before!r} to continue the list from; "
                        "start again from the first page",
                        reason="PAGE_TOKEN_INVALID",
                    )
                created = col(NegotiationRow.create_time)
                query = query.where(
                    sa.or_(
                        created < anchor.create_time,
                        sa.and_(created == anchor.create_time, col(NegotiationRow.id) < before),
                    )
                )
            return [_record(row) for row in session.exec(query).all()]

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
        attempt = col(NegotiationRow.next_attempt_at)
        query = (
            select(NegotiationRow)
            .where(col(NegotiationRow.pending).is_not(None), attempt <= now.astimezone(UTC))
            .order_by(attempt, col(NegotiationRow.id))
            .limit(limit)
        )
        with self._read() as session:
            return [_record(row) for row in session.exec(query).all()]

    def _append(self, session: Session, notes: Sequence[AuditNote], *, subject: str | None) -> None:
        for note in notes:
            if subject is None:
                named = note.payload.get("negotiation", "")
                entry_subject = named if isinstance(named, str) else ""
            else:
                entry_subject = subject
            self._audit.append(
                note.kind,
                actor=note.actor,
                peer=note.peer,
                subject=entry_subject,
                payload=note.payload,
                connection=session,
            )

    def _reread(self, session: Session, negotiation_id: str) -> NegotiationRecord:
        """The row as the database holds it now (JSON and times as every later read sees them)."""
        row = session.get(NegotiationRow, negotiation_id, populate_existing=True)
        if row is None:  # pragma: no cover - written in this very transaction
            raise _not_found(negotiation_id)
        return _record(row)


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
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [_plain(item) for item in value]
    return value


def _record(row: NegotiationRow) -> NegotiationRecord:
    pending = row.pending
    return NegotiationRecord(
        id=row.id,
        role=Role(row.role),
        state=NegotiationState(row.state),
        consumer_pid=row.consumer_pid,
        provider_pid=row.provider_pid,
        counterparty_id=row.counterparty_id,
        counterparty_address=row.counterparty_address,
        dataset_id=row.dataset_id,
        offer_id=row.offer_id,
        offer=dict(row.offer),
        usage=dict(row.usage),
        agreement=None if row.agreement is None else dict(row.agreement),
        signatures=tuple(dict(signature) for signature in row.signatures),
        reason=row.reason,
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
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        version=row.version,
        create_time=row.create_time,
        update_time=row.update_time,
        extra=dict(row.extra),
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
