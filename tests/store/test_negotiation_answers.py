"""Answers recorded with the change they report, and plain-SQL rows as SQLAlchemy reads them.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from connector.clock import FixedClock
from connector.negotiation.model import AnsweredBeforeError, RequestAnswer
from connector.negotiation.states import Message, NegotiationState
from connector.store import SqlAuditLog, SqlNegotiationStore, SqlRequestLog
from connector.store.engine import write_lock
from connector.store.negotiations import NegotiationRow
from tests.store.test_negotiation_store import T0, a_full_record, everything, make_record, note

METHOD = "protocol:SendAgreement:did:web:berlin.example"
S = NegotiationState


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def audit(engine: sa.Engine, clock: FixedClock) -> SqlAuditLog:
    return SqlAuditLog(engine, clock)


@pytest.fixture
def requests(engine: sa.Engine, clock: FixedClock) -> SqlRequestLog:
    return SqlRequestLog(engine, clock)


@pytest.fixture
def store(
    engine: sa.Engine, audit: SqlAuditLog, requests: SqlRequestLog, clock: FixedClock
) -> SqlNegotiationStore:
    return SqlNegotiationStore(engine, audit, clock, requests=requests)


def test_a_save_records_its_answer_in_the_same_transaction(
    store: SqlNegotiationStore, requests: SqlRequestLog
) -> None:
    # Prepare
    created = store.create(make_record())

    # Execute
    store.save(
        replace(created, state=S.AGREED),
        [note()],
        answer=RequestAnswer(METHOD, "urn:uuid:m-1", b"ack-1"),
    )

    # Assert
    assert requests.recall(METHOD, "urn:uuid:m-1") == b"ack-1"


def test_a_create_records_its_answer(store: SqlNegotiationStore, requests: SqlRequestLog) -> None:
    store.create(make_record(), [note()], answer=RequestAnswer(METHOD, "urn:uuid:m-0", b"ack-0"))

    assert requests.recall(METHOD, "urn:uuid:m-0") == b"ack-0"


def test_a_second_answer_to_one_request_changes_nothing(
    store: SqlNegotiationStore, requests: SqlRequestLog, audit: SqlAuditLog
) -> None:
    # Prepare: the request was answered (by a duplicate that got there first).
    created = store.create(make_record(), [note()])
    requests.remember(METHOD, "urn:uuid:m-1", b"first")
    before = everything(audit)

    # Execute
    with pytest.raises(AnsweredBeforeError) as caught:
        store.save(
            replace(created, state=S.AGREED),
            [note(), note()],
            answer=RequestAnswer(METHOD, "urn:uuid:m-1", b"second"),
        )
    with pytest.raises(AnsweredBeforeError):
        store.create(
            make_record("urn:uuid:c-2"),
            [note()],
            answer=RequestAnswer(METHOD, "urn:uuid:m-1", b"x"),
        )

    # Assert: the first answer stands, and neither change nor its audit entries happened.
    assert caught.value.response == b"first"
    assert store.get(created.id) == created
    assert store.find(created.role, consumer_pid="urn:uuid:c-2") is None
    assert everything(audit) == before
    assert requests.recall(METHOD, "urn:uuid:m-1") == b"first"
    assert audit.verify().ok


def test_duplicates_racing_make_one_change(
    store: SqlNegotiationStore, requests: SqlRequestLog, audit: SqlAuditLog
) -> None:
    # Prepare: several copies of one message, each creating "its" negotiation.
    copies = 5
    barrier = threading.Barrier(copies)

    def take(copy: int) -> str:
        barrier.wait()
        try:
            store.create(
                make_record(f"urn:uuid:p-{copy}"),
                [note(copy=copy)],
                answer=RequestAnswer(METHOD, "urn:uuid:m-9", f"ack-{copy}".encode()),
            )
        except AnsweredBeforeError as answered:
            return f"answered before: {answered.response.decode()}"
        return "taken"

    # Execute
    with ThreadPoolExecutor(max_workers=copies) as pool:
        outcomes = list(pool.map(take, range(copies)))

    # Assert: one copy took effect; the others got its answer.
    assert outcomes.count("taken") == 1
    winner = outcomes.index("taken")
    assert all(o == f"answered before: ack-{winner}" for o in outcomes if o != "taken")
    assert [e.payload["copy"] for e in everything(audit)] == [winner]
    assert requests.recall(METHOD, "urn:uuid:m-9") == f"ack-{winner}".encode()


def test_rows_written_with_plain_sql_read_back_through_sqlalchemy(
    store: SqlNegotiationStore, engine: sa.Engine
) -> None:
    # Prepare
    created = store.create(a_full_record())
    saved = store.save(replace(created, attempts=3, reason="again"))

    # Execute
    with Session(engine) as session:
        row = session.get(NegotiationRow, created.id)

    # Assert
    assert row is not None
    assert (row.version, row.attempts, row.reason) == (2, 3, "again")
    assert row.create_time == saved.create_time == T0
    assert row.update_time == saved.update_time
    assert row.next_attempt_at == saved.next_attempt_at
    assert row.offer == saved.offer
    assert row.pending is not None and row.pending["kind"] == Message.AGREEMENT.value
    assert store.list_negotiations() == [saved]


def test_rows_written_by_sqlalchemy_read_back_with_plain_sql(
    store: SqlNegotiationStore, engine: sa.Engine
) -> None:
    # Prepare: the row as the ORM writes it.
    created = store.create(a_full_record())
    with Session(engine) as session, session.begin():
        row = session.get(NegotiationRow, created.id)
        assert row is not None
        row.reason = "edited by the ORM"
        row.next_attempt_at = T0

    # Execute
    fetched = store.get(created.id)

    # Assert
    assert fetched.reason == "edited by the ORM"
    assert fetched.next_attempt_at == T0
    assert fetched.create_time == T0
    assert (
        replace(fetched, reason=created.reason, next_attempt_at=created.next_attempt_at) == created
    )


def test_the_write_lock_is_reentrant_and_held_until_released(engine: sa.Engine) -> None:
    # A writer holding the lock may take it again; another thread waits for it.
    order: list[str] = []
    with write_lock(engine), write_lock(engine):
        other = threading.Thread(target=lambda: _take(engine, order))
        other.start()
        other.join(0.2)
        order.append("first done")
    other.join(5)

    expected = (
        ["first done", "second"] if engine.dialect.name == "sqlite" else ["second", "first done"]
    )
    assert order == expected


def _take(engine: sa.Engine, order: list[str]) -> None:
    with write_lock(engine):
        order.append("second")
