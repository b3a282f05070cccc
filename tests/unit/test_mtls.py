"""Mutual TLS end to end: a real gRPC server behind PeerAuthenticationInterceptor."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from connector.clock import FixedClock
from connector.errors import from_rpc_error
from connector.identity import (
    IdentityError,
    LoadedTLS,
    TLSFiles,
    certificate_participant_id,
    certificate_summary,
    channel_credentials,
    fetch_server_participant_id,
    init_ca,
    issue_certificate,
    load_tls,
    peer_identity_from_auth_context,
    server_credentials,
)
from connector.interceptors.authentication import PeerAuthenticationInterceptor, current_peer

SERVICE = "hanse.test.v1.Whoami"
WHOAMI = f"/{SERVICE}/Whoami"
WHOAMI_STREAM = f"/{SERVICE}/WhoamiStream"
TIMEOUT = 5


@dataclass(frozen=True)
class Federation:
    root: Path
    ca_dir: Path
    server: LoadedTLS
    client: LoadedTLS


@dataclass(frozen=True)
class RunningServer:
    address: str


def _issue(federation_root: Path, ca_dir: Path, name: str, **kwargs: Any) -> LoadedTLS:
    files = issue_certificate(
        ca_dir, name, participant_id=f"urn:hanse:{name}", out_dir=federation_root / name, **kwargs
    )
    return load_tls(TLSFiles(cert=files.cert, key=files.key, trust_bundle=files.ca))


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    root = tmp_path_factory.mktemp("federation")
    ca = init_ca(root / "ca")
    return Federation(
        root=root,
        ca_dir=ca.cert.parent,
        server=_issue(root, ca.cert.parent, "city-a"),
        client=_issue(root, ca.cert.parent, "city-b"),
    )


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    peer = current_peer()
    return f"{peer.participant_id} {peer.fingerprint}".encode()


def _whoami_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for _ in range(2):
        yield current_peer().participant_id.encode()


@pytest.fixture(scope="module")
def server(federation: Federation) -> Iterator[RunningServer]:
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[PeerAuthenticationInterceptor()],
    )
    grpc_server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Whoami": grpc.unary_unary_rpc_method_handler(_whoami),
                    "WhoamiStream": grpc.unary_stream_rpc_method_handler(_whoami_stream),
                },
            )
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), grpc_server)
    port = grpc_server.add_secure_port("127.0.0.1:0", server_credentials(federation.server))
    grpc_server.start()
    yield RunningServer(address=f"127.0.0.1:{port}")
    grpc_server.stop(grace=None).wait(TIMEOUT)


def _call(address: str, credentials: grpc.ChannelCredentials) -> bytes:
    with grpc.secure_channel(address, credentials) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(WHOAMI)
        return call(b"", timeout=TIMEOUT)


def _client_with(federation: Federation, cert: LoadedTLS) -> grpc.ChannelCredentials:
    """Present ``cert`` but trust the federation CA, so only the server can object."""
    return grpc.ssl_channel_credentials(
        root_certificates=federation.client.trust_pem,
        private_key=cert.key_pem,
        certificate_chain=cert.cert_pem,
    )


def _without_uri_san(federation: Federation) -> LoadedTLS:
    """A certificate from the federation CA that names no participant (DNS SAN only)."""
    ca_key = serialization.load_pem_private_key(
        (federation.ca_dir / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((federation.ca_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anonymous")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("anonymous")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return LoadedTLS(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        trust_pem=federation.client.trust_pem,
    )


def test_valid_client_certificate_is_seen_as_its_uri_san(
    federation: Federation, server: RunningServer
) -> None:
    # Prepare
    credentials = channel_credentials(federation.client)

    # Execute
    response = _call(server.address, credentials)

    # Assert
    participant_id, fingerprint = response.decode().split(" ")
    assert participant_id == certificate_participant_id(federation.client.cert_pem)
    assert participant_id == "urn:hanse:city-b"
    assert fingerprint == certificate_summary(federation.client.cert_pem).fingerprint_sha256


def test_streaming_handler_sees_peer_for_every_response(
    federation: Federation, server: RunningServer
) -> None:
    # Prepare
    credentials = channel_credentials(federation.client)

    # Execute
    with grpc.secure_channel(server.address, credentials) as channel:
        call: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(WHOAMI_STREAM)
        responses = list(call(b"", timeout=TIMEOUT))

    # Assert
    assert responses == [b"urn:hanse:city-b", b"urn:hanse:city-b"]


def test_health_check_with_valid_client_certificate(
    federation: Federation, server: RunningServer
) -> None:
    # Prepare
    credentials = channel_credentials(federation.client)

    # Execute
    with grpc.secure_channel(server.address, credentials) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=TIMEOUT
        )

    # Assert
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_client_without_certificate_fails_handshake(
    federation: Federation, server: RunningServer
) -> None:
    # Prepare
    credentials = channel_credentials(federation.client, with_client_cert=False)

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _call(server.address, credentials)

    # Assert
    assert from_rpc_error(raised.value).code == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_foreign_ca_fails_handshake(
    federation: Federation, server: RunningServer, tmp_path: Path
) -> None:
    # Prepare
    foreign_ca = init_ca(tmp_path / "foreign-ca")
    foreign = _issue(tmp_path, foreign_ca.cert.parent, "city-b")

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _call(server.address, _client_with(federation, foreign))

    # Assert
    assert from_rpc_error(raised.value).code == grpc.StatusCode.UNAVAILABLE


def test_expired_client_certificate_fails_handshake(
    federation: Federation, server: RunningServer, tmp_path: Path
) -> None:
    # Prepare
    long_ago = FixedClock(datetime.now(UTC) - timedelta(days=400))
    expired = _issue(tmp_path, federation.ca_dir, "expired", clock=long_ago, valid_days=30)

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _call(server.address, _client_with(federation, expired))

    # Assert
    assert from_rpc_error(raised.value).code == grpc.StatusCode.UNAVAILABLE


def test_not_yet_valid_client_certificate_fails_handshake(
    federation: Federation, server: RunningServer, tmp_path: Path
) -> None:
    # Prepare
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    early = _issue(tmp_path, federation.ca_dir, "early", not_before=tomorrow)

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _call(server.address, _client_with(federation, early))

    # Assert
    assert from_rpc_error(raised.value).code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("method", [WHOAMI, "/grpc.health.v1.Health/Check"])
def test_client_certificate_without_uri_san_is_unauthenticated(
    federation: Federation, server: RunningServer, method: str
) -> None:
    # Prepare
    credentials = _client_with(federation, _without_uri_san(federation))
    request: bytes = (
        health_pb2.HealthCheckRequest().SerializeToString() if "Health" in method else b""
    )

    # Execute
    with grpc.secure_channel(server.address, credentials) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=TIMEOUT)

    # Assert
    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "PEER_IDENTITY_MISSING"
    assert not error.retryable
    assert method in error.message


def test_fetch_server_participant_id_reads_server_uri_san(
    federation: Federation, server: RunningServer
) -> None:
    # Prepare
    expected = certificate_participant_id(federation.server.cert_pem)

    # Execute
    participant_id = fetch_server_participant_id(server.address, federation.client)

    # Assert
    assert participant_id == expected == "urn:hanse:city-a"


def test_fetch_server_participant_id_refuses_untrusted_server(
    federation: Federation, server: RunningServer, tmp_path: Path
) -> None:
    # Prepare
    foreign_ca = init_ca(tmp_path / "foreign-ca")
    stranger = LoadedTLS(
        cert_pem=federation.client.cert_pem,
        key_pem=federation.client.key_pem,
        trust_pem=foreign_ca.cert.read_bytes(),
    )

    # Execute
    with pytest.raises(IdentityError) as raised:
        fetch_server_participant_id(server.address, stranger, timeout=TIMEOUT)

    # Assert
    assert server.address in str(raised.value)
    assert "not trusted" in str(raised.value)


def test_fetch_server_participant_id_unreachable(federation: Federation) -> None:
    # Prepare
    closed = _free_port_address()

    # Execute
    with pytest.raises(IdentityError) as raised:
        fetch_server_participant_id(closed, federation.client, timeout=TIMEOUT)

    # Assert
    assert f"cannot reach {closed}" in str(raised.value)


@pytest.mark.parametrize("address", ["no-port", "host:", "host:99999", ":80", "::1:80", "[]:80"])
def test_fetch_server_participant_id_malformed_address(
    federation: Federation, address: str
) -> None:
    # Prepare
    tls = federation.client

    # Execute
    with pytest.raises(IdentityError) as raised:
        fetch_server_participant_id(address, tls)

    # Assert
    assert repr(address) in str(raised.value)


def test_peer_identity_from_auth_context_needs_a_uri_san(federation: Federation) -> None:
    # Prepare
    anonymous = _without_uri_san(federation).cert_pem
    contexts: list[dict[str, list[bytes]]] = [
        {},
        {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]},
        {"x509_pem_cert": [b"garbage"]},
        {"x509_pem_cert": [anonymous], "peer_uri": [b"urn:hanse:spoofed"]},
    ]

    # Execute
    identities = [peer_identity_from_auth_context(c) for c in contexts]

    # Assert
    assert identities == [None, None, None, None]


def test_peer_identity_from_auth_context_caches_parsed_certificates(
    federation: Federation,
) -> None:
    # Prepare
    context = {"x509_pem_cert": [federation.client.cert_pem]}

    # Execute
    first = peer_identity_from_auth_context(context)
    second = peer_identity_from_auth_context({"x509_pem_cert": [bytes(federation.client.cert_pem)]})

    # Assert
    assert first is not None
    assert first.participant_id == "urn:hanse:city-b"
    assert second is first


def test_current_peer_outside_a_call_raises() -> None:
    # Prepare
    expected = "outside an authenticated call"

    # Execute
    with pytest.raises(RuntimeError) as raised:
        current_peer()

    # Assert
    assert expected in str(raised.value)


def _free_port_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"
