"""The mutual-TLS matrix against a real node process, and management credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from connector.clock import FixedClock
from connector.errors import from_rpc_error
from connector.identity import LoadedTLS, TLSFiles, init_ca, issue_certificate, load_tls
from connector.identity.tls import channel_credentials
from connector.interceptors.admin import bearer_metadata
from connector.v1 import (
    catalog_protocol_pb2,
    catalog_protocol_pb2_grpc,
    dataset_management_pb2,
    dataset_management_pb2_grpc,
)
from tests.harness import Cluster, NodeProcess

pytestmark = pytest.mark.integration


def _get_catalog(
    address: str, credentials: grpc.ChannelCredentials
) -> catalog_protocol_pb2.GetCatalogResponse:
    with grpc.secure_channel(address, credentials) as channel:
        stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(channel)
        return stub.GetCatalog(catalog_protocol_pb2.GetCatalogRequest(), timeout=10)


@pytest.fixture
def city(cluster: Cluster) -> NodeProcess:
    return cluster.start(cluster.init("city-a", sensors=("107 Quay Street",)))


def _foreign(cluster: Cluster) -> LoadedTLS:
    other = cluster.root / "foreign-pki"
    init_ca(other, common_name="Some other federation")
    files = issue_certificate(other, "intruder", participant_id="urn:hanse:intruder", out_dir=other)
    # Trust our federation's CA so the server side verifies, but present a foreign certificate.
    return load_tls(TLSFiles(files.cert, other / "intruder.key", cluster.pki / "ca.pem"))


def _dated(cluster: Cluster, name: str, start: datetime, days: int) -> LoadedTLS:
    out = cluster.root / "dated" / name
    files = issue_certificate(
        cluster.pki,
        name,
        participant_id=f"urn:hanse:{name}",
        out_dir=out,
        valid_days=days,
        clock=FixedClock(start),
        not_before=start,
    )
    return load_tls(TLSFiles(files.cert, out / f"{name}.key", files.ca))


def test_valid_peer_is_served_and_named_by_its_certificate(
    cluster: Cluster, city: NodeProcess
) -> None:
    # Prepare
    tls = cluster.identity("city-b", "urn:hanse:city-b")

    # Execute
    response = _get_catalog(city.protocol, channel_credentials(tls))

    # Assert
    assert response.catalog.participant_id == "urn:hanse:city-a"
    assert [d.id for d in response.catalog.datasets] == ["akl-ped-107-quay-street"]


@pytest.mark.parametrize(
    "case", ["no client certificate", "foreign CA", "expired", "not yet valid"]
)
def test_untrusted_peers_are_refused_at_the_handshake(
    cluster: Cluster, city: NodeProcess, case: str
) -> None:
    # Prepare
    now = datetime.now(UTC)
    if case == "no client certificate":
        credentials = channel_credentials(cluster.tls(city.config_path), with_client_cert=False)
    elif case == "foreign CA":
        credentials = channel_credentials(_foreign(cluster))
    elif case == "expired":
        credentials = channel_credentials(_dated(cluster, "expired", now - timedelta(days=30), 2))
    else:
        credentials = channel_credentials(_dated(cluster, "future", now + timedelta(days=2), 30))
    before = city.log()

    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        _get_catalog(city.protocol, credentials)

    # Assert
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "catalog served" not in city.log()[len(before) :]
    assert city.process.poll() is None, "a refused handshake must not disturb the node"


def test_management_requires_the_admin_token(cluster: Cluster, city: NodeProcess) -> None:
    # Prepare
    tls = cluster.tls(city.config_path)
    token = city.config.admin_token()
    credentials = channel_credentials(tls, with_client_cert=False)
    request = dataset_management_pb2.CreateDatasetRequest()
    request.dataset.id = "sneaky"
    outcomes = {}

    # Execute
    with grpc.secure_channel(city.management, credentials) as channel:
        stub = dataset_management_pb2_grpc.DatasetManagementServiceStub(channel)
        for label, metadata in (
            ("none", ()),
            ("wrong", bearer_metadata("x" * 43)),
            ("peer certificate only", ()),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.CreateDataset(request, timeout=10, metadata=metadata)
            outcomes[label] = from_rpc_error(caught.value)
        listed = stub.ListDatasets(
            dataset_management_pb2.ListDatasetsRequest(),
            timeout=10,
            metadata=bearer_metadata(token),
        )

    # Assert
    assert outcomes["none"].code == grpc.StatusCode.UNAUTHENTICATED
    assert outcomes["none"].reason == "CREDENTIAL_MISSING"
    assert outcomes["wrong"].reason == "CREDENTIAL_INVALID"
    assert outcomes["peer certificate only"].reason == "CREDENTIAL_MISSING"
    assert [d.id for d in listed.datasets] == ["akl-ped-107-quay-street"], "nothing changed"


def test_management_port_does_not_serve_the_protocol_api(
    cluster: Cluster, city: NodeProcess
) -> None:
    # Prepare
    tls = cluster.identity("city-b", "urn:hanse:city-b")

    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        _get_catalog(city.management, channel_credentials(tls))

    # Assert: the two APIs are separate servers.
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
