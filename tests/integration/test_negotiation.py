"""Contract negotiation between real node processes over mutual TLS (DSP 2025-1 scenarios)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from connector.errors import ConnectorError, from_rpc_error
from connector.identity import channel_credentials
from connector.negotiation.messages import verification_message
from connector.v1 import negotiation_management_pb2 as pb
from connector.v1 import negotiation_protocol_pb2, negotiation_protocol_pb2_grpc
from tests.harness import Cluster, NodeProcess, hanse

pytestmark = pytest.mark.integration

QUAY = "akl-ped-107-quay-street"
FINAL = {"FINALIZED", "TERMINATED"}


def _pair(cluster: Cluster, *, auto_agree: bool = True) -> tuple[NodeProcess, NodeProcess]:
    edit = None
    if not auto_agree:
        config = cluster.init("city-a", sensors=("107 Quay Street",))
        text = config.read_text().replace("auto_agree: true", "auto_agree: false")
        config.write_text(text)
        city = cluster.start(config)
    else:
        city = cluster.start(cluster.init("city-a", sensors=("107 Quay Street",), edit=edit))
    researcher = cluster.start(cluster.init("researcher", peers=(city,)))
    return city, researcher


def _wait(
    node: NodeProcess, negotiation_id: str, states: set[str], timeout: float = 30
) -> pb.GetManagedNegotiationResponse:
    deadline = time.monotonic() + timeout
    with node.client() as client:
        while True:
            found = client.call(
                client.negotiations.GetManagedNegotiation,
                pb.GetManagedNegotiationRequest(id=negotiation_id),
            )
            if found.negotiation.state in states or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def _only_negotiation(node: NodeProcess) -> pb.ListNegotiationsResponse:
    with node.client() as client:
        return client.call(client.negotiations.ListNegotiations, pb.ListNegotiationsRequest())


def test_request_agreement_verification_finalized_from_the_cli(
    cluster: Cluster, tmp_path: Path, dsp_validate
) -> None:
    # Prepare
    city, researcher = _pair(cluster)
    config = str(researcher.config_path)

    # Execute
    requested = hanse(
        "contract",
        "request",
        "city-a",
        QUAY,
        "--purpose",
        "forecasting",
        "--rounds",
        "5",
        "--epsilon",
        "2.5",
        "--wait",
        "--json",
        "--config",
        config,
    )
    negotiation = json.loads(requested.stdout)
    exported = hanse(
        "contract",
        "export",
        negotiation["id"],
        "--out",
        str(tmp_path / "agreement.json"),
        "--config",
        config,
    )
    verified = hanse("contract", "verify", str(tmp_path / "agreement.json"), "--config", config)
    as_dsp = hanse("contract", "export", negotiation["id"], "--dsp", "--config", config)
    audit_researcher = hanse("audit", "verify", "--config", config)
    audit_city = hanse("audit", "verify", "--config", str(city.config_path))

    # Assert
    assert requested.returncode == 0, requested.stderr
    assert negotiation["state"] == "FINALIZED", negotiation
    assert exported.returncode == 0, exported.stderr
    document = json.loads((tmp_path / "agreement.json").read_text())
    agreement = document["agreement"]
    assert as_dsp.returncode == 0, as_dsp.stderr
    message = json.loads(as_dsp.stdout)
    dsp_validate(message, "negotiation/contract-agreement-message-schema.json")
    assert message["agreement"] == agreement
    assert message["consumerPid"] == negotiation["consumer_pid"]
    assert agreement["assigner"] == "urn:hanse:city-a"
    assert agreement["assignee"] == "urn:hanse:researcher"
    assert agreement["target"] == QUAY
    assert {s["role"] for s in document["signatures"]} == {"provider", "consumer"}
    assert verified.returncode == 0, verified.stderr
    assert "both signatures verify" in verified.stdout
    assert audit_researcher.returncode == 0 and "chain intact" in audit_researcher.stdout
    assert audit_city.returncode == 0, audit_city.stderr
    provider_side = _only_negotiation(city).negotiations
    assert [n.state for n in provider_side] == ["FINALIZED"]
    assert provider_side[0].consumer_pid == negotiation["consumer_pid"]


def test_tampered_agreement_fails_verification(cluster: Cluster, tmp_path: Path) -> None:
    # Prepare
    _city, researcher = _pair(cluster)
    config = str(researcher.config_path)
    requested = hanse(
        "contract",
        "request",
        "city-a",
        QUAY,
        "--purpose",
        "research",
        "--wait",
        "--json",
        "--config",
        config,
    )
    negotiation = json.loads(requested.stdout)
    hanse(
        "contract",
        "export",
        negotiation["id"],
        "--out",
        str(tmp_path / "a.json"),
        "--config",
        config,
    )
    document = json.loads((tmp_path / "a.json").read_text())
    document["agreement"]["target"] = "akl-ped-some-other-sensor"
    (tmp_path / "a.json").write_text(json.dumps(document))

    # Execute
    verified = hanse("contract", "verify", str(tmp_path / "a.json"), "--config", config)

    # Assert
    assert verified.returncode == 1
    assert "does not match the agreement" in verified.stderr


def test_wrong_purpose_is_refused_and_nothing_is_created_at_the_provider(cluster: Cluster) -> None:
    # Prepare
    city, researcher = _pair(cluster)

    # Execute
    refused = hanse(
        "contract",
        "request",
        "city-a",
        QUAY,
        "--purpose",
        "advertising",
        "--wait",
        "--json",
        "--config",
        str(researcher.config_path),
    )

    # Assert
    assert refused.returncode == 1
    negotiation = json.loads(refused.stdout)
    assert negotiation["state"] == "TERMINATED"
    assert "POLICY_REFUSED" in negotiation["reason"]
    assert "advertising" in negotiation["reason"]
    assert list(_only_negotiation(city).negotiations) == []


def test_manual_approval_then_finalized(cluster: Cluster) -> None:
    # Prepare
    city, researcher = _pair(cluster, auto_agree=False)
    with researcher.client() as client:
        started = client.call(
            client.negotiations.StartNegotiation,
            pb.StartNegotiationRequest(
                peer="city-a", dataset_id=QUAY, usage_json='{"purpose": "research"}'
            ),
        ).negotiation
    _wait(researcher, started.id, {"REQUESTED"})
    deadline = time.monotonic() + 30
    while not _only_negotiation(city).negotiations and time.monotonic() < deadline:
        time.sleep(0.1)
    waiting = _only_negotiation(city).negotiations[0]

    # Execute
    approved = hanse("contract", "approve", waiting.id, "--config", str(city.config_path))
    done = _wait(researcher, started.id, FINAL)

    # Assert
    assert waiting.state == "REQUESTED"
    assert "waiting for the operator" in waiting.reason
    assert approved.returncode == 0, approved.stderr
    assert done.negotiation.state == "FINALIZED"


def test_consumer_terminates_after_request(cluster: Cluster) -> None:
    # Prepare
    city, researcher = _pair(cluster, auto_agree=False)
    with researcher.client() as client:
        started = client.call(
            client.negotiations.StartNegotiation,
            pb.StartNegotiationRequest(
                peer="city-a", dataset_id=QUAY, usage_json='{"purpose": "research"}'
            ),
        ).negotiation
    _wait(researcher, started.id, {"REQUESTED"})

    # Execute
    ended = hanse(
        "contract",
        "terminate",
        started.id,
        "--reason",
        "no longer needed",
        "--config",
        str(researcher.config_path),
    )
    done = _wait(researcher, started.id, FINAL)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and _only_negotiation(city).negotiations[0].state != "TERMINATED"
    ):
        time.sleep(0.1)

    # Assert
    assert ended.returncode == 0, ended.stderr
    assert done.negotiation.state == "TERMINATED"
    provider = _only_negotiation(city).negotiations[0]
    assert provider.state == "TERMINATED"
    assert "no longer needed" in provider.reason


def test_invalid_transition_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    # Prepare: a negotiation waiting for the operator (REQUESTED) at the city.
    city, researcher = _pair(cluster, auto_agree=False)
    with researcher.client() as client:
        started = client.call(
            client.negotiations.StartNegotiation,
            pb.StartNegotiationRequest(
                peer="city-a", dataset_id=QUAY, usage_json='{"purpose": "research"}'
            ),
        ).negotiation
    requested = _wait(researcher, started.id, {"REQUESTED"}).negotiation
    before = _only_negotiation(city).negotiations[0]
    credentials = channel_credentials(cluster.tls(researcher.config_path))
    message = verification_message(
        consumer_pid=requested.consumer_pid, provider_pid=requested.provider_pid
    )

    # Execute: verification while REQUESTED (no agreement yet).
    with grpc.secure_channel(city.protocol, credentials) as channel:
        stub = negotiation_protocol_pb2_grpc.NegotiationProtocolServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.VerifyAgreement(
                negotiation_protocol_pb2.VerifyAgreementRequest(
                    message_id="m-1",
                    message_json=json.dumps(message.to_json()),
                    signature_json="{}",
                ),
                timeout=10,
            )
        with pytest.raises(grpc.RpcError) as foreign:
            stub.GetNegotiation(
                negotiation_protocol_pb2.GetNegotiationRequest(pid="urn:uuid:nope"), timeout=10
            )
    after = _only_negotiation(city).negotiations[0]

    # Assert
    error = from_rpc_error(caught.value)
    assert error.reason == "TRANSITION_INVALID", error
    assert "not allowed in state REQUESTED" in error.message
    assert after == before
    assert from_rpc_error(foreign.value).reason == "NEGOTIATION_NOT_FOUND"


def test_unknown_offer_and_peer_are_refused(cluster: Cluster) -> None:
    # Prepare
    _city, researcher = _pair(cluster)

    # Execute / Assert
    with researcher.client() as client:
        with pytest.raises(ConnectorError) as unknown_offer:
            client.call(
                client.negotiations.StartNegotiation,
                pb.StartNegotiationRequest(
                    peer="city-a",
                    dataset_id=QUAY,
                    offer_id="nope",
                    usage_json='{"purpose": "research"}',
                ),
            )
        with pytest.raises(ConnectorError) as no_purpose:
            client.call(
                client.negotiations.StartNegotiation,
                pb.StartNegotiationRequest(peer="city-a", dataset_id=QUAY, usage_json="{}"),
            )
        listed = client.call(client.negotiations.ListNegotiations, pb.ListNegotiationsRequest())
    assert unknown_offer.value.reason == "INVALID_ARGUMENT"
    assert no_purpose.value.violations[0].field == "usage.purpose"
    assert list(listed.negotiations) == []
