"""The governed ClientApp, guard and all, unchanged under Flower's simulation engine (Ray).

Two cities, each with its own dataset, guard and node key, train two rounds of FedAvg;
the aggregator verifies every update's signature before aggregating. One test only:
starting Ray takes a while on a small machine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from connector.store.ledger import SqlPrivacyLedger
from federation.clientapp import governed_client_app
from federation.guard import GuardContext, UpdateVerification, verify_update
from federation.guard.audit import METRICS_SENT, UPDATE_SENT
from tests.unit.guard_support import NOW, make_federation, make_guard, migrated_url
from tests.unit.synthetic_task import LinearTask, synthetic_data

CITIES = ("city-a", "city-b")
ROUNDS = 2


class VerifyingFedAvg(FedAvg):
    """FedAvg that checks each update's signature before aggregating it."""

    def __init__(self, trust_pem: bytes, verified: list[UpdateVerification]) -> None:
        super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_available_nodes=2)
        self.trust_pem = trust_pem
        self.verified = verified

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        listed = list(replies)
        for reply in listed:
            if not reply.has_error():
                self.verified.append(verify_update(reply, self.trust_pem, at=NOW))
        return super().aggregate_train(server_round, listed)


def dispatching_app(apps: dict[int, ClientApp]) -> ClientApp:
    """One ClientApp for the simulation that hands each virtual node its own city's app."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return apps[int(context.node_config["partition-id"])](message, context)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return apps[int(context.node_config["partition-id"])](message, context)

    return app


@pytest.fixture
def in_repository() -> Iterator[None]:
    # Ray must not run with the system temp dir as its working directory.
    previous = Path.cwd()
    os.chdir(Path(__file__).resolve().parents[2])
    yield
    os.chdir(previous)


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("in_repository")
def test_two_cities_train_two_rounds_under_the_guard_in_the_simulation(tmp_path: Path) -> None:
    # Prepare: one database per city (as each city runs its own node), keys of one federation.
    from flwr.simulation import run_simulation

    pkis = make_federation(tmp_path / "pki", [f"urn:hanse:{city}" for city in CITIES])
    trust = pkis[0].trust_pem
    guards: list[GuardContext] = []
    apps: dict[int, ClientApp] = {}
    for index, (city, pki) in enumerate(zip(CITIES, pkis, strict=True)):
        url = migrated_url(tmp_path / city)
        guard = make_guard(pki, url, dataset_id=f"ped-{city}")
        guards.append(guard)
        loader = functools.partial(synthetic_data, train=64, test=16, seed=index + 1)
        apps[index] = governed_client_app(LinearTask(), loader, guard)
    initial = ArrayRecord(LinearTask().build_model().state_dict())
    verified: list[UpdateVerification] = []
    results: list[ArrayRecord] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = VerifyingFedAvg(trust, verified)
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=ROUNDS)
        results.append(result.arrays)

    # Execute
    run_simulation(
        server_app=server,
        client_app=dispatching_app(apps),
        num_supernodes=len(CITIES),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False},
        },
    )

    # Assert: both cities trained both rounds, on their ledgers and audit logs.
    assert [v.ok for v in verified] == [True] * (len(CITIES) * ROUNDS), verified
    assert sorted({v.signer or "" for v in verified}) == [f"urn:hanse:{c}" for c in CITIES]
    assert sorted(v.round or 0 for v in verified) == [1, 1, 2, 2]
    final = results[0]
    assert set(final) == set(initial)
    assert not all(np.array_equal(final[k].numpy(), initial[k].numpy()) for k in initial)
    for guard in guards:
        ledger: SqlPrivacyLedger = guard.ledger()
        history = ledger.history(guard.dataset_id)
        assert [(item.round, item.steps) for item in history] == [(1, 4), (2, 4)]
        assert 0 < ledger.total_epsilon(guard.dataset_id) <= guard.epsilon_budget
        kinds = [entry.kind for entry in guard.audit_log().entries()]
        assert kinds.count(UPDATE_SENT) == ROUNDS
        assert kinds.count(METRICS_SENT) == ROUNDS
        assert guard.audit_log().verify().ok
