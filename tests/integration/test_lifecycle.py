"""Node process lifecycle: start errors, restart keeps state, SIGTERM, health, metrics, reflection."""

from __future__ import annotations

import json
import signal
import urllib.request

import grpc
import pytest
import yaml
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from connector.identity import channel_credentials
from connector.v1 import dataset_management_pb2 as pb
from connector.v1 import dataset_pb2
from node.health import check_health
from tests.harness import Cluster, hanse

pytestmark = pytest.mark.integration


def _bikes() -> pb.CreateDatasetRequest:
    dataset = dataset_pb2.Dataset(
        id="bikes",
        title="Bike counts",
        format="csv",
        columns=[dataset_pb2.Column(name="count", type="integer")],
    )
    dataset.source.path = "/srv/bikes.csv"
    return pb.CreateDatasetRequest(dataset=dataset, request_id="bikes-1")


def test_restart_keeps_state(cluster: Cluster) -> None:
    # Prepare
    config = cluster.init("city-a", sensors=("107 Quay Street",))
    first = cluster.start(config)
    with first.client() as client:
        client.call(client.datasets.CreateDataset, _bikes())

    # Execute
    assert first.stop() == 0
    cluster.processes.remove(first)
    second = cluster.start(config)
    with second.client() as client:
        listed = client.call(client.datasets.ListDatasets, pb.ListDatasetsRequest())
        replay = client.call(client.datasets.CreateDataset, _bikes())

    # Assert
    assert [d.id for d in listed.datasets] == ["akl-ped-107-quay-street", "bikes"]
    assert replay.dataset.id == "bikes", "the request id survives the restart too"


def test_sigterm_drains_and_exits_cleanly(cluster: Cluster) -> None:
    # Prepare
    node = cluster.start(cluster.init("city-a"))
    endpoints_file = node.config.endpoints_file

    # Execute
    code = node.stop(signal.SIGTERM)

    # Assert
    assert code == 0
    assert not endpoints_file.exists()
    log = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in log]
    assert messages[-2:] == ["signal received, draining", "node stopped"]
    assert all(entry["node"] == "city-a" for entry in log)


