"""TLS material of a node: loading and checking it, gRPC credentials, certificate facts.

A node has one certificate and key (its identity, used as TLS server and client) and
a trust bundle (the federation CA certificates). :func:`load_tls` reads and checks all
three up front, so that a misconfigured node fails at start with a message naming the
file, not at the first handshake with an opaque TLS alert.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID


class IdentityError(Exception):
    """TLS material is unusable or a peer's identity cannot be established."""


@dataclass(frozen=True)
class TLSFiles:
    """Where a node's TLS material lives."""

    cert: Path
    """The node's certificate (PEM); intermediate certificates may follow the leaf."""
    key: Path
    """The private key of the certificate (unencrypted PEM)."""
    trust_bundle: Path
    """CA certificates (PEM) that peers' certificates must chain to."""


@dataclass(frozen=True)
class LoadedTLS:
    """TLS material read and checked by :func:`load_tls`."""

    cert_pem: bytes
    """The certificate chain, leaf first."""
    key_pem: bytes = field(repr=False)
    """The private key (kept out of ``repr``)."""
    trust_pem: bytes
    """The trust bundle."""


@dataclass(frozen=True)
class CertificateInfo:
    """What a person needs to know about a certificate."""

    common_name: str | None
    """Subject common name, if any."""
    participant_id: str | None
    """The first URI subject alternative name: the participant's identity."""
    issuer_common_name: str | None
    """Issuer common name, if any."""
    not_before: datetime
    """Start of validity (UTC)."""
    not_after: datetime
    """End of validity (UTC)."""
    fingerprint_sha256: str
    """SHA-256 of the DER encoding, lowercase hex."""


def load_tls(files: TLSFiles) -> LoadedTLS:
    """Read a node's certificate, key and trust bundle and check they fit together.

    Args:
        files: Paths of the three PEM files.

    Returns:
        The file contents.

    Raises:
        IdentityError: A file is missing, unreadable or not PEM, the key does not
            belong to the certificate, or the trust bundle holds no certificate.
    """
    cert_pem = _read(files.cert, "certificate")
    key_pem = _read(files.key, "private key")
    trust_pem = _read(files.trust_bundle, "trust bundle")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise IdentityError(
            f"certificate file {files.cert} holds no PEM certificate "
            "('-----BEGIN CERTIFICATE-----'); point it at the node's certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise IdentityError(
            f"private key file {files.key} is encrypted; give an unencrypted PEM key"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise IdentityError(
            f"private key file {files.key} holds no PEM private key ({exc}); "
            "point it at the key issued with the certificate"
        ) from None
    if _spki(key.public_key()) != _spki(chain[0].public_key()):
        raise IdentityError(
            f"private key {files.key} does not belong to certificate {files.cert}; "
            "use the key that was issued with that certificate"
        )
    try:
        x509.load_pem_x509_certificates(trust_pem)
    except ValueError:
        raise IdentityError(
            f"trust bundle {files.trust_bundle} holds no PEM certificate; "
            "point it at the federation CA certificate (ca.pem)"
        ) from None
    return LoadedTLS(cert_pem=cert_pem, key_pem=key_pem, trust_pem=trust_pem)


def server_credentials(
    tls: LoadedTLS, *, require_client_auth: bool = True
) -> grpc.ServerCredentials:
    """Server credentials for gRPC presenting the node's certificate.

    Args:
        tls: The node's TLS material.
        require_client_auth: Refuse clients without a certificate that chains to the
            trust bundle (mutual TLS). Keep it on for the protocol API.

    Returns:
        Credentials for ``server.add_secure_port``.
    """
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)],
        root_certificates=tls.trust_pem,
        require_client_auth=require_client_auth,
    )


def channel_credentials(
    tls: LoadedTLS, *, with_client_cert: bool = True
) -> grpc.ChannelCredentials:
    """Channel credentials for gRPC, verifying the server against the trust bundle.

    Args:
        tls: The node's TLS material.
        with_client_cert: Present the node's certificate to the server (mutual TLS).

    Returns:
        Credentials for ``grpc.secure_channel``.
    """
    if not with_client_cert:
        return grpc.ssl_channel_credentials(root_certificates=tls.trust_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=tls.trust_pem,
        private_key=tls.key_pem,
        certificate_chain=tls.cert_pem,
    )


def participant_id_of(cert: x509.Certificate) -> str | None:
    """The first URI subject alternative name of ``cert``, or ``None``."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_participant_id(cert_pem: bytes) -> str | None:
    """The participant id (first URI SAN) of the first certificate in ``cert_pem``.

    Raises:
        IdentityError: ``cert_pem`` holds no PEM certificate.
    """
    return participant_id_of(_first_certificate(cert_pem))


def certificate_summary(cert_pem: bytes) -> CertificateInfo:
    """Facts about the first certificate in ``cert_pem``, for people and logs.

    Raises:
        IdentityError: ``cert_pem`` holds no PEM certificate.
    """
    cert = _first_certificate(cert_pem)
    return CertificateInfo(
        common_name=_common_name(cert.subject),
        participant_id=participant_id_of(cert),
        issuer_common_name=_common_name(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=fingerprint_sha256(cert),
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(
            f"{what} file {path} not found; check the TLS paths in the node config "
            "(issue certificates with the development PKI if you have none)"
        ) from None
    except OSError as exc:
        raise IdentityError(
            f"{what} file {path} cannot be read ({exc.strerror}); check its permissions"
        ) from None


def _first_certificate(cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise IdentityError("no PEM certificate found") from None


def _common_name(name: x509.Name) -> str | None:
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode()


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
