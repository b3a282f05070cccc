"""A group-based offer between real node processes: the city's peer config decides who is in.

The city offers its dataset to any member of ``eu-cities``. It lists two researchers as
peers, one with that membership and one without; each asks from its own node over
mutual TLS, so the city learns who asks only from the caller's certificate.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from connector.v1 import negotiation_management_pb2 as pb
from federation.flower.process import free_port
from tests.harness import Cluster, NodeProcess, hanse

pytestmark = pytest.mark.integration

QUAY = "akl-ped-107-quay-street"
EU = "urn:hanse:group:eu-cities"


def _city_with_group_offer(cluster: Cluster, ports: dict[str, int]) -> NodeProcess:
    """city-a: its offer needs membership eu-cities; researcher-a is a member, -b is not."""
    path = cluster.init("city-a", sensors=("107 Quay Street",))
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    (offer,) = document["datasets"][0]["offers"]
    offer["policy"]["permission"][0]["constraint"].append(
        {"leftOperand": "membership", "operator": "isAnyOf", "rightOperand": [EU]}
    )
    document["peers"] = [
        {
            "name": "researcher-a",
            "participant_id": "urn:hanse:researcher-a",
            "address": f"127.0.0.1:{ports['researcher-a']}",
            "memberships": [EU],
        },
        {
            "name": "researcher-b",
            "participant_id": "urn:hanse:researcher-b",
            "address": f"127.0.0.1:{ports['researcher-b']}",
        },
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return cluster.start(path)


def _request(researcher: NodeProcess) -> tuple[int, dict[str, Any], str]:
    done = hanse(
        "contract",
        "request",
        "city-a",
        QUAY,
        "--purpose",
        "research",
        "--wait",
        "--json",
        "--config",
        str(researcher.config_path),
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def _negotiations(node: NodeProcess) -> list[pb.Negotiation]:
    with node.client() as client:
        found = client.call(client.negotiations.ListNegotiations, pb.ListNegotiationsRequest())
    return list(found.negotiations)


def test_only_the_configured_member_of_the_group_gets_an_agreement(cluster: Cluster) -> None:
    # Prepare
    ports = {"researcher-a": free_port(), "researcher-b": free_port()}
    city = _city_with_group_offer(cluster, ports)
    member, outsider = (
        cluster.start(
            cluster.init(name, peers=(city,), edit={"protocol": {"listen": f"127.0.0.1:{port}"}})
        )
        for name, port in ports.items()
    )

    # Execute
    refused_code, refused, refused_err = _request(outsider)
    city_after_refusal = _negotiations(city)
    agreed_code, agreed, agreed_err = _request(member)

    # Assert
    assert refused_code == 1, refused_err
    assert refused["state"] == "TERMINATED"
    assert "POLICY_REFUSED" in refused["reason"]
    assert f"memberships [] include none of [{EU!r}]" in refused["reason"]
    assert city_after_refusal == []
    assert agreed_code == 0, agreed_err
    assert agreed["state"] == "FINALIZED", agreed
    (provider_side,) = _negotiations(city)
    assert provider_side.state == "FINALIZED"
    assert provider_side.counterparty_id == "urn:hanse:researcher-a"
    assert json.loads(provider_side.usage_json)["memberships"] == [EU]
    agreement = json.loads(provider_side.agreement_json)["agreement"]
    assert agreement["assignee"] == "urn:hanse:researcher-a"
    assert {"leftOperand": "membership", "operator": "isAnyOf", "rightOperand": [EU]} in (
        agreement["permission"][0]["constraint"]
    )