def test_health_metrics_and_reflection(cluster: Cluster) -> None:
    # Prepare
    node = cluster.start(cluster.init("city-a", edit={"health": {"listen": "127.0.0.1:0"}}))
    tls = cluster.identity("city-b", "urn:hanse:city-b")
    with node.client() as client:
        client.call(client.datasets.ListDatasets, pb.ListDatasetsRequest())

    # Execute
    plain = check_health(node.endpoints.health)
    with grpc.secure_channel(node.protocol, channel_credentials(tls)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
        )
    with urllib.request.urlopen(f"http://{node.endpoints.metrics}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    status_cli = hanse("node", "status", "--json", "--config", str(node.config_path))
    health_cli = hanse("health", node.endpoints.health, "--plaintext")

    # Assert
    assert plain == "SERVING"
    services = {s.name for s in replies[0].list_services_response.service}
    assert "connector.v1.CatalogProtocolService" in services
    assert "connector.v1.DatasetManagementService" not in services
    assert (
        'hanse_rpc_calls_total{api="management",code="OK",'
        'method="/connector.v1.DatasetManagementService/ListDatasets"} 1.0'
    ) in metrics
    assert 'hanse_node_info{name="city-a"' in metrics
    assert status_cli.returncode == 0 and json.loads(status_cli.stdout)["status"] == "SERVING"
    assert health_cli.returncode == 0 and health_cli.stdout.strip() == "SERVING"


@pytest.mark.parametrize(
    ("label", "breakage", "expected"),
    [
        ("malformed yaml", lambda p: p.write_text("node: [unclosed\n"), "not valid YAML"),
        (
            "unknown field",
            lambda p: p.write_text(p.read_text() + "colour: blue\n"),
            "colour: unknown field",
        ),
        (
            "bad listen address",
            lambda p: p.write_text(
                p.read_text().replace("listen: 127.0.0.1:0", "listen: nowhere", 1)
            ),
            "protocol.listen: 'nowhere' is not host:port",
        ),
        (
            "unreadable certificate",
            lambda p: (p.parent / "tls" / "city-a.pem").write_text("not a certificate"),
            "city-a.pem",
        ),
        (
            "certificate of another participant",
            lambda p: p.write_text(p.read_text().replace("urn:hanse:city-a", "urn:hanse:someone")),
            "is for participant 'urn:hanse:city-a'",
        ),
        (
            "missing admin token",
            lambda p: (p.parent / "secrets" / "admin.token").unlink(),
            "management.admin_token_file",
        ),
    ],
)
def test_bad_config_stops_start_with_one_clear_line(
    cluster: Cluster, label, breakage, expected
) -> None:
    # Prepare
    config = cluster.init("city-a", sensors=("107 Quay Street",))
    breakage(config)
    data_dir = config.parent / "data"

    # Execute
    result = cluster.run_start_expecting_exit(config)

    # Assert
    assert result.returncode == 2, (label, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    assert not (data_dir / "hanse.db").exists(), "nothing was written before the refusal"


def test_config_check(cluster: Cluster) -> None:
    # Prepare
    config = cluster.init("city-a", sensors=("107 Quay Street",))
    document = yaml.safe_load(config.read_text())
    document["datasets"][0]["offers"][0]["policy"]["permission"][0]["constraint"][0]["operator"] = (
        "like"
    )
    broken = config.parent / "broken.yaml"
    broken.write_text(yaml.safe_dump(document))

    # Execute
    good = hanse("config", "check", str(config))
    bad = hanse("config", "check", str(broken))
    schema_only = hanse("config", "check", "--schema-only", str(config))

    # Assert
    assert good.returncode == 0 and "1 datasets, 1 offers" in good.stdout
    assert bad.returncode == 2
    assert "datasets[0].offers[0].policy.permission[0].constraint[0].operator" in bad.stderr
    assert "unknown operator 'like'" in bad.stderr
    assert schema_only.returncode == 0


@pytest.mark.postgres
def test_node_on_postgresql_serves_catalog_and_keeps_state(
    cluster: Cluster, fresh_postgres_database: str
) -> None:
    # Prepare
    config = cluster.init(
        "city-a", sensors=("107 Quay Street",), database_url=fresh_postgres_database
    )
    first = cluster.start(config)
    with first.client() as client:
        client.call(client.datasets.CreateDataset, _bikes())
    assert first.stop() == 0
    cluster.processes.remove(first)

    # Execute
    second = cluster.start(config)
    researcher = cluster.start(cluster.init("researcher", peers=(second,)))
    with researcher.client() as client:
        from connector.v1 import peer_management_pb2

        catalog = client.call(
            client.peers.GetPeerCatalog, peer_management_pb2.GetPeerCatalogRequest(peer="city-a")
        ).catalog
    with second.client() as client:
        listed = client.call(client.datasets.ListDatasets, pb.ListDatasetsRequest())

    # Assert
    assert not (config.parent / "data" / "hanse.db").exists(), "state is in PostgreSQL"
    assert [d.id for d in listed.datasets] == ["akl-ped-107-quay-street", "bikes"]
    assert [d.id for d in catalog.datasets] == ["akl-ped-107-quay-street"], "bikes has no offer"


def test_sigterm_lets_an_in_flight_call_finish(cluster: Cluster) -> None:
    # Prepare: a "peer" that accepts TCP and never answers, so the call stays in flight.
    import socket
    import threading
    import time

    from connector.errors import ConnectorError
    from connector.v1 import peer_management_pb2

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    node = cluster.start(
        cluster.init(
            "researcher",
            edit={
                "protocol": {"peer_timeout_seconds": 3},
                "peers": [{"name": "mute", "participant_id": "urn:hanse:mute", "address": address}],
            },
        )
    )
    outcome: dict[str, object] = {}

    def ask() -> None:
        with node.client(timeout=30) as client:
            began = time.monotonic()
            try:
                client.call(
                    client.peers.GetPeerCatalog,
                    peer_management_pb2.GetPeerCatalogRequest(peer="mute"),
                )
            except ConnectorError as exc:
                outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - began

    caller = threading.Thread(target=ask)
    caller.start()
    time.sleep(1.0)

    # Execute
    code = node.stop(signal.SIGTERM)
    caller.join(30)
    silent.close()

    # Assert: the handler ran to its own answer (the peer timeout), not a cancellation.
    assert code == 0
    error = outcome["error"]
    assert isinstance(error, ConnectorError)
    assert error.reason == "PEER_UNAVAILABLE", error
    assert 2.5 < float(outcome["seconds"]) < 15  # type: ignore[arg-type]
