"""Catalog across real node processes over mutual TLS."""

from __future__ import annotations

import json

import grpc
import pytest

from connector.dsp import catalog_to_dsp
from connector.errors import ConnectorError
from connector.identity import channel_credentials
from connector.v1 import catalog_protocol_pb2, catalog_protocol_pb2_grpc, peer_management_pb2
from tests.harness import Cluster, hanse

pytestmark = pytest.mark.integration

SENSORS_A = ("107 Quay Street", "Commerce Street West")
SENSORS_B = ("Te Ara Tahuhu Walkway",)


def test_researcher_reads_two_city_catalogs_through_its_node(
    cluster: Cluster, dsp_validate
) -> None:
    # Prepare
    city_a = cluster.start(cluster.init("city-a", sensors=SENSORS_A))
    city_b = cluster.start(cluster.init("city-b", sensors=SENSORS_B))
    researcher = cluster.start(cluster.init("researcher", peers=(city_a, city_b)))

    # Execute
    with researcher.client() as client:
        a = client.call(
            client.peers.GetPeerCatalog, peer_management_pb2.GetPeerCatalogRequest(peer="city-a")
        )
        b = client.call(
            client.peers.GetPeerCatalog,
            peer_management_pb2.GetPeerCatalogRequest(peer="urn:hanse:city-b"),
        )

    # Assert
    assert a.catalog.participant_id == "urn:hanse:city-a"
    assert [d.id for d in a.catalog.datasets] == [
        "akl-ped-107-quay-street",
        "akl-ped-commerce-street-west",
    ]
    assert [d.id for d in b.catalog.datasets] == ["akl-ped-te-ara-tahuhu-walkway"]
    for dataset in (*a.catalog.datasets, *b.catalog.datasets):
        assert not dataset.source.path, "the catalog must never reveal where rows live"
        assert dataset.columns[0].name == "timestamp"
        assert json.loads(dataset.offers[0].policy_json)["@type"] == "Offer"
        assert dataset.offers[0].auto_agree is False
    dsp_validate(catalog_to_dsp(a.catalog), "catalog/catalog-schema.json")
    dsp_validate(catalog_to_dsp(b.catalog), "catalog/catalog-schema.json")


def test_cli_catalog_prints_table_and_dsp_json(cluster: Cluster, dsp_validate) -> None:
    # Prepare
    city = cluster.start(cluster.init("city-a", sensors=SENSORS_A))
    researcher = cluster.start(cluster.init("researcher", peers=(city,)))
    config = str(researcher.config_path)

    # Execute
    table = hanse("catalog", "city-a", "--config", config)
    as_json = hanse("catalog", "city-a", "--json", env={"HANSE_CONFIG": config})

    # Assert
    assert table.returncode == 0, table.stderr
    assert "akl-ped-107-quay-street" in table.stdout
    assert "purpose isAnyOf" in table.stdout
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    dsp_validate(document, "catalog/catalog-schema.json")
    assert document["participantId"] == "urn:hanse:city-a"
    assert {d["@id"] for d in document["dataset"]} == {
        "akl-ped-107-quay-street",
        "akl-ped-commerce-street-west",
    }


def test_catalog_pages_and_keyword_filter_over_mtls(cluster: Cluster) -> None:
    # Prepare
    city = cluster.start(cluster.init("city-a", sensors=SENSORS_A + SENSORS_B))
    peer_tls = cluster.identity("auditor", "urn:hanse:auditor")
    channel = grpc.secure_channel(city.protocol, channel_credentials(peer_tls))
    stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(channel)

    # Execute
    first = stub.GetCatalog(catalog_protocol_pb2.GetCatalogRequest(page_size=2), timeout=10)
    second = stub.GetCatalog(
        catalog_protocol_pb2.GetCatalogRequest(page_size=2, page_token=first.next_page_token),
        timeout=10,
    )
    none = stub.GetCatalog(catalog_protocol_pb2.GetCatalogRequest(keyword="weather"), timeout=10)
    channel.close()

    # Assert
    assert len(first.catalog.datasets) == 2 and first.next_page_token
    assert len(second.catalog.datasets) == 1 and not second.next_page_token
    ids = [d.id for d in (*first.catalog.datasets, *second.catalog.datasets)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert list(none.catalog.datasets) == []


def test_peer_errors_are_clear(cluster: Cluster) -> None:
    # Prepare: the researcher expects city-a's identity at city-b's address.
    city_a = cluster.start(cluster.init("city-a", sensors=SENSORS_A))
    city_b = cluster.start(cluster.init("city-b", sensors=SENSORS_B))
    researcher = cluster.start(
        cluster.init(
            "researcher",
            peers=(city_a,),
            edit={
                "peers": [
                    {
                        "name": "city-a",
                        "participant_id": "urn:hanse:city-a",
                        "address": city_b.protocol,
                    },
                    {"name": "gone", "participant_id": "urn:hanse:gone", "address": "127.0.0.1:1"},
                    {
                        "name": "city-b",
                        "participant_id": "urn:hanse:city-b",
                        "address": city_b.protocol,
                    },
                ]
            },
        )
    )
    errors: dict[str, ConnectorError] = {}

    # Execute
    with researcher.client() as client:
        for peer in ("city-a", "gone", "nobody"):
            with pytest.raises(ConnectorError) as caught:
                client.call(
                    client.peers.GetPeerCatalog,
                    peer_management_pb2.GetPeerCatalogRequest(peer=peer),
                )
            errors[peer] = caught.value
        with pytest.raises(ConnectorError) as missing:
            client.call(
                client.peers.GetPeerDataset,
                peer_management_pb2.GetPeerDatasetRequest(peer="city-b", dataset_id="no-such-data"),
            )
        found = client.call(
            client.peers.GetPeerDataset,
            peer_management_pb2.GetPeerDatasetRequest(
                peer="city-b", dataset_id="akl-ped-te-ara-tahuhu-walkway"
            ),
        )

    # Assert
    assert errors["city-a"].reason == "PEER_IDENTITY_MISMATCH"
    assert "urn:hanse:city-b" in errors["city-a"].message
    assert errors["gone"].reason == "PEER_UNAVAILABLE" and errors["gone"].retryable
    assert errors["nobody"].reason == "PEER_UNKNOWN"
    assert errors["nobody"].code == grpc.StatusCode.NOT_FOUND
    assert missing.value.reason == "DATASET_NOT_FOUND"
    assert found.dataset.id == "akl-ped-te-ara-tahuhu-walkway"
    cli = hanse("catalog", "nobody", "--config", str(researcher.config_path))
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines() == [
        "error: unknown peer 'nobody'; known peers: city-a, city-b, gone [PEER_UNKNOWN]"
    ]
