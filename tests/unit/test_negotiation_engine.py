"""The negotiation engine in-process: two engines over SQLite, wired by a direct transport."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from connector.clock import FixedClock
from connector.datasets import Column, Dataset, DataSource, Offer
from connector.errors import ConnectorError, unavailable
from connector.identity import init_ca, issue_certificate
from connector.negotiation.engine import Backoff, NegotiationEngine, Party
from connector.negotiation.model import NegotiationRecord, PendingMessage
from connector.negotiation.states import Message
from connector.store import (
    SqlAuditLog,
    SqlDatasetStore,
    SqlNegotiationStore,
    create_engine,
    migrate,
    sqlite_url,
)

POLICY = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
            ],
        }
    ]
}


class Direct:
    """Delivers straight into the other engine; can be told to fail."""

    def __init__(self) -> None:
        self.peer: dict[str, NegotiationEngine] = {}
        self.down = False
        self.sent: list[Message] = []

    def deliver(self, record: NegotiationRecord, message: PendingMessage) -> Mapping[str, Any]:
        self.sent.append(message.kind)
        if self.down:
            raise unavailable("PEER_UNAVAILABLE", "peer down")
        sender = "urn:hanse:researcher" if record.role.value == "consumer" else "urn:hanse:city-a"
        return self.peer[record.counterparty_id].receive(
            message.kind, message.payload, sender_id=sender, signature=message.signature
        )


def _party(tmp: Path, name: str) -> Party:
    files = issue_certificate(
        tmp / "pki", name, participant_id=f"urn:hanse:{name}", out_dir=tmp / name
    )
    return Party(
        participant_id=f"urn:hanse:{name}",
        callback_address=f"grpcs://{name}:7443",
        cert_pem=files.cert.read_bytes(),
        key_pem=(tmp / name / f"{name}.key").read_bytes(),
        trust_pem=files.ca.read_bytes(),
    )


def _engine(
    tmp: Path,
    name: str,
    clock: FixedClock,
    transport: Direct,
    auto: bool,
    policy: Mapping[str, Any] = POLICY,
) -> NegotiationEngine:
    engine = create_engine(sqlite_url(tmp / name / "hanse.db"))
    migrate(engine)
    datasets = SqlDatasetStore(engine, clock)
    if name == "city-a":
        datasets.create_dataset(
            Dataset(
                id="counts",
                title="Counts",
                format="csv",
                source=DataSource(path="/srv/counts.csv"),
                columns=(Column("count", "integer"),),
                offers=(
                    Offer(
                        "counts-research",
                        "counts",
                        {"@type": "Offer", "@id": "counts-research", **policy},
                        auto,
                    ),
                ),
            )
        )
    return NegotiationEngine(
        party=_party(tmp, name),
        store=SqlNegotiationStore(engine, SqlAuditLog(engine, clock), clock),
        datasets=datasets,
        transport=transport,
        clock=clock,
        backoff=Backoff(first=1.0, factor=2.0, cap=8.0, attempts=4),
        rng=random.Random(7),
    )


@pytest.fixture
def world(tmp_path: Path) -> tuple[NegotiationEngine, NegotiationEngine, Direct, FixedClock]:
    init_ca(tmp_path / "pki")
    clock = FixedClock(datetime.now(UTC) + timedelta(minutes=10))
    transport = Direct()
    consumer = _engine(tmp_path, "researcher", clock, transport, auto=True)
    provider = _engine(tmp_path, "city-a", clock, transport, auto=True)
    transport.peer = {"urn:hanse:city-a": provider, "urn:hanse:researcher": consumer}
    return consumer, provider, transport, clock


def _start(consumer: NegotiationEngine, purpose: str = "research") -> NegotiationRecord:
    return consumer.start(
        provider_id="urn:hanse:city-a",
        provider_address="city-a:7443",
        dataset_id="counts",
        offer_id="counts-research",
        offer_policy=POLICY,
        usage={"purpose": purpose},
    )


def _drain(*engines: NegotiationEngine) -> None:
    for _ in range(20):
        if not sum(e.dispatch_due() for e in engines):
            return


def test_request_to_finalized_in_process(world) -> None:
    # Prepare
    consumer, provider, transport, _clock = world

    # Execute
    started = _start(consumer)
    _drain(consumer, provider)

    # Assert
    done = consumer.store.get(started.id)
    assert done.state.value == "FINALIZED"
    theirs = provider.store.find(
        provider.store.get(done.provider_pid).role, provider_pid=done.provider_pid
    )
    assert theirs is not None and theirs.state.value == "FINALIZED"
    assert transport.sent == [
        Message.REQUEST,
        Message.AGREEMENT,
        Message.VERIFICATION,
        Message.FINALIZED,
    ]
    assert {s["role"] for s in done.signatures} == {"provider", "consumer"}


def test_retries_with_backoff_then_terminates_with_the_reason(world) -> None:
    # Prepare
    consumer, _provider, transport, clock = world
    transport.down = True
    started = _start(consumer)

    # Execute: each due delivery fails; move the clock past every backoff.
    seen_waits = []
    for _ in range(10):
        consumer.dispatch_due()
        current = consumer.store.get(started.id)
        if current.next_attempt_at is None:
            break
        seen_waits.append((current.next_attempt_at - clock.now()).total_seconds())
        clock.advance(timedelta(seconds=60))

    # Assert
    final = consumer.store.get(started.id)
    assert final.state.value == "TERMINATED"
    assert final.attempts == 4
    assert "did not acknowledge after 4 attempts" in final.reason
    assert transport.sent == [Message.REQUEST] * 4
    assert len(seen_waits) == 3
    assert seen_waits == sorted(seen_waits), "backoff grows"
    assert all(0.5 <= w <= 8.0 for w in seen_waits)


def test_a_recovered_peer_gets_the_message_on_the_next_try(world) -> None:
    # Prepare
    consumer, provider, transport, clock = world
    transport.down = True
    started = _start(consumer)
    consumer.dispatch_due()
    assert consumer.store.get(started.id).state.value == "REQUESTING"

    # Execute
    transport.down = False
    clock.advance(timedelta(seconds=60))
    _drain(consumer, provider)

    # Assert
    assert consumer.store.get(started.id).state.value == "FINALIZED"


def test_a_refused_request_terminates_the_consumer_side_with_the_policy_reason(world) -> None:
    # Prepare
    consumer, provider, _transport, _clock = world

    # Execute
    started = _start(consumer, purpose="advertising")
    _drain(consumer, provider)

    # Assert
    final = consumer.store.get(started.id)
    assert final.state.value == "TERMINATED"
    assert "POLICY_REFUSED" in final.reason
    assert provider.store.list_negotiations() == []
    refusals = [e for e in provider.store._audit.entries(kind_prefix="negotiation.refused")]
    assert len(refusals) == 1


def test_operator_actions_check_the_role(world) -> None:
    # Prepare
    consumer, _provider, _transport, _clock = world
    started = _start(consumer)

    # Execute / Assert
    with pytest.raises(ConnectorError) as caught:
        consumer.approve(started.id)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "only the provider does that" in caught.value.message
    assert consumer.store.get(started.id).state.value == "REQUESTING"


def test_a_configured_peer_is_reached_at_its_configured_address_not_its_callback(world) -> None:
    # Prepare
    consumer, provider, _transport, _clock = world
    provider.known_addresses = {"urn:hanse:researcher": "researcher.internal:7443"}

    # Execute
    _start(consumer)
    _drain(consumer, provider)

    # Assert
    (record,) = provider.store.list_negotiations()
    assert record.counterparty_address == "researcher.internal:7443"


def test_an_unconfigured_consumer_is_reached_at_its_callback_address(world) -> None:
    # Execute
    consumer, provider, _transport, _clock = world
    _start(consumer)
    _drain(consumer, provider)

    # Assert
    (record,) = provider.store.list_negotiations()
    assert record.counterparty_address == "researcher:7443"


EQ_PURPOSE = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
            ],
        }
    ]
}
"""An offer with the very constraint the stated usage adds (``purpose eq research``)."""


@pytest.mark.parametrize("how", ["request", "approve", "counter-request"])
def test_an_offer_constraint_equal_to_the_stated_usage_is_not_repeated_and_finalizes(
    tmp_path: Path, how: str
) -> None:
    # Prepare: the provider's offer already says `purpose eq research`, which is also
    # the constraint the consumer's stated usage adds.
    init_ca(tmp_path / "pki")
    clock = FixedClock(datetime.now(UTC) + timedelta(minutes=10))
    transport = Direct()
    consumer = _engine(tmp_path, "researcher", clock, transport, auto=True, policy=EQ_PURPOSE)
    provider = _engine(
        tmp_path, "city-a", clock, transport, auto=how == "request", policy=EQ_PURPOSE
    )
    transport.peer = {"urn:hanse:city-a": provider, "urn:hanse:researcher": consumer}
    started = consumer.start(
        provider_id="urn:hanse:city-a",
        provider_address="city-a:7443",
        dataset_id="counts",
        offer_id="counts-research",
        offer_policy=EQ_PURPOSE,
        usage={"purpose": "research"},
    )

    # Execute
    if how == "approve":
        _drain(consumer, provider)
        provider.approve(provider.store.get(consumer.store.get(started.id).provider_pid).id)
    if how == "counter-request":
        # The provider waits for its operator, who offers the same terms; the consumer
        # counters with a request on those terms, which the operator approves.
        _drain(consumer, provider)
        mine = consumer.store.get(started.id)
        theirs = provider.store.get(mine.provider_pid)
        provider.counter(theirs.id, EQ_PURPOSE)
        _drain(consumer, provider)
        consumer.counter(started.id, EQ_PURPOSE)
        _drain(consumer, provider)
        provider.approve(theirs.id)
    _drain(consumer, provider)

    # Assert: one `purpose eq research`, in the request and in the agreement, and both
    # sides reach FINALIZED with the same agreement.
    done = consumer.store.get(started.id)
    assert done.state.value == "FINALIZED", done.reason
    purpose = {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
    assert done.offer["permission"][0]["constraint"].count(purpose) == 1
    assert done.agreement is not None
    assert done.agreement["permission"][0]["constraint"] == [purpose]
    theirs = provider.store.get(done.provider_pid)
    assert theirs.state.value == "FINALIZED"
    assert theirs.agreement == done.agreement
