"""The audit log suite: every test runs on SQLite and on PostgreSQL.

Tampering is done as an intruder would: with raw SQL on the tables, not through
the log.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel

from connector.audit import GENESIS_HASH, AuditEntry, AuditVerification, entry_hash
from connector.clock import FixedClock
from connector.store import SqlAuditLog, StoreError, create_engine, migrate, sqlite_url
from connector.store import audit as audit_store
from connector.store.engine import WRITE_OPTION
from connector.store.tables import RequestRow

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KINDS = ("negotiation.message.sent", "negotiation.state", "agreement.signed", "dataset.created")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def log(engine: sa.Engine, clock: FixedClock) -> SqlAuditLog:
    return SqlAuditLog(engine, clock)


def _fill(log: SqlAuditLog, clock: FixedClock, count: int) -> list[AuditEntry]:
    """Append ``count`` entries of rotating kinds and subjects, a second apart."""
    appended = []
    for n in range(1, count + 1):
        appended.append(
            log.append(
                KINDS[n % len(KINDS)],
                actor="node",
                peer="did:web:berlin.example" if n % 2 else "",
                subject=f"neg-{n % 3}",
                payload={"n": n, "note": f"event {n}"},
            )
        )
        clock.advance(timedelta(seconds=1))
    return appended


def _tamper(engine: sa.Engine, *statements: str, **params: object) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement), params)


def _broken(first_bad_seq: int | None, entries: int, problem: str) -> AuditVerification:
    return AuditVerification(
        ok=False, entries=entries, first_bad_seq=first_bad_seq, problem=problem
    )


# Appending and reading


def test_an_empty_log_is_sound(log: SqlAuditLog) -> None:
    assert log.head() == (0, GENESIS_HASH)
    assert log.entries() == []
    assert log.verify() == AuditVerification(ok=True, entries=0, first_bad_seq=None, problem="")


def test_appends_are_numbered_chained_and_hashed(log: SqlAuditLog, clock: FixedClock) -> None:
    # Execute
    first, second, third = _fill(log, clock, 3)

    # Assert
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert first.time == T0
    assert third.time == T0 + timedelta(seconds=2)
    for entry in (first, second, third):
        assert entry.hash == entry_hash(
            seq=entry.seq,
            time=entry.time,
            kind=entry.kind,
            actor=entry.actor,
            peer=entry.peer,
            subject=entry.subject,
            payload=entry.payload,
            prev_hash=entry.prev_hash,
        )
    assert log.head() == (3, third.hash)


def test_entries_read_back_equal_the_appended_ones(log: SqlAuditLog) -> None:
    # Prepare: a payload with forms JSON does not keep (a tuple, a float equal to an int).
    payload = {"offer": {"id": "o1", "epsilon": 1.0, "tags": ("a", "b")}, "ok": True, "none": None}

    # Execute
    appended = log.append(
        "agreement.signed",
        actor="did:web:hamburg.example",
        peer="did:web:berlin.example",
        subject="agr-1",
        payload=payload,
    )

    # Assert
    assert appended.payload == {
        "offer": {"id": "o1", "epsilon": 1, "tags": ["a", "b"]},
        "ok": True,
        "none": None,
    }
    assert log.entries() == [appended]
    assert log.verify().ok


def test_entries_are_paged_in_order(log: SqlAuditLog, clock: FixedClock) -> None:
    appended = _fill(log, clock, 7)

    pages = [
        log.entries(limit=3),
        log.entries(after_seq=3, limit=3),
        log.entries(after_seq=6, limit=3),
        log.entries(after_seq=7, limit=3),
    ]

    assert [[entry.seq for entry in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7], []]
    assert [entry for page in pages for entry in page] == appended


def test_entries_filter_by_subject_and_kind_prefix(log: SqlAuditLog, clock: FixedClock) -> None:
    _fill(log, clock, 12)

    about_neg_1 = log.entries(subject="neg-1")
    negotiation = log.entries(kind_prefix="negotiation.")
    sent = log.entries(kind_prefix="negotiation.message.")
    both = log.entries(subject="neg-1", kind_prefix="negotiation.", limit=2)
    after = log.entries(subject="neg-1", after_seq=both[-1].seq)

    assert [entry.seq for entry in about_neg_1] == [1, 4, 7, 10]
    assert [entry.seq for entry in negotiation] == [1, 4, 5, 8, 9, 12]
    assert [entry.seq for entry in sent] == [4, 8, 12]
    assert [entry.seq for entry in both] == [1, 4]
    assert [entry.seq for entry in after] == [7, 10]
    assert log.entries(kind_prefix="Negotiation.") == []  # case-sensitive on both backends
    assert log.entries(kind_prefix="negotiation_") == []  # no LIKE wildcards
    assert log.entries(subject="neg-9") == []


def test_entries_refuse_an_empty_page(log: SqlAuditLog) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        log.entries(limit=0)


@pytest.mark.parametrize(
    ("kind", "actor", "payload", "message"),
    [
        ("Dataset Created", "node", {}, "malformed"),
        ("", "node", {}, "malformed"),
        ("dataset.created", "", {}, "needs an actor"),
        ("dataset.created", "node", {"epsilon": float("nan")}, "must be JSON"),
        ("dataset.created", "node", {"big": 2**60}, "must be JSON"),
        ("dataset.created", "node", {"ids": {1, 2}}, "must be JSON"),
        ("dataset.created", "node", {1: "not a string key"}, "must be JSON"),
    ],
)
def test_a_malformed_entry_is_refused_and_nothing_appended(
    log: SqlAuditLog, kind: str, actor: str, payload: dict[object, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        log.append(kind, actor=actor, payload=payload)  # type: ignore[arg-type]

    assert log.head() == (0, GENESIS_HASH)
    assert log.entries() == []


# Verification against tampering


def test_verify_passes_an_intact_log(log: SqlAuditLog, clock: FixedClock) -> None:
    _fill(log, clock, 12)

    assert log.verify() == AuditVerification(ok=True, entries=12, first_bad_seq=None, problem="")


def test_an_edited_payload_is_found(engine: sa.Engine, log: SqlAuditLog, clock: FixedClock) -> None:
    # Prepare
    _fill(log, clock, 12)
    _tamper(
        engine, """UPDATE audit_entry SET payload = '{"n": 99, "note": "event 7"}' WHERE seq = 7"""
    )

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(7, 6, "entry 7 was edited: its hash does not match its content")


def test_verify_reads_long_logs_a_page_at_a_time(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: pages of 5, a log of 12 (pages 1-5, 6-10, 11-12), damage on the second page.
    monkeypatch.setattr(audit_store, "_PAGE", 5)
    _fill(log, clock, 12)
    assert log.verify() == AuditVerification(ok=True, entries=12, first_bad_seq=None, problem="")
    _tamper(engine, "DELETE FROM audit_entry WHERE seq = 10")

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(10, 9, "entry 10 is missing (sequence jumps from 9 to 11)")


def test_an_edited_time_is_found(engine: sa.Engine, log: SqlAuditLog, clock: FixedClock) -> None:
    _fill(log, clock, 5)
    entries = SQLModel.metadata.tables["audit_entry"]
    with engine.begin() as connection:
        connection.execute(
            sa.update(entries).where(entries.c.seq == 2).values(time=T0 - timedelta(days=1))
        )

    assert log.verify() == _broken(2, 1, "entry 2 was edited: its hash does not match its content")


def test_a_deleted_entry_is_found(engine: sa.Engine, log: SqlAuditLog, clock: FixedClock) -> None:
    # Prepare
    _fill(log, clock, 12)
    _tamper(engine, "DELETE FROM audit_entry WHERE seq = 5")

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(5, 4, "entry 5 is missing (sequence jumps from 4 to 6)")


def test_deleted_first_entries_are_found(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    _fill(log, clock, 6)
    _tamper(engine, "DELETE FROM audit_entry WHERE seq <= 2")

    assert log.verify() == _broken(1, 0, "entries 1 to 2 are missing (the log starts at entry 3)")


def test_swapped_entries_are_found(engine: sa.Engine, log: SqlAuditLog, clock: FixedClock) -> None:
    # Prepare: entries 3 and 4 trade places.
    _fill(log, clock, 12)
    _tamper(
        engine,
        "UPDATE audit_entry SET seq = -3 WHERE seq = 3",
        "UPDATE audit_entry SET seq = 3 WHERE seq = 4",
        "UPDATE audit_entry SET seq = 4 WHERE seq = -3",
    )

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(
        3, 2, "entries 3 and 4 are out of order: entry 3 chains to entry 4, not to entry 2"
    )


def test_a_truncated_tail_is_found_through_the_head(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    # Prepare
    _fill(log, clock, 12)
    _tamper(engine, "DELETE FROM audit_entry WHERE seq > 9")

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(
        10, 9, "the log was truncated: the head records 12 entries, the log ends at entry 9"
    )


def test_a_log_emptied_is_found_through_the_head(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    _fill(log, clock, 3)
    _tamper(engine, "DELETE FROM audit_entry")

    assert log.verify() == _broken(
        1, 0, "the log was truncated: the head records 3 entries, the log is empty"
    )


def test_an_edited_head_hash_is_found(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    # Prepare
    _fill(log, clock, 12)
    _tamper(engine, "UPDATE audit_head SET hash = :hash", hash="f" * 64)

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(
        12,
        12,
        "the head does not match entry 12: its hash differs, "
        "so the head was edited or entry 12 was replaced",
    )


def test_a_head_set_back_is_found(engine: sa.Engine, log: SqlAuditLog, clock: FixedClock) -> None:
    # Prepare: the head and the table cut back together, but the head one too far.
    appended = _fill(log, clock, 12)
    _tamper(
        engine,
        "UPDATE audit_head SET seq = 10, hash = :hash",
        hash=appended[9].hash,
    )

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(
        11,
        12,
        "entries 11 to 12 are beyond the head: the head records 10 entries, "
        "so the head was set back or entries were added behind its back",
    )


def test_a_deleted_head_is_found_and_stops_appends(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    # Prepare
    _fill(log, clock, 3)
    _tamper(engine, "DELETE FROM audit_head")

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(
        None, 3, "the audit log's head is missing: the audit_head row was deleted outside the node"
    )
    with pytest.raises(StoreError, match="head is missing"):
        log.head()
    with pytest.raises(StoreError, match="nothing can be appended"):
        log.append("dataset.created", actor="node", payload={})


def test_a_first_entry_not_from_genesis_is_found(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    _fill(log, clock, 3)
    _tamper(engine, "UPDATE audit_entry SET prev_hash = :hash WHERE seq = 1", hash="a" * 64)

    assert log.verify() == _broken(1, 0, "entry 1 does not start from the genesis hash")


def test_a_replaced_entry_with_a_recomputed_hash_is_found_by_the_next(
    engine: sa.Engine, log: SqlAuditLog, clock: FixedClock
) -> None:
    # Prepare: entry 7 rewritten by someone who knows how to hash it.
    appended = _fill(log, clock, 12)
    original = appended[6]
    forged = entry_hash(
        seq=7,
        time=original.time,
        kind=original.kind,
        actor=original.actor,
        peer=original.peer,
        subject=original.subject,
        payload={"n": 99, "note": "event 7"},
        prev_hash=original.prev_hash,
    )
    _tamper(
        engine,
        """UPDATE audit_entry SET payload = '{"n": 99, "note": "event 7"}', hash = :hash """
        "WHERE seq = 7",
        hash=forged,
    )

    # Execute
    found = log.verify()

    # Assert
    assert found == _broken(
        8,
        7,
        "entry 8 does not chain to entry 7: its prev_hash is not the hash of entry 7, "
        "so one of the two was replaced",
    )


# Transactions and concurrency


def test_concurrent_appends_get_every_number_once(engine: sa.Engine, log: SqlAuditLog) -> None:
    # Prepare: 8 writers; the odd ones append inside transactions of their own.
    writers, appends = 8, 25
    writer_engine = engine.execution_options(**{WRITE_OPTION: True})
    barrier = threading.Barrier(writers)

    def write(worker: int) -> list[int]:
        barrier.wait()
        numbers = []
        for n in range(appends):
            payload = {"worker": worker, "n": n}
            if worker % 2:
                with writer_engine.begin() as connection:
                    entry = log.append(
                        "test.concurrent",
                        actor=f"w{worker}",
                        payload=payload,
                        connection=connection,
                    )
            else:
                entry = log.append("test.concurrent", actor=f"w{worker}", payload=payload)
            numbers.append(entry.seq)
        return numbers

    # Execute
    with ThreadPoolExecutor(max_workers=writers) as pool:
        per_writer = list(pool.map(write, range(writers)))

    # Assert
    total = writers * appends
    assert sorted(seq for numbers in per_writer for seq in numbers) == list(range(1, total + 1))
    assert all(numbers == sorted(numbers) for numbers in per_writer)
    assert log.head()[0] == total
    assert log.verify() == AuditVerification(ok=True, entries=total, first_bad_seq=None, problem="")
    stored = log.entries(limit=total)
    for worker in range(writers):
        mine = [entry.payload["n"] for entry in stored if entry.actor == f"w{worker}"]
        assert mine == list(range(appends))


def test_verify_while_appending_finds_no_damage(log: SqlAuditLog) -> None:
    # Prepare
    done = threading.Event()

    def append_many() -> None:
        try:
            for n in range(60):
                log.append("test.busy", actor="node", payload={"n": n})
        finally:
            done.set()

    # Execute
    thread = threading.Thread(target=append_many)
    thread.start()
    findings = []
    while not done.is_set():
        findings.append(log.verify())
    thread.join()
    findings.append(log.verify())

    # Assert
    assert [finding.problem for finding in findings if not finding.ok] == []
    assert findings[-1].entries == 60


class _RollbackError(Exception):
    pass


@pytest.mark.parametrize("handle", ["connection", "session"])
def test_an_append_in_a_transaction_rolled_back_leaves_nothing(
    engine: sa.Engine, log: SqlAuditLog, handle: str
) -> None:
    # Prepare
    first = log.append("dataset.created", actor="operator", subject="air", payload={})
    writer = engine.execution_options(**{WRITE_OPTION: True})

    def fail_after_appending() -> None:
        if handle == "connection":
            with writer.begin() as connection:
                log.append("dataset.deleted", actor="operator", payload={}, connection=connection)
                raise _RollbackError
        with Session(writer) as session, session.begin():
            log.append("dataset.deleted", actor="operator", payload={}, connection=session)
            raise _RollbackError

    # Execute
    with pytest.raises(_RollbackError):
        fail_after_appending()

    # Assert
    assert log.head() == (1, first.hash)
    assert log.entries() == [first]
    assert log.verify().ok
    assert log.append("dataset.deleted", actor="operator", payload={}).seq == 2


def test_an_append_commits_with_the_callers_changes(engine: sa.Engine, log: SqlAuditLog) -> None:
    # Prepare
    writer = engine.execution_options(**{WRITE_OPTION: True})

    # Execute
    with Session(writer) as session, session.begin():
        session.add(RequestRow(request_id="r1", method="/m", response=b"done", create_time=T0))
        entry = log.append(
            "request.answered", actor="node", subject="r1", payload={}, connection=session
        )

    # Assert
    with Session(engine) as session:
        assert session.get(RequestRow, ("r1", "/m")) is not None
    assert log.entries() == [entry]
    assert log.head() == (1, entry.hash)


def test_an_append_needs_a_transaction_in_progress(engine: sa.Engine, log: SqlAuditLog) -> None:
    writer = engine.execution_options(**{WRITE_OPTION: True})
    with writer.connect() as connection, pytest.raises(ValueError, match="transaction in progress"):
        log.append("dataset.created", actor="node", payload={}, connection=connection)
    with Session(writer) as session, pytest.raises(ValueError, match="transaction in progress"):
        log.append("dataset.created", actor="node", payload={}, connection=session)

    assert log.entries() == []


def test_an_append_refuses_another_database(log: SqlAuditLog, tmp_path: Path) -> None:
    # Prepare
    other = create_engine(sqlite_url(tmp_path / "other" / "node.db"))
    migrate(other)

    # Execute
    try:
        with (
            other.execution_options(**{WRITE_OPTION: True}).begin() as connection,
            pytest.raises(ValueError, match="another database"),
        ):
            log.append("dataset.created", actor="node", payload={}, connection=connection)
    finally:
        other.dispose()

    # Assert
    assert log.entries() == []


def test_on_sqlite_an_append_needs_a_write_transaction(engine: sa.Engine, log: SqlAuditLog) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite distinguishes read and write transactions at BEGIN")

    with engine.begin() as connection, pytest.raises(ValueError, match="begun for writing"):
        log.append("dataset.created", actor="node", payload={}, connection=connection)

    assert log.entries() == []
