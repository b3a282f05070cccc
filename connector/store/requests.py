"""The request log: answers to mutating requests, so a retried request gets the same answer.

A mutating RPC carries a ``request_id`` (AIP-155). The server looks the request up
with :meth:`RequestLog.recall` before acting and records its answer with
:meth:`RequestLog.remember` after; a duplicate then gets the earlier answer instead
of a second effect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col

from connector.clock import Clock, SystemClock
from connector.store.driver import Driver
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
        self._driver = Driver(engine)
        self._sql_recall = self._driver.sql(_RECALL_SQL)
        self._sql_insert = self._driver.sql(_INSERT_SQL)

    def recall(self, method: str, request_id: str) -> bytes | None:
        """See :meth:`RequestLog.recall`."""
        with self._driver.read() as cursor:
            cursor.execute(self._sql_recall, (request_id, method))
            found = cursor.fetchone()
        return None if found is None else bytes(found[0])

    def remember(self, method: str, request_id: str, response: bytes) -> bytes:
        """See :meth:`RequestLog.remember`."""
        with self._driver.write() as cursor:
            earlier = self.remember_in(cursor, method, request_id, response)
        return response if earlier is None else earlier

    def remember_in(
        self, cursor: Any, method: str, request_id: str, response: bytes
    ) -> bytes | None:
        """Record a response with a driver cursor in the caller's write transaction.

        For the stores that record an answer together with the change it reports
        (see :mod:`connector.store.driver`); the caller commits.

        Returns:
            ``None`` when ``response`` is recorded now; the response recorded
            before, when there is one (a concurrent duplicate was answered first).
        """
        created = self._driver.time(self._clock.now())
        cursor.execute(self._sql_insert, (request_id, method, response, created))
        if cursor.rowcount == 1:
            return None
        cursor.execute(self._sql_recall, (request_id, method))
        return bytes(cursor.fetchone()[0])

    def purge_older_than(self, cutoff: datetime) -> int:
        """See :meth:`RequestLog.purge_older_than`."""
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be a timezone-aware datetime")
        with Session(self._writer) as session, session.begin():
            purged = session.exec(
                sa.delete(RequestRow).where(col(RequestRow.create_time) < cutoff.astimezone(UTC))
            )
            return purged.rowcount


# Plain SQL for the driver (see connector.store.driver), "?" placeholders.
_RECALL_SQL: Final = "SELECT response FROM request_record WHERE request_id = ? AND method = ?"
_INSERT_SQL: Final = (
    "INSERT INTO request_record (request_id, method, response, create_time) "
    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
"""Record an answer unless one is on record for this (request id, method) already."""
