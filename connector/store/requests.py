"""The request log: answers to mutating requests, so a retried request gets the same answer.

A mutating RPC carries a ``request_id`` (AIP-155). The server looks the request up
with :meth:`RequestLog.recall` before acting and records its answer with
:meth:`RequestLog.remember` after; a duplicate then gets the earlier answer instead
of a second effect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from connector.clock import Clock, SystemClock
from connector.store.engine import WRITE_OPTION
from connector.store.tables import RequestRow


class RequestLog(Protocol):
    """Responses to mutating requests, keyed by method and request id."""

    def recall(self, method: str, request_id: str) -> bytes | None:
        """The response recorded for this request, or ``None`` if there is none."""
        ...

    def remember(self, method: str, request_id: str, response: bytes) -> bytes:
        """Record the response to a request.

        Args:
            method: The full RPC method name.
            request_id: The caller's request id.
            response: The serialised response.

        Returns:
            The response now on record: ``response``, or the one recorded first if a
            duplicate of the request was answered at the same time.
        """
        ...

    def purge_older_than(self, cutoff: datetime) -> int:
        """Forget responses recorded before ``cutoff`` (timezone-aware).

        Returns:
            How many were forgotten.
        """
        ...


class SqlRequestLog:
    """A :class:`RequestLog` in SQLite or PostgreSQL (table ``request_record``)."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        """Use a migrated database.

        Args:
            engine: From :func:`connector.store.create_engine`, after
                :func:`connector.store.migrate`.
            clock: Source of the record times; the system clock by default.
        """
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._clock: Clock = clock or SystemClock()

    def recall(self, method: str, request_id: str) -> bytes | None:
        """See :meth:`RequestLog.recall`."""
        with Session(self._engine) as session:
            return session.exec(_response(method, request_id)).first()

    def remember(self, method: str, request_id: str, response: bytes) -> bytes:
        """See :meth:`RequestLog.remember`."""
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        record = insert(RequestRow).values(
            request_id=request_id,
            method=method,
            response=response,
            create_time=self._clock.now(),
        )
        with Session(self._writer) as session, session.begin():
            # A concurrent duplicate may have been recorded first: keep its answer.
            session.exec(record.on_conflict_do_nothing())
            return session.exec(_response(method, request_id)).one()

    def purge_older_than(self, cutoff: datetime) -> int:
        """See :meth:`RequestLog.purge_older_than`."""
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be a timezone-aware datetime")
        with Session(self._writer) as session, session.begin():
            purged = session.exec(
                sa.delete(RequestRow).where(col(RequestRow.create_time) < cutoff.astimezone(UTC))
            )
            return purged.rowcount


def _response(method: str, request_id: str) -> SelectOfScalar[bytes]:
    return select(col(RequestRow.response)).where(
        col(RequestRow.request_id) == request_id, col(RequestRow.method) == method
    )
