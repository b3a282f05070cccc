"""Who is on the other end: a peer's identity from its verified TLS certificate.

A peer's identity is the URI subject alternative name of the certificate it
presented in the mutual-TLS handshake, and nothing else: never request metadata,
never the common name, never what gRPC's own SAN properties say. On the server side
it is read from the ``x509_pem_cert`` property of the gRPC auth context; on the
client side :func:`fetch_server_participant_id` reads it from the server's
certificate before a node talks to a peer.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from connector.identity.tls import IdentityError, LoadedTLS, fingerprint_sha256, participant_id_of

PEM_CERT_PROPERTY = "x509_pem_cert"
"""The auth-context property that holds the peer's verified leaf certificate (PEM)."""

_CACHE_SIZE = 256


@dataclass(frozen=True)
class PeerIdentity:
    """A peer authenticated by mutual TLS."""

    participant_id: str
    """The URI subject alternative name of the peer's certificate."""
    fingerprint: str
    """SHA-256 of the peer certificate's DER encoding, lowercase hex."""


def peer_identity_from_auth_context(
    auth_context: Mapping[str, Iterable[bytes]],
) -> PeerIdentity | None:
    """The peer's identity from a gRPC auth context, or ``None`` if it has none.

    Only the ``x509_pem_cert`` property is used; the certificate is parsed here and
    its first URI subject alternative name is the participant id. A connection
    without TLS, without a client certificate, or with a certificate that has no URI
    SAN has no identity. Parsed certificates are cached, since this runs per call.

    Args:
        auth_context: ``ServicerContext.auth_context()``: property name to values.

    Returns:
        The identity, or ``None``.
    """
    values = list(auth_context.get(PEM_CERT_PROPERTY, ()))
    if len(values) != 1:
        return None
    return _identity_of_pem(bytes(values[0]))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _identity_of_pem(cert_pem: bytes) -> PeerIdentity | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return None
    participant_id = participant_id_of(cert)
    if participant_id is None:
        return None
    return PeerIdentity(participant_id=participant_id, fingerprint=fingerprint_sha256(cert))


def fetch_server_participant_id(address: str, tls: LoadedTLS, *, timeout: float = 5.0) -> str:
    """Connect to a peer's server with mutual TLS and return its participant id.

    The server's certificate must chain to the trust bundle and name the host of
    ``address`` (DNS or IP subject alternative name), exactly as gRPC checks it. The
    node's own certificate is presented, so servers that require client certificates
    answer too.

    Args:
        address: ``host:port`` (``[v6addr]:port`` for IPv6).
        tls: The node's TLS material.
        timeout: Seconds for connecting and the handshake together.

    Returns:
        The first URI subject alternative name of the server's certificate.

    Raises:
        IdentityError: The address is malformed, the server cannot be reached, the
            handshake fails, or the certificate has no URI SAN.
    """
    host, port = _split_address(address)
    context = _client_context(tls)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as exc:
        raise IdentityError(
            f"server at {address} presented a certificate that is not trusted for "
            f"{host}: {exc.verify_message}; check the trust bundle and the server's SANs"
        ) from None
    except ssl.SSLError as exc:
        raise IdentityError(
            f"TLS handshake with {address} failed ({exc.reason or exc}); "
            "the server may not trust this node's certificate"
        ) from None
    except OSError as exc:
        raise IdentityError(
            f"cannot reach {address} ({exc.strerror or exc.__class__.__name__}); "
            "check the address and that the peer is running"
        ) from None
    if der is None:
        raise IdentityError(f"server at {address} presented no certificate")
    participant_id = participant_id_of(x509.load_der_x509_certificate(der))
    if participant_id is None:
        raise IdentityError(
            f"server at {address} has a certificate without a URI subject alternative "
            "name, so it names no participant; it is not a Hanse node certificate"
        )
    return participant_id


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise IdentityError(f"address {address!r} is not host:port (for example city-a:7443)")
    if ":" in host and not bracketed:
        raise IdentityError(
            f"address {address!r} is ambiguous: write IPv6 addresses as [addr]:port"
        )
    return host, int(port_text)


def _client_context(tls: LoadedTLS) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_verify_locations(cadata=tls.trust_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError) as exc:
        raise IdentityError(f"trust bundle cannot be used: {exc}") from None
    # The ssl module loads a key pair only from files: write them to a private
    # temporary directory for the moment it takes to load them.
    with tempfile.TemporaryDirectory(prefix="hanse-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(tls.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(tls.key_pem)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise IdentityError(f"own certificate and key cannot be used: {exc}") from None
    return context
