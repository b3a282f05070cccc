"""Tests for the privacy management API (connector.services.privacy_management).

The servicer reads a real SQLite store: datasets in the dataset store, provider-side
agreements in the negotiation store, and ledger rounds recorded through
:class:`SqlPrivacyLedger` itself. It is served over gRPC with the node's error
interceptor, so refusals arrive as the status codes a client sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from connector.clock import FixedClock
from connector.datasets import Dataset, DataSource
from connector.errors import from_rpc_error
from connector.interceptors.errors import ErrorInterceptor
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState, Role
from connector.services.privacy_management import PrivacyManagementServicer
from connector.store import (
    SqlAuditLog,
    SqlDatasetStore,
    SqlNegotiationStore,
    create_engine,
    migrate,
)
from connector.store.engine import sqlite_url
from connector.store.ledger import SqlPrivacyLedger
from connector.v1 import privacy_management_pb2 as pb
from connector.v1 import privacy_management_pb2_grpc

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESEARCHER = "did:web:researcher.example"
AGREEMENT_A = "urn:uuid:agreement-a"
AGREEMENT_B = "urn:uuid:agreement-b"
AGREEMENT_C = "urn:uuid:agreement-c"


@dataclass
class Node:
    """A node's stores and a client of its privacy API."""

    datasets: SqlDatasetStore
    negotiations: SqlNegotiationStore
    ledger: SqlPrivacyLedger
    clock: FixedClock
    stub: privacy_management_pb2_grpc.PrivacyManagementServiceStub

    def spend(
        self, dataset_id: str, agreement_id: str, run_id: str, round: int, eps: float
    ) -> None:
        """Record one round through the ledger's own API, one minute after the last."""
        self.clock.advance(timedelta(minutes=1))
        self.ledger.record_round(
            dataset_id=dataset_id,
            agreement_id=agreement_id,
            run_id=run_id,
            round=round,
            sample_rate=0.05,
            noise_multiplier=1.1,
            steps=20,
            delta=1e-5,
            epsilon_after=eps,
            expected_rounds=len(self.ledger.history(dataset_id)),
        )

    def agreement(self, agreement_id: str, dataset_id: str, epsilon: float, rounds: int) -> None:
        """Store a finalized provider-side agreement stating ``epsilon`` and ``rounds``."""
        name = agreement_id.rsplit("-", 1)[-1]
        self.negotiations.create(
            NegotiationRecord(
                id=f"urn:uuid:provider-{name}",
                role=Role.PROVIDER,
                state=NegotiationState.FINALIZED,
                consumer_pid=f"urn:uuid:consumer-{name}",
                provider_pid=f"urn:uuid:provider-{name}",
                counterparty_id=RESEARCHER,
                counterparty_address="127.0.0.1:1",
                dataset_id=dataset_id,
                offer_id=f"{dataset_id}-fl",
                offer={"@id": f"{dataset_id}-fl", "permission": [{"action": "use"}]},
                usage={"epsilon": epsilon, "max_rounds": rounds, "delta": 1e-5},
                agreement={"@id": agreement_id, "@type": "Agreement"},
            )
        )


def _dataset(dataset_id: str) -> Dataset:
    return Dataset(
        id=dataset_id,
        title=f"Counts {dataset_id}",
        format="csv",
        source=DataSource(path=f"/srv/{dataset_id}.csv"),
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    engine = create_engine(sqlite_url(tmp_path / "node.db"))
    migrate(engine)
    clock = FixedClock(START)
    datasets = SqlDatasetStore(engine)
    for dataset_id in ("quay-street", "queen-street", "never-trained"):
        datasets.upsert_dataset(_dataset(dataset_id))
    negotiations = SqlNegotiationStore(engine, SqlAuditLog(engine))
    ledger = SqlPrivacyLedger(engine, clock)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), interceptors=[ErrorInterceptor()]
    )
    privacy_management_pb2_grpc.add_PrivacyManagementServiceServicer_to_server(
        PrivacyManagementServicer(datasets, ledger, negotiations), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Node(
            datasets,
            negotiations,
            ledger,
            clock,
            privacy_management_pb2_grpc.PrivacyManagementServiceStub(channel),
        )
    finally:
        channel.close()
        server.stop(grace=None).wait(5)
        engine.dispose()


def _spend_two_agreements(node: Node) -> None:
    node.agreement(AGREEMENT_A, "quay-street", epsilon=3.0, rounds=5)
    node.agreement(AGREEMENT_B, "quay-street", epsilon=8.0, rounds=10)
    node.spend("quay-street", AGREEMENT_A, "run-1", 1, 0.8)
    node.spend("quay-street", AGREEMENT_A, "run-1", 2, 1.2)
    node.spend("quay-street", AGREEMENT_B, "run-2", 1, 1.5)
    node.agreement(AGREEMENT_C, "queen-street", epsilon=2.0, rounds=3)
    node.spend("queen-street", AGREEMENT_C, "run-3", 1, 0.7)


def test_list_gives_every_dataset_by_id_with_its_composed_epsilon(node: Node) -> None:
    # Prepare
    _spend_two_agreements(node)

    # Execute
    budgets = node.stub.ListPrivacyBudgets(pb.ListPrivacyBudgetsRequest()).budgets

    # Assert
    by_id = {b.dataset_id: b for b in budgets}
    assert [b.dataset_id for b in budgets] == ["never-trained", "quay-street", "queen-street"]
    quay = by_id["quay-street"]
    assert quay.epsilon_spent == pytest.approx(1.5)
    assert quay.epsilon_spent == pytest.approx(node.ledger.total_epsilon("quay-street"))
    assert quay.delta == pytest.approx(1e-5)
    assert quay.rounds == 3
    assert quay.last_spend_time.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=3)
    assert [(a.agreement_id, a.rounds_used, a.runs) for a in quay.agreements] == [
        (AGREEMENT_A, 2, 1),
        (AGREEMENT_B, 1, 1),
    ]
    assert [(a.agreed_epsilon, a.agreed_max_rounds) for a in quay.agreements] == [
        (3.0, 5),
        (8.0, 10),
    ]
    assert quay.agreements[0].epsilon_after == pytest.approx(1.2)
    assert quay.agreements[0].last_spend_time.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=2)
    queen = by_id["queen-street"]
    assert (queen.epsilon_spent, queen.rounds) == (0.7, 1)
    assert [(a.agreement_id, a.agreed_epsilon) for a in queen.agreements] == [(AGREEMENT_C, 2.0)]


