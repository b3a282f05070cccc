"""Group-based offers: the provider fills a consumer's memberships from its own peer config.

Two or more engines over real SQLite files, wired by a direct transport that names the
sender the way the protocol server does (the sending node's participant id, as its
certificate would). The provider's groups come from a real node config file.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from connector.agreement_terms import check_use
from connector.clock import FixedClock
from connector.datasets import Column, Dataset, DataSource, Offer
from connector.errors import ConnectorError
from connector.identity import init_ca, issue_certificate
from connector.negotiation.engine import Backoff, NegotiationEngine, Party
from connector.negotiation.messages import new_pid, request_message
from connector.negotiation.model import NegotiationRecord, PendingMessage
from connector.negotiation.states import Message
from connector.negotiation.usage import MEMBERSHIPS, usage_constraints
from connector.store import (
    SqlAuditLog,
    SqlDatasetStore,
    SqlNegotiationStore,
    create_engine,
    migrate,
    sqlite_url,
)
from node.config import load_config

EU = "urn:hanse:group:eu-cities"
REVIEW = "urn:hanse:group:under-review"
CITY = "urn:hanse:city-a"
MEMBER = "urn:hanse:researcher-a"
"""Configured with the groups eu-cities and under-review."""
OUTSIDER = "urn:hanse:researcher-b"
"""Configured, in no group."""
STRANGER = "urn:hanse:researcher-c"
"""Authenticated (same federation) but not configured at the provider."""

TASK = {"id": "forecast", "hash": "sha256:" + "ab" * 32}
USAGE = {"purpose": "research", "task": TASK, "max_rounds": 5}

GROUP_POLICY: dict[str, Any] = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]},
                {"leftOperand": "membership", "operator": "isAnyOf", "rightOperand": [EU]},
            ],
        }
    ]
}
"""Any member of eu-cities, for research."""

NOT_UNDER_REVIEW: dict[str, Any] = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
            ],
        }
    ],
    "prohibition": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": REVIEW}],
        }
    ],
}
"""Research by anyone, except members of under-review."""

EU_REFUSAL = f"memberships [] include none of [{EU!r}]"


class Direct:
    """Delivers straight into the addressed engine, as sent by ``sender``."""

    def __init__(self, sender: str, engines: dict[str, NegotiationEngine]) -> None:
        self.sender = sender
        self.engines = engines

    def deliver(self, record: NegotiationRecord, message: PendingMessage) -> Mapping[str, Any]:
        return self.engines[record.counterparty_id].receive(
            message.kind, message.payload, sender_id=self.sender, signature=message.signature
        )


@dataclass
class Node:
    engine: NegotiationEngine
    audit: SqlAuditLog


@dataclass
class World:
    nodes: dict[str, Node]
    clock: FixedClock

    def engine(self, participant_id: str) -> NegotiationEngine:
        return self.nodes[participant_id].engine

    def drain(self) -> None:
        for _ in range(30):
            if not sum(node.engine.dispatch_due() for node in self.nodes.values()):
                return

    def start(self, consumer: str, offer_id: str, policy: Mapping[str, Any]) -> NegotiationRecord:
        return self.engine(consumer).start(
            provider_id=CITY,
            provider_address="city-a:7443",
            dataset_id="counts",
            offer_id=offer_id,
            offer_policy=policy,
            usage=USAGE,
        )


def _party(tmp: Path, participant_id: str) -> Party:
    name = participant_id.rsplit(":", 1)[1]
    files = issue_certificate(tmp / "pki", name, participant_id=participant_id, out_dir=tmp / name)
    return Party(
        participant_id=participant_id,
        callback_address=f"grpcs://{name}:7443",
        cert_pem=files.cert.read_bytes(),
        key_pem=(tmp / name / f"{name}.key").read_bytes(),
        trust_pem=files.ca.read_bytes(),
    )


def _city_memberships(tmp: Path) -> dict[str, frozenset[str]]:
    """The provider's peer memberships, read from a node config file as the node does."""
    document = {
        "node": {"name": "city-a", "participant_id": CITY},
        "tls": {"cert": "tls/node.crt", "key": "tls/node.key", "trust_bundle": "tls/ca.crt"},
        "peers": [
            {
                "name": "researcher-a",
                "participant_id": MEMBER,
                "address": "researcher-a:7443",
                "memberships": [EU, REVIEW],
            },
            {"name": "researcher-b", "participant_id": OUTSIDER, "address": "researcher-b:7443"},
        ],
    }
    path = tmp / "city-a.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return load_config(path).model.peer_memberships()


