"""What every SQL store shares: its engines, its clock, and its read and write sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session

from connector.clock import Clock, SystemClock
from connector.store.engine import WRITE_OPTION, write_lock


class SqlStoreBase:
    """Engines (a reader and a writer), a clock, and sessions for one store."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._clock: Clock = clock or SystemClock()

    def _now(self) -> datetime:
        now = self._clock.now()
        if now.tzinfo is None:
            raise ValueError("the clock returned a naive datetime; it must be timezone-aware")
        return now.astimezone(UTC)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine) as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        # One transaction: committed if the block completes, rolled back on any error.
        with (
            write_lock(self._engine),
            Session(self._writer, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