def test_a_dataset_never_trained_on_has_spent_nothing(node: Node) -> None:
    # Prepare
    _spend_two_agreements(node)

    # Execute
    listed = {
        b.dataset_id: b
        for b in node.stub.ListPrivacyBudgets(pb.ListPrivacyBudgetsRequest()).budgets
    }["never-trained"]
    shown = node.stub.GetPrivacyBudget(pb.GetPrivacyBudgetRequest(dataset_id="never-trained"))

    # Assert
    for budget in (listed, shown.budget):
        assert budget.dataset_id == "never-trained"
        assert (budget.epsilon_spent, budget.delta, budget.rounds) == (0.0, 0.0, 0)
        assert list(budget.agreements) == []
        assert not budget.HasField("last_spend_time")
    assert list(shown.rounds) == []


def test_show_gives_the_budget_and_every_round_oldest_first(node: Node) -> None:
    # Prepare
    _spend_two_agreements(node)

    # Execute
    response = node.stub.GetPrivacyBudget(pb.GetPrivacyBudgetRequest(dataset_id="quay-street"))

    # Assert
    assert response.budget.rounds == 3
    assert response.budget.epsilon_spent == pytest.approx(1.5)
    rows = [
        (r.seq, r.agreement_id, r.run_id, r.round, r.steps, r.epsilon_after)
        for r in response.rounds
    ]
    assert rows == [
        (1, AGREEMENT_A, "run-1", 1, 20, 0.8),
        (2, AGREEMENT_A, "run-1", 2, 20, 1.2),
        (3, AGREEMENT_B, "run-2", 1, 20, 1.5),
    ]
    first = response.rounds[0]
    # Doubles pass through SQLite and protobuf unchanged: compared exactly.
    assert (first.noise_multiplier, first.sample_rate, first.delta) == (1.1, 0.05, 1e-5)
    assert first.time.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=1)


def test_an_agreement_this_node_does_not_hold_shows_no_agreed_terms(node: Node) -> None:
    # Prepare: a round under an agreement with no negotiation on this node
    node.spend("queen-street", "urn:uuid:agreement-gone", "run-9", 1, 0.4)

    # Execute
    budget = node.stub.GetPrivacyBudget(
        pb.GetPrivacyBudgetRequest(dataset_id="queen-street")
    ).budget

    # Assert
    assert [(a.agreement_id, a.agreed_epsilon, a.agreed_max_rounds) for a in budget.agreements] == [
        ("urn:uuid:agreement-gone", 0.0, 0)
    ]
    assert budget.agreements[0].rounds_used == 1


def test_an_unknown_dataset_is_not_found_and_nothing_changes(node: Node) -> None:
    # Prepare
    _spend_two_agreements(node)
    before = {d: node.ledger.history(d) for d in ("quay-street", "queen-street", "nowhere")}

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        node.stub.GetPrivacyBudget(pb.GetPrivacyBudgetRequest(dataset_id="nowhere"))

    # Assert
    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "DATASET_NOT_FOUND"
    assert "holds no dataset 'nowhere'" in error.message
    assert "hanse privacy list" in error.message
    assert {d: node.ledger.history(d) for d in before} == before
    assert before["nowhere"] == []


def test_a_malformed_dataset_id_is_refused_and_nothing_changes(node: Node) -> None:
    # Prepare
    _spend_two_agreements(node)
    before = node.ledger.history("quay-street")

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        node.stub.GetPrivacyBudget(pb.GetPrivacyBudgetRequest(dataset_id=""))

    # Assert
    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "dataset_id" in error.message
    assert node.ledger.history("quay-street") == before


def test_a_dataset_removed_from_the_node_still_shows_its_ledger(node: Node) -> None:
    # Prepare: rounds spent on a dataset the node no longer holds
    node.spend("retired", AGREEMENT_A, "run-1", 1, 0.9)

    # Execute
    response = node.stub.GetPrivacyBudget(pb.GetPrivacyBudgetRequest(dataset_id="retired"))

    # Assert
    assert response.budget.epsilon_spent == pytest.approx(0.9)
    assert [r.run_id for r in response.rounds] == ["run-1"]
