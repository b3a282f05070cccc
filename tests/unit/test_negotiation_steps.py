"""A received message and this node's answer to it are saved together, in one transaction."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.clock import FixedClock
from connector.identity import init_ca
from connector.negotiation.changes import NegotiationChanges
from connector.negotiation.engine import NegotiationEngine
from connector.negotiation.model import AnswerSlot, NegotiationRecord
from connector.negotiation.states import Message, NegotiationState, Role
from connector.store import SqlAuditLog, create_engine, sqlite_url
from tests.unit.test_negotiation_engine import Direct, _drain, _engine, _party, _start


@pytest.fixture
def world(tmp_path: Path) -> tuple[NegotiationEngine, NegotiationEngine, Direct, Path]:
    init_ca(tmp_path / "pki")
    clock = FixedClock(datetime.now(UTC) + timedelta(minutes=10))
    transport = Direct()
    consumer = _engine(tmp_path, "researcher", clock, transport, auto=True)
    provider = _engine(tmp_path, "city-a", clock, transport, auto=True)
    transport.peer = {"urn:hanse:city-a": provider, "urn:hanse:researcher": consumer}
    return consumer, provider, transport, tmp_path


def _trail(tmp: Path, name: str, subject: str) -> list[tuple[str, str, datetime]]:
    engine = create_engine(sqlite_url(tmp / name / "hanse.db"))
    try:
        entries = SqlAuditLog(engine).entries(subject=subject, limit=100)
    finally:
        engine.dispose()
    labels = []
    for entry in entries:
        payload = entry.payload
        label = f"{payload['from']}->{payload['to']}" if entry.kind == "negotiation.state" else ""
        labels.append((entry.kind, label, entry.time))
    return labels


def test_a_request_is_taken_and_agreed_in_one_write(world) -> None:
    # Prepare
    consumer, provider, _transport, tmp = world
    started = _start(consumer)

    # Execute: deliver the request only.
    consumer.dispatch_due()

    # Assert: one version, three entries with one time, in their order.
    theirs = provider.store.find(Role.PROVIDER, consumer_pid=started.id)
    assert theirs is not None
    assert (theirs.state.value, theirs.version) == ("AGREEING", 1)
    assert theirs.pending is not None and theirs.pending.kind is Message.AGREEMENT
    trail = _trail(tmp, "city-a", theirs.id)
    assert [(kind, label) for kind, label, _ in trail] == [
        ("negotiation.message.received", ""),
        ("negotiation.state", "INITIAL->REQUESTED"),
        ("negotiation.state", "REQUESTED->AGREEING"),
    ]
    assert len({time for _, _, time in trail}) == 1


def test_an_agreement_is_taken_and_verified_in_one_write(world) -> None:
    # Prepare
    consumer, provider, _transport, tmp = world
    started = _start(consumer)
    consumer.dispatch_due()  # request
    before = consumer.store.get(started.id)

    # Execute: the provider delivers its agreement.
    provider.dispatch_due()

    # Assert
    mine = consumer.store.get(started.id)
    assert mine.state.value == "VERIFYING"
    assert mine.version == before.version + 1
    labels = [label for _, label, _ in _trail(tmp, "researcher", started.id)][-3:]
    assert labels == ["", "REQUESTED->AGREED", "AGREED->VERIFYING"]


def test_a_failed_answer_leaves_the_message_taken(world) -> None:
    # Prepare: the provider cannot sign (its key is not its certificate's).
    consumer, provider, _transport, tmp = world
    stranger = _party(tmp, "stranger")
    provider.party = replace(provider.party, key_pem=stranger.key_pem)
    started = _start(consumer)

    # Execute
    consumer.dispatch_due()

    # Assert: the request is on record, waiting; no agreement was sent.
    theirs = provider.store.find(Role.PROVIDER, consumer_pid=started.id)
    assert theirs is not None
    assert (theirs.state.value, theirs.version, theirs.pending) == ("REQUESTED", 1, None)
    assert consumer.store.get(started.id).state.value == "REQUESTED"
    labels = [label for _, label, _ in _trail(tmp, "city-a", theirs.id)]
    assert labels == ["", "INITIAL->REQUESTED"]


def test_the_answer_slot_records_the_answer_with_the_change(world) -> None:
    # Prepare
    consumer, provider, _transport, _tmp = world
    started = _start(consumer)
    pending = consumer.store.get(started.id).pending
    assert pending is not None
    slot = AnswerSlot("protocol:RequestContract:urn:hanse:researcher", "m-1", _encode)

    # Execute
    ack = provider.receive(
        Message.REQUEST, pending.payload, sender_id="urn:hanse:researcher", answer=slot
    )
    again = AnswerSlot(slot.method, "m-2", _encode)
    repeat = provider.receive(
        Message.REQUEST, pending.payload, sender_id="urn:hanse:researcher", answer=again
    )

    # Assert: the first is recorded with its negotiation; the repeat changed nothing
    # to record it with, so its caller records it.
    assert slot.recorded == _encode(ack)
    assert again.recorded is None
    assert repeat == ack


def test_every_saved_change_is_published(world) -> None:
    # Prepare
    consumer, provider, _transport, _tmp = world
    started = _start(consumer)
    seen = []
    with consumer.changes.subscribe(started.id) as subscription:
        # Execute
        _drain(consumer, provider)
        while (newest := subscription.next(0)) is not None:
            seen.append(newest)

    # Assert: the newest version is kept for the watcher.
    final = consumer.store.get(started.id)
    assert seen == [final]
    assert final.state.value == "FINALIZED"


def test_a_subscription_keeps_the_newest_version_and_ends_on_close() -> None:
    # Prepare
    changes = NegotiationChanges()
    rng = random.Random(3)
    versions = list(range(1, 8))
    rng.shuffle(versions)

    with changes.subscribe("n-1") as subscription, changes.subscribe("n-2") as other:
        # Execute
        for version in versions:
            changes.publish(_record("n-1", version))
        newest = subscription.next(0)
        nothing = other.next(0)
        changes.close()

        # Assert
        assert newest is not None and newest.version == 7
        assert nothing is None
        assert subscription.closed and other.closed
        assert subscription.next(5) is None  # closed: returns at once
        assert changes.watching() == 2
    assert changes.watching() == 0


def _record(negotiation_id: str, version: int) -> NegotiationRecord:
    return NegotiationRecord(
        id=negotiation_id,
        role=Role.CONSUMER,
        state=NegotiationState.REQUESTING,
        consumer_pid=negotiation_id,
        provider_pid="",
        counterparty_id="urn:hanse:city-a",
        counterparty_address="city-a:7443",
        dataset_id="counts",
        offer_id="counts-research",
        offer={},
        usage={},
        version=version,
    )


def _encode(ack: Mapping[str, Any]) -> bytes:
    return json.dumps(ack, sort_keys=True).encode()