def _node(
    tmp: Path,
    participant_id: str,
    clock: FixedClock,
    engines: dict[str, NegotiationEngine],
    memberships: Mapping[str, frozenset[str]] | None = None,
) -> Node:
    folder = tmp / participant_id.rsplit(":", 1)[1]
    folder.mkdir(parents=True, exist_ok=True)
    db = create_engine(sqlite_url(folder / "hanse.db"))
    migrate(db)
    datasets = SqlDatasetStore(db, clock)
    if participant_id == CITY:
        datasets.create_dataset(
            Dataset(
                id="counts",
                title="Counts",
                format="csv",
                source=DataSource(path="/srv/counts.csv"),
                columns=(Column("count", "integer"),),
                offers=(
                    Offer("eu-only", "counts", {"@id": "eu-only", **GROUP_POLICY}, True),
                    Offer(
                        "not-under-review",
                        "counts",
                        {"@id": "not-under-review", **NOT_UNDER_REVIEW},
                        True,
                    ),
                    Offer("eu-manual", "counts", {"@id": "eu-manual", **GROUP_POLICY}, False),
                ),
            )
        )
    audit = SqlAuditLog(db, clock)
    engine = NegotiationEngine(
        party=_party(tmp, participant_id),
        store=SqlNegotiationStore(db, audit, clock),
        datasets=datasets,
        transport=Direct(participant_id, engines),
        clock=clock,
        backoff=Backoff(first=1.0, factor=2.0, cap=8.0, attempts=2),
        rng=random.Random(7),
        memberships=memberships,
    )
    engines[participant_id] = engine
    return Node(engine, audit)


@pytest.fixture
def world(tmp_path: Path) -> World:
    init_ca(tmp_path / "pki")
    clock = FixedClock(datetime.now(UTC) + timedelta(minutes=10))
    engines: dict[str, NegotiationEngine] = {}
    nodes = {CITY: _node(tmp_path, CITY, clock, engines, _city_memberships(tmp_path))}
    for consumer in (MEMBER, OUTSIDER, STRANGER):
        nodes[consumer] = _node(tmp_path, consumer, clock, engines)
    return World(nodes, clock)


def _refusals(world: World) -> list[dict[str, Any]]:
    entries = world.nodes[CITY].audit.entries(kind_prefix="negotiation.refused")
    return [{"peer": e.peer, **e.payload} for e in entries]


def test_the_peer_config_gives_only_configured_peers_their_groups(world: World) -> None:
    # Execute
    memberships = world.engine(CITY).memberships

    # Assert
    assert memberships == {MEMBER: frozenset({EU, REVIEW})}


def test_a_member_of_the_group_is_agreed_and_the_agreement_can_be_used(world: World) -> None:
    # Prepare
    started = world.start(MEMBER, "eu-only", GROUP_POLICY)

    # Execute
    world.drain()

    # Assert
    consumer_side = world.engine(MEMBER).store.get(started.id)
    assert consumer_side.state.value == "FINALIZED", consumer_side.reason
    (provider_side,) = world.engine(CITY).store.list_negotiations()
    assert provider_side.state.value == "FINALIZED"
    assert provider_side.usage[MEMBERSHIPS] == [EU, REVIEW]
    assert MEMBERSHIPS not in consumer_side.usage
    # The groups are the provider's record, not a term of the agreement.
    agreement = provider_side.agreement or {}
    assert agreement == consumer_side.agreement
    assert agreement["permission"][0]["constraint"] == [
        *GROUP_POLICY["permission"][0]["constraint"],
        *usage_constraints(USAGE),
    ]
    terms = check_use(
        provider_side,
        consumer=MEMBER,
        task_id=TASK["id"],
        task_hash=TASK["hash"],
        rounds=5,
        now=world.clock.now(),
    )
    assert terms.consumer == MEMBER
    assert _refusals(world) == []


@pytest.mark.parametrize("consumer", [OUTSIDER, STRANGER], ids=["configured", "unconfigured"])
def test_a_peer_outside_the_group_is_refused_and_nothing_is_stored(
    world: World, consumer: str
) -> None:
    # Prepare
    started = world.start(consumer, "eu-only", GROUP_POLICY)

    # Execute
    world.drain()

    # Assert
    final = world.engine(consumer).store.get(started.id)
    assert final.state.value == "TERMINATED"
    assert "POLICY_REFUSED" in final.reason
    assert f"permission[0].constraint[1] is not satisfied: {EU_REFUSAL}" in final.reason
    assert world.engine(CITY).store.list_negotiations() == []
    (refusal,) = _refusals(world)
    assert refusal["peer"] == consumer
    assert refusal["offer"] == "eu-only"
    assert refusal["reason"] == f"permission[0].constraint[1] is not satisfied: {EU_REFUSAL}"


