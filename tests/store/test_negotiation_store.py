"""The negotiation store suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import grpc
import pytest
import sqlalchemy as sa

from connector.audit import AuditEntry
from connector.clock import FixedClock
from connector.errors import ConnectorError
from connector.negotiation.model import (
    AuditNote,
    NegotiationRecord,
    PendingMessage,
    StaleNegotiationError,
)
from connector.negotiation.states import Message, NegotiationState, Role
from connector.store import SqlAuditLog, SqlNegotiationStore, create_engine

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
S = NegotiationState

OFFER = {
    "@id": "research",
    "@type": "Offer",
    "target": "traffic.counts",
    "permission": [
        {"action": "use", "constraint": [{"leftOperand": "purpose", "rightOperand": "x"}]}
    ],
}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def audit(engine: sa.Engine, clock: FixedClock) -> SqlAuditLog:
    return SqlAuditLog(engine, clock)


@pytest.fixture
def store(engine: sa.Engine, audit: SqlAuditLog, clock: FixedClock) -> SqlNegotiationStore:
    return SqlNegotiationStore(engine, audit, clock)


def make_record(
    negotiation_id: str = "urn:uuid:c-1",
    *,
    role: Role = Role.CONSUMER,
    state: NegotiationState = S.INITIAL,
    consumer_pid: str = "",
    provider_pid: str = "",
    **fields: object,
) -> NegotiationRecord:
    record = NegotiationRecord(
        id=negotiation_id,
        role=role,
        state=state,
        consumer_pid=consumer_pid or negotiation_id,
        provider_pid=provider_pid,
        counterparty_id="did:web:berlin.example",
        counterparty_address="berlin.example:7443",
        dataset_id="traffic.counts",
        offer_id="research",
        offer=OFFER,
        usage={"purpose": "x", "rounds": 3},
    )
    return replace(record, **fields)  # type: ignore[arg-type]


def note(kind: str = "negotiation.state", **payload: object) -> AuditNote:
    return AuditNote(kind, {"to": "REQUESTING", **payload}, peer="did:web:berlin.example")


def a_full_record() -> NegotiationRecord:
    """A record with every field set, in the shapes callers hand over."""
    return make_record(
        "urn:uuid:p-1",
        role=Role.PROVIDER,
        state=S.AGREEING,
        consumer_pid="urn:uuid:c-9",
        provider_pid="urn:uuid:p-1",
        offer=MappingProxyType({"@id": "research", "nested": {"list": (1, 2.5, "x")}}),
        usage={"purpose": "x", "budget": {"epsilon": 1.5}},
        agreement={"@id": "urn:uuid:a-1", "@type": "Agreement", "assignee": "did:web:c"},
        signatures=({"signer": "did:web:p", "value": "c2ln"},),
        reason="waits for the counter-party",
        pending=PendingMessage(
            kind=Message.AGREEMENT,
            message_id="urn:uuid:m-1",
            payload={"@type": "ContractAgreementMessage", "agreement": {"@id": "urn:uuid:a-1"}},
            signature={"signer": "did:web:p", "value": "c2ln"},
        ),
        attempts=2,
        next_attempt_at=datetime(2025, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        extra={"aggregator": {"node_key": "abc"}},
    )


def audit_of(audit: SqlAuditLog, subject: str) -> list[AuditEntry]:
    return audit.entries(subject=subject, limit=1000)


def everything(audit: SqlAuditLog) -> list[AuditEntry]:
    return audit.entries(limit=1000)


# Create and read


def test_create_returns_what_get_returns(store: SqlNegotiationStore) -> None:
    # Prepare
    record = a_full_record()

    # Execute
    created = store.create(record)
    fetched = store.get(record.id)

    # Assert
    assert created == fetched
    assert fetched.version == 1
    assert fetched.create_time == fetched.update_time == T0
    assert replace(fetched, version=0, create_time=None, update_time=None) == replace(
        record,
        offer={"@id": "research", "nested": {"list": [1, 2.5, "x"]}},
    )


def test_read_back_types(store: SqlNegotiationStore) -> None:
    fetched = store.create(a_full_record())

    assert type(fetched.role) is Role
    assert type(fetched.state) is NegotiationState
    assert fetched.pending is not None
    assert type(fetched.pending.kind) is Message
    assert type(fetched.offer) is dict
    assert type(fetched.signatures) is tuple
    assert type(fetched.signatures[0]) is dict
    for time in (fetched.next_attempt_at, fetched.create_time, fetched.update_time):
        assert time is not None
        assert time.tzinfo == UTC
    assert fetched.next_attempt_at == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def test_a_minimal_record_round_trips(store: SqlNegotiationStore) -> None:
    record = make_record()

    fetched = store.create(record)

    assert replace(fetched, version=0, create_time=None, update_time=None) == record
    assert fetched.agreement is None
    assert fetched.pending is None
    assert fetched.next_attempt_at is None
    assert fetched.signatures == ()
    assert fetched.extra == {}


def test_null_fields_are_sql_null(store: SqlNegotiationStore, engine: sa.Engine) -> None:
    # A JSON null would look "not null" to due(); absent values must be SQL NULL.
    store.create(make_record())

    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT agreement IS NULL, pending IS NULL, next_attempt_at IS NULL "
                "FROM negotiation"
            )
        ).one()

    assert tuple(bool(value) for value in row) == (True, True, True)


def test_create_appends_its_audit_entries_in_order(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    # Execute
    store.create(
        make_record(),
        [note("negotiation.state"), AuditNote("negotiation.message.sent", {"n": 1}, actor="op")],
    )

    # Assert
    entries = audit_of(audit, "urn:uuid:c-1")
    assert [(e.kind, e.actor, e.peer, dict(e.payload)) for e in entries] == [
        ("negotiation.state", "node", "did:web:berlin.example", {"to": "REQUESTING"}),
        ("negotiation.message.sent", "op", "", {"n": 1}),
    ]
    assert audit.verify().ok


def test_a_duplicate_id_is_refused_and_writes_nothing(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    # Prepare
    first = store.create(make_record(), [note()])
    before = everything(audit)

    # Execute
    with pytest.raises(ConnectorError) as caught:
        store.create(make_record(state=S.REQUESTING, reason="second"), [note(), note()])

    # Assert
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.reason == "TRANSITION_INVALID"
    assert "urn:uuid:c-1" in caught.value.message
    assert store.get("urn:uuid:c-1") == first
    assert everything(audit) == before


def test_concurrent_creates_of_one_id_make_one_negotiation(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    # Prepare
    writers = 6
    barrier = threading.Barrier(writers)

    def create(worker: int) -> str:
        barrier.wait()
        try:
            store.create(make_record(reason=f"w{worker}"), [note(worker=worker)])
        except ConnectorError as error:
            return error.code.name
        return "created"

    # Execute
    with ThreadPoolExecutor(max_workers=writers) as pool:
        outcomes = list(pool.map(create, range(writers)))

    # Assert
    assert sorted(outcomes) == ["ALREADY_EXISTS"] * (writers - 1) + ["created"]
    entries = everything(audit)
    assert len(entries) == 1
    assert store.get("urn:uuid:c-1").reason == f"w{entries[0].payload['worker']}"
    assert audit.verify().ok


def test_a_malformed_note_leaves_no_negotiation(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    with pytest.raises(ValueError, match="malformed"):
        store.create(make_record(), [note(), AuditNote("Not A Kind", {})])

    with pytest.raises(ConnectorError):
        store.get("urn:uuid:c-1")
    assert everything(audit) == []


def test_a_naive_next_attempt_is_refused(store: SqlNegotiationStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.create(make_record(next_attempt_at=datetime(2025, 3, 1, 12, 0)))


def test_get_unknown_is_not_found(store: SqlNegotiationStore) -> None:
    with pytest.raises(ConnectorError) as caught:
        store.get("urn:uuid:nope")

    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "NEGOTIATION_NOT_FOUND"


def test_find_by_role_and_process_ids(store: SqlNegotiationStore) -> None:
    # Prepare: one process id pair seen from both sides (two nodes sharing a database).
    consumer = store.create(
        make_record("urn:uuid:c-1", consumer_pid="urn:uuid:c-1", provider_pid="urn:uuid:p-1")
    )
    provider = store.create(
        make_record(
            "urn:uuid:p-1",
            role=Role.PROVIDER,
            consumer_pid="urn:uuid:c-1",
            provider_pid="urn:uuid:p-1",
        )
    )
    store.create(make_record("urn:uuid:c-2"))

    # Execute, Assert
    assert store.find(Role.CONSUMER, consumer_pid="urn:uuid:c-1") == consumer
    assert store.find(Role.PROVIDER, consumer_pid="urn:uuid:c-1") == provider
    assert store.find(Role.PROVIDER, provider_pid="urn:uuid:p-1") == provider
    assert store.find(Role.CONSUMER, provider_pid="urn:uuid:p-1") == consumer
    assert (
        store.find(Role.PROVIDER, consumer_pid="urn:uuid:c-1", provider_pid="urn:uuid:p-1")
        == provider
    )
    assert store.find(Role.PROVIDER, consumer_pid="urn:uuid:c-1", provider_pid="other") is None
    assert store.find(Role.PROVIDER, consumer_pid="urn:uuid:c-2") is None
    assert store.find(Role.CONSUMER, consumer_pid="urn:uuid:unknown") is None


def test_find_needs_a_process_id(store: SqlNegotiationStore) -> None:
    with pytest.raises(ValueError, match="consumer_pid or a provider_pid"):
        store.find(Role.CONSUMER)


# Listing


def _create_many(store: SqlNegotiationStore, clock: FixedClock, count: int) -> list[str]:
    """``count`` negotiations, two per clock tick, alternating states; ids in creation order."""
    ids = []
    for n in range(count):
        negotiation_id = f"urn:uuid:n-{n:02d}"
        state = S.REQUESTED if n % 2 else S.OFFERED
        store.create(make_record(negotiation_id, state=state))
        ids.append(negotiation_id)
        if n % 2:
            clock.advance(timedelta(seconds=1))
    return ids


def test_list_is_newest_first_page_by_page(store: SqlNegotiationStore, clock: FixedClock) -> None:
    # Prepare: pairs share a create time, so ties are ordered by id (descending).
    ids = _create_many(store, clock, 7)

    # Execute
    pages, before = [], ""
    while True:
        page = store.list_negotiations(limit=3, before=before)
        pages.append([record.id for record in page])
        if len(page) < 3:
            break
        before = page[-1].id

    # Assert
    assert pages == [ids[::-1][0:3], ids[::-1][3:6], ids[::-1][6:]]


def test_list_filters_by_state_with_paging(store: SqlNegotiationStore, clock: FixedClock) -> None:
    ids = _create_many(store, clock, 9)
    offered = [i for n, i in enumerate(ids) if n % 2 == 0][::-1]

    first = store.list_negotiations(limit=3, state="OFFERED")
    second = store.list_negotiations(limit=3, state=S.OFFERED, before=first[-1].id)

    assert [r.id for r in first + second] == offered
    assert all(r.state is S.OFFERED for r in first + second)
    assert store.list_negotiations(state="FINALIZED") == []


def test_list_of_an_empty_store(store: SqlNegotiationStore) -> None:
    assert store.list_negotiations() == []


def test_list_refuses_bad_arguments(store: SqlNegotiationStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.list_negotiations(limit=0)
    with pytest.raises(ValueError, match="NOT_A_STATE"):
        store.list_negotiations(state="NOT_A_STATE")
    with pytest.raises(ConnectorError) as caught:
        store.list_negotiations(before="urn:uuid:gone")
    assert caught.value.reason == "PAGE_TOKEN_INVALID"


# Saving


def test_save_bumps_the_version_and_appends_audit(
    store: SqlNegotiationStore, audit: SqlAuditLog, clock: FixedClock
) -> None:
    # Prepare
    created = store.create(make_record(), [note("negotiation.created")])
    clock.advance(timedelta(minutes=5))
    changed = replace(
        created,
        state=S.REQUESTING,
        pending=PendingMessage(Message.REQUEST, "urn:uuid:m-1", {"@type": "X"}),
        attempts=1,
        next_attempt_at=T0 + timedelta(minutes=6),
        reason="sent",
    )

    # Execute
    saved = store.save(changed, [note("negotiation.state"), note("negotiation.message.sent")])

    # Assert
    assert saved == store.get(created.id)
    assert saved.version == 2
    assert saved.create_time == T0
    assert saved.update_time == T0 + timedelta(minutes=5)
    assert replace(saved, version=1, update_time=T0) == changed
    kinds = [e.kind for e in audit_of(audit, created.id)]
    assert kinds == ["negotiation.created", "negotiation.state", "negotiation.message.sent"]
    assert audit.verify().ok


def test_save_without_audit_notes(store: SqlNegotiationStore, audit: SqlAuditLog) -> None:
    created = store.create(make_record())

    saved = store.save(replace(created, attempts=3))

    assert (saved.version, saved.attempts) == (2, 3)
    assert everything(audit) == []


def test_save_can_clear_optional_fields(store: SqlNegotiationStore) -> None:
    created = store.create(a_full_record())

    saved = store.save(
        replace(created, pending=None, next_attempt_at=None, agreement=None, signatures=())
    )

    assert (saved.pending, saved.next_attempt_at, saved.agreement, saved.signatures) == (
        None,
        None,
        None,
        (),
    )
    assert store.due(T0 + timedelta(days=1)) == []


def test_a_stale_save_changes_nothing(store: SqlNegotiationStore, audit: SqlAuditLog) -> None:
    # Prepare: read at version 1, then someone else saves version 2.
    read = store.create(make_record(), [note()])
    winner = store.save(replace(read, state=S.REQUESTING), [note()])
    before = everything(audit)

    # Execute
    with pytest.raises(StaleNegotiationError):
        store.save(replace(read, state=S.TERMINATED, reason="late"), [note(), note()])

    # Assert
    assert store.get(read.id) == winner
    assert everything(audit) == before
    assert audit.verify().ok


def test_a_save_from_the_future_is_stale(store: SqlNegotiationStore) -> None:
    created = store.create(make_record())

    with pytest.raises(StaleNegotiationError):
        store.save(replace(created, version=7))

    assert store.get(created.id) == created


def test_saving_an_unknown_negotiation_is_not_found(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    with pytest.raises(ConnectorError) as caught:
        store.save(replace(make_record(), version=1), [note()])

    assert caught.value.reason == "NEGOTIATION_NOT_FOUND"
    assert everything(audit) == []


def test_a_malformed_note_fails_the_save(store: SqlNegotiationStore, audit: SqlAuditLog) -> None:
    created = store.create(make_record(), [note()])
    before = everything(audit)

    with pytest.raises(ValueError, match="actor"):
        store.save(replace(created, state=S.REQUESTING), [note(), AuditNote("x.y", {}, actor="")])

    assert store.get(created.id) == created
    assert everything(audit) == before


def test_concurrent_saves_of_one_version_have_one_winner(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    # Prepare: several writers hold the same version.
    writers = 6
    read = store.create(make_record(), [note()])
    barrier = threading.Barrier(writers)

    def write(worker: int) -> str:
        barrier.wait()
        try:
            store.save(
                replace(read, state=S.REQUESTING, reason=f"w{worker}"),
                [note(worker=worker)],
            )
        except StaleNegotiationError:
            return "stale"
        return "saved"

    # Execute
    with ThreadPoolExecutor(max_workers=writers) as pool:
        outcomes = list(pool.map(write, range(writers)))

    # Assert
    assert sorted(outcomes) == ["saved"] + ["stale"] * (writers - 1)
    final = store.get(read.id)
    assert final.version == 2
    winners = [e for e in audit_of(audit, read.id) if "worker" in e.payload]
    assert len(winners) == 1
    assert final.reason == f"w{winners[0].payload['worker']}"
    assert audit.verify().ok


def test_concurrent_read_modify_write_loses_no_update(store: SqlNegotiationStore) -> None:
    # Each writer retries on a stale save, so every increment lands exactly once.
    writers, increments = 4, 5
    created = store.create(make_record())
    barrier = threading.Barrier(writers)

    def bump(_: int) -> None:
        barrier.wait()
        for _n in range(increments):
            while True:
                current = store.get(created.id)
                try:
                    store.save(replace(current, attempts=current.attempts + 1), [note()])
                    break
                except StaleNegotiationError:
                    continue

    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(bump, range(writers)))

    final = store.get(created.id)
    assert final.attempts == writers * increments
    assert final.version == 1 + writers * increments


# Audit entries alone


def test_append_audit_takes_the_subject_from_the_payload(
    store: SqlNegotiationStore, audit: SqlAuditLog
) -> None:
    # Execute
    store.append_audit(
        [
            AuditNote("negotiation.message.received", {"negotiation": "urn:uuid:p-9", "m": 1}),
            AuditNote("negotiation.refused", {"reason": "no"}, peer="did:web:x"),
            AuditNote("negotiation.refused", {"negotiation": 5}),
        ]
    )
    store.append_audit([])

    # Assert
    entries = everything(audit)
    assert [(e.kind, e.subject, e.peer) for e in entries] == [
        ("negotiation.message.received", "urn:uuid:p-9", ""),
        ("negotiation.refused", "", "did:web:x"),
        ("negotiation.refused", "", ""),
    ]
    assert audit.verify().ok


def test_append_audit_is_all_or_nothing(store: SqlNegotiationStore, audit: SqlAuditLog) -> None:
    with pytest.raises(ValueError, match="malformed"):
        store.append_audit([note(), AuditNote("BAD", {})])

    assert everything(audit) == []


# Due work


def test_due_lists_pending_work_earliest_first(store: SqlNegotiationStore) -> None:
    # Prepare
    def pending_at(negotiation_id: str, minutes: int | None, *, pending: bool = True) -> None:
        store.create(
            make_record(
                negotiation_id,
                state=S.REQUESTING,
                pending=PendingMessage(Message.REQUEST, f"m-{negotiation_id}", {})
                if pending
                else None,
                next_attempt_at=None if minutes is None else T0 + timedelta(minutes=minutes),
            )
        )

    pending_at("urn:uuid:late", 10)
    pending_at("urn:uuid:b-early", 1)
    pending_at("urn:uuid:a-early", 1)
    pending_at("urn:uuid:now", 5)
    pending_at("urn:uuid:future", 60)
    pending_at("urn:uuid:unscheduled", None)
    pending_at("urn:uuid:nothing-pending", 0, pending=False)

    # Execute
    due = store.due(T0 + timedelta(minutes=10))

    # Assert
    assert [r.id for r in due] == [
        "urn:uuid:a-early",
        "urn:uuid:b-early",
        "urn:uuid:now",
        "urn:uuid:late",
    ]
    assert [r.id for r in store.due(T0 + timedelta(minutes=5), limit=2)] == [
        "urn:uuid:a-early",
        "urn:uuid:b-early",
    ]
    # The same instant in another zone.
    other_zone = (T0 + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-7)))
    assert len(store.due(other_zone)) == 3
    assert store.due(T0) == []


def test_due_refuses_bad_arguments(store: SqlNegotiationStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.due(datetime(2025, 3, 1))
    with pytest.raises(ValueError, match="limit"):
        store.due(T0, limit=0)


# Durability


def test_negotiations_survive_a_new_engine(
    database_url: str, store: SqlNegotiationStore, audit: SqlAuditLog, clock: FixedClock
) -> None:
    # Prepare
    created = store.create(a_full_record(), [note()])
    saved = store.save(replace(created, state=S.AGREED, pending=None), [note()])

    # Execute
    engine = create_engine(database_url)
    try:
        reopened_audit = SqlAuditLog(engine, clock)
        reopened = SqlNegotiationStore(engine, reopened_audit, clock)

        # Assert
        assert reopened.get(created.id) == saved
        assert reopened.list_negotiations() == [saved]
        assert len(audit_of(reopened_audit, created.id)) == 2
        assert reopened_audit.verify().ok
        reopened.save(replace(saved, state=S.VERIFYING), [note()])
        assert store.get(created.id).version == 3
    finally:
        engine.dispose()
