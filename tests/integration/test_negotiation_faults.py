"""Contract negotiation under faults: a provider killed with SIGKILL, a consumer restarted
with a message pending, and an audit log edited or cut short behind the node's back.

A restarted node must come back at the address its peers know, so these nodes listen on
fixed loopback ports (picked free just before ``hanse node init``).

A consumer's first request cannot be pending while its provider is down: starting a
negotiation reads the offer from the provider's catalog first. The message pending
here is therefore the consumer's acceptance of a counter-offer (ACCEPTING), a message
the consumer sends with the provider away.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from connector.store import SqlAuditLog, create_engine
from connector.v1 import negotiation_management_pb2 as pb
from connector.v1 import negotiation_pb2
from node.config import load_config
from tests.harness import Cluster, NodeProcess, hanse

pytestmark = pytest.mark.integration

QUAY = "akl-ped-107-quay-street"
AUTO = f"{QUAY}-fl"
MANUAL = "quay-manual"
FINAL = {"FINALIZED", "TERMINATED"}
NARROWER = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
            ],
        }
    ]
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fixed_port() -> dict[str, dict[str, str]]:
    return {"protocol": {"listen": f"127.0.0.1:{_free_port()}"}}


def _pair(cluster: Cluster, *, fixed_researcher_port: bool = False) -> tuple[Path, Path]:
    """Configs of a city (fixed port, with a MANUAL offer) and a researcher that knows it."""
    city_config = cluster.init("city-a", sensors=("107 Quay Street",), edit=_fixed_port())
    document = yaml.safe_load(city_config.read_text(encoding="utf-8"))
    document["datasets"][0]["offers"].append(
        {"id": MANUAL, "auto_agree": False, "policy": NARROWER}
    )
    city_config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    city = cluster.start(city_config)
    researcher_config = cluster.init(
        "researcher", peers=(city,), edit=_fixed_port() if fixed_researcher_port else None
    )
    return city_config, researcher_config


def _node(cluster: Cluster, config: Path) -> NodeProcess:
    (node,) = [n for n in cluster.processes if n.config_path == config]
    return node


def _kill(cluster: Cluster, node: NodeProcess) -> None:
    """SIGKILL, no drain; the cluster fixture must not stop it again."""
    assert node.stop(signal.SIGKILL) == -signal.SIGKILL
    cluster.processes.remove(node)


def _get(node: NodeProcess, negotiation_id: str) -> negotiation_pb2.Negotiation:
    with node.client() as client:
        return client.call(
            client.negotiations.GetManagedNegotiation,
            pb.GetManagedNegotiationRequest(id=negotiation_id),
        ).negotiation


def _wait(
    node: NodeProcess,
    negotiation_id: str,
    done: set[str] | None = None,
    *,
    attempted: bool = False,
    timeout: float = 30,
) -> negotiation_pb2.Negotiation:
    """The negotiation once in one of ``done`` (or, with ``attempted``, once tried)."""
    deadline = time.monotonic() + timeout
    while True:
        found = _get(node, negotiation_id)
        if (done and found.state in done) or (attempted and found.attempts > 0):
            return found
        if time.monotonic() > deadline:
            pytest.fail(
                f"{negotiation_id} at {node.config_path.parent.name}: {found.state} "
                f"({found.reason!r}, {found.attempts} attempts) after {timeout}s"
            )
        time.sleep(0.05)


def _provider_id(city: NodeProcess, consumer_pid: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with city.client() as client:
            listed = client.call(
                client.negotiations.ListNegotiations, pb.ListNegotiationsRequest()
            ).negotiations
        for negotiation in listed:
            if negotiation.consumer_pid == consumer_pid:
                return negotiation.id
        time.sleep(0.05)
    pytest.fail(f"the city never saw {consumer_pid}")


def _start(researcher: NodeProcess, offer_id: str) -> str:
    with researcher.client() as client:
        return client.call(
            client.negotiations.StartNegotiation,
            pb.StartNegotiationRequest(
                peer="city-a",
                dataset_id=QUAY,
                offer_id=offer_id,
                usage_json='{"purpose":"research"}',
            ),
        ).negotiation.id


def _offered(city: NodeProcess, researcher: NodeProcess) -> tuple[str, str]:
    """A request for MANUAL that the city answered with a counter-offer (both OFFERED)."""
    consumer_id = _start(researcher, MANUAL)
    provider_id = _provider_id(city, consumer_id)
    _wait(city, provider_id, {"REQUESTED"})
    with city.client() as client:
        client.call(
            client.negotiations.CounterNegotiation,
            pb.CounterNegotiationRequest(id=provider_id, policy_json=json.dumps(NARROWER)),
        )
    _wait(researcher, consumer_id, {"OFFERED"})
    _wait(city, provider_id, {"OFFERED"})
    return consumer_id, provider_id


def _accept(researcher: NodeProcess, consumer_id: str) -> None:
    with researcher.client() as client:
        client.call(
            client.negotiations.AcceptNegotiation, pb.AcceptNegotiationRequest(id=consumer_id)
        )


def _audit_verifies(node_config: Path) -> bool:
    engine = create_engine(load_config(node_config).database_url())
    try:
        return SqlAuditLog(engine).verify().ok
    finally:
        engine.dispose()


def test_provider_killed_while_the_consumer_sends_completes_after_restart(
    cluster: Cluster,
) -> None:
    # Prepare: both OFFERED; then the city dies without a chance to drain.
    city_config, researcher_config = _pair(cluster)
    city = _node(cluster, city_config)
    researcher = cluster.start(researcher_config)
    consumer_id, provider_id = _offered(city, researcher)
    address = city.protocol
    _kill(cluster, city)

    # Execute: the researcher accepts while the city is down, then the city comes back.
    _accept(researcher, consumer_id)
    _wait(researcher, consumer_id, attempted=True)
    shown = hanse("contract", "show", consumer_id, "--json", "--config", str(researcher_config))
    restarted = cluster.start(city_config)
    consumer = _wait(researcher, consumer_id, FINAL, timeout=60)
    provider = _wait(restarted, provider_id, FINAL, timeout=60)

    # Assert
    assert shown.returncode == 0, shown.stderr
    pending = json.loads(shown.stdout)
    assert pending["state"] == "ACCEPTING", pending
    assert int(pending["attempts"]) > 0
    assert restarted.protocol == address
    assert (consumer.state, provider.state) == ("FINALIZED", "FINALIZED"), consumer.reason
    assert json.loads(consumer.agreement_json) == json.loads(provider.agreement_json)
    assert _audit_verifies(city_config), "the SIGKILL left the city's audit chain intact"


def test_consumer_restarted_with_a_pending_message_resumes_and_completes(
    cluster: Cluster,
) -> None:
    # Prepare: the city is down; the researcher's acceptance waits for it (ACCEPTING).
    city_config, researcher_config = _pair(cluster, fixed_researcher_port=True)
    city = _node(cluster, city_config)
    researcher = cluster.start(researcher_config)
    consumer_id, provider_id = _offered(city, researcher)
    _kill(cluster, city)
    _accept(researcher, consumer_id)
    pending = _wait(researcher, consumer_id, attempted=True)

    # Execute: the researcher dies too; both come back, the city first.
    _kill(cluster, researcher)
    city = cluster.start(city_config)
    researcher = cluster.start(researcher_config)
    consumer = _wait(researcher, consumer_id, FINAL, timeout=60)
    provider = _wait(city, provider_id, FINAL, timeout=60)

    # Assert
    assert pending.state == "ACCEPTING"
    assert (consumer.state, provider.state) == ("FINALIZED", "FINALIZED"), consumer.reason
    assert _audit_verifies(researcher_config), "the SIGKILL left the researcher's chain intact"


def test_edited_or_truncated_audit_log_fails_verification(cluster: Cluster) -> None:
    # Prepare: one finalized negotiation; the researcher stopped; its database at hand.
    _, researcher_config = _pair(cluster)
    researcher = cluster.start(researcher_config)
    consumer_id = _start(researcher, AUTO)
    assert _wait(researcher, consumer_id, FINAL).state == "FINALIZED"
    assert researcher.stop() == 0
    cluster.processes.remove(researcher)
    database = make_url(researcher.config.database_url()).database
    assert database is not None
    with sqlite3.connect(database) as db:
        (seq, original), *_ = db.execute(
            "SELECT seq, payload FROM audit_entry WHERE kind = 'agreement.finalized'"
        ).fetchall()
        (last,) = db.execute("SELECT max(seq) FROM audit_entry").fetchone()
    edited = json.loads(original)
    edited["agreement"]["target"] = "akl-ped-some-other-sensor"

    # Execute: edit the agreement on record; then put it back and cut off the last two.
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_entry SET payload = ? WHERE seq = ?", (json.dumps(edited), seq))
    after_edit = hanse("audit", "verify", "--config", str(researcher_config))
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_entry SET payload = ? WHERE seq = ?", (original, seq))
    restored = _audit_verifies(researcher_config)
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM audit_entry WHERE seq > ?", (last - 2,))
    after_cut = hanse("audit", "verify", "--config", str(researcher_config))

    # Assert
    assert after_edit.returncode == 1, after_edit.stdout
    assert f"entry {seq} was edited" in after_edit.stderr
    assert restored, "the original payload verifies again"
    assert after_cut.returncode == 1, after_cut.stdout
    assert "truncated" in after_cut.stderr
    assert f"the head records {last} entries, the log ends at entry {last - 2}" in after_cut.stderr