def test_a_consumer_cannot_claim_a_group_in_its_request(world: World) -> None:
    # Prepare: a hand-made request that adds a membership constraint of its own.
    claim = {"leftOperand": "membership", "operator": "eq", "rightOperand": EU}
    offer = {
        "@type": "Offer",
        "@id": "eu-only",
        "target": "counts",
        "permission": [
            {
                "action": "use",
                "constraint": [
                    *GROUP_POLICY["permission"][0]["constraint"],
                    *usage_constraints(USAGE),
                    claim,
                ],
            }
        ],
    }
    message = request_message(
        consumer_pid=new_pid(), offer=offer, callback_address="grpcs://researcher-b:7443"
    )

    # Execute
    with pytest.raises(ConnectorError) as refused:
        world.engine(CITY).receive(Message.REQUEST, message.to_json(), sender_id=OUTSIDER)

    # Assert
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.reason == "POLICY_REFUSED"
    assert EU_REFUSAL in refused.value.message
    assert world.engine(CITY).store.list_negotiations() == []
    assert [r["peer"] for r in _refusals(world)] == [OUTSIDER]


def test_a_consumer_cannot_state_memberships_in_its_usage(world: World) -> None:
    # Prepare
    consumer = world.engine(OUTSIDER)

    # Execute
    with pytest.raises(ConnectorError) as refused:
        consumer.start(
            provider_id=CITY,
            provider_address="city-a:7443",
            dataset_id="counts",
            offer_id="eu-only",
            offer_policy=GROUP_POLICY,
            usage={**USAGE, MEMBERSHIPS: [EU]},
        )

    # Assert
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "the provider decides which groups a peer belongs to" in refused.value.message
    assert consumer.store.list_negotiations() == []


@pytest.mark.parametrize(
    ("consumer", "state"),
    [(MEMBER, "TERMINATED"), (OUTSIDER, "FINALIZED"), (STRANGER, "FINALIZED")],
    ids=["member", "configured-outsider", "unconfigured"],
)
def test_a_prohibition_on_a_group_applies_to_its_members_only(
    world: World, consumer: str, state: str
) -> None:
    # Prepare
    started = world.start(consumer, "not-under-review", NOT_UNDER_REVIEW)

    # Execute
    world.drain()

    # Assert
    final = world.engine(consumer).store.get(started.id)
    assert final.state.value == state, final.reason
    stored = world.engine(CITY).store.list_negotiations()
    if state == "TERMINATED":
        assert "prohibition[0] forbids 'use' and its constraints hold" in final.reason
        assert stored == []
    else:
        assert [r.state.value for r in stored] == ["FINALIZED"]


@pytest.mark.parametrize(
    ("groups", "reason"),
    [
        ({MEMBER: frozenset({EU})}, "waiting for the operator to approve"),
        (
            {},
            f"counter-request outside the offer: permission[0].constraint[1] is not "
            f"satisfied: {EU_REFUSAL}",
        ),
    ],
    ids=["still-a-member", "membership-withdrawn"],
)
def test_a_counter_request_is_checked_with_the_groups_configured_now(
    world: World, groups: dict[str, frozenset[str]], reason: str
) -> None:
    # Prepare: the operator approves this offer by hand; the city answers the request
    # with an offer of its own, then its operator changes the member's groups.
    city = world.engine(CITY)
    manual = {"@id": "eu-manual", **GROUP_POLICY}
    started = world.start(MEMBER, "eu-manual", GROUP_POLICY)
    world.drain()
    (provider_side,) = city.store.list_negotiations()
    city.counter(provider_side.id, manual)
    world.drain()
    assert world.engine(MEMBER).store.get(started.id).state.value == "OFFERED"
    city.memberships = groups

    # Execute: the member counters with a request on the same terms.
    world.engine(MEMBER).counter(started.id, manual)
    world.drain()

    # Assert
    after = city.store.get(provider_side.id)
    assert after.state.value == "REQUESTED"
    assert after.reason == reason
    assert after.usage.get(MEMBERSHIPS) == (sorted(groups[MEMBER]) if groups else None)


def test_an_accepted_offer_is_checked_with_the_configured_groups(world: World) -> None:
    # Prepare: the city answers with an offer that forbids members of under-review,
    # which the consumer cannot know it is one of; it accepts.
    city = world.engine(CITY)
    started = world.start(MEMBER, "eu-manual", GROUP_POLICY)
    world.drain()
    (provider_side,) = city.store.list_negotiations()
    city.counter(provider_side.id, {"@id": "eu-manual", **NOT_UNDER_REVIEW})
    world.drain()

    # Execute
    world.engine(MEMBER).accept(started.id)
    world.drain()

    # Assert
    final = world.engine(MEMBER).store.get(started.id)
    assert final.state.value == "TERMINATED"
    assert "the accepted offer does not permit the stated use" in final.reason
    assert "prohibition[0] forbids 'use' and its constraints hold" in final.reason
    after = city.store.get(provider_side.id)
    assert after.state.value == "TERMINATED"
    assert after.agreement is None
