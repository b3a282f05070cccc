"""A development federation PKI: one CA, one certificate per node or operator.

Every Hanse node proves who it is with an X.509 certificate whose URI subject
alternative name is its participant id (``urn:hanse:city-a``). This module creates
such a federation for development and tests: :func:`init_ca` makes the CA and
:func:`issue_certificate` a node certificate signed by it, valid for both TLS server
and client use. Keys are ECDSA P-256 and written with mode ``0600``. Nothing is ever
overwritten unless ``force`` is given. A production federation brings its own CA;
the node only needs the PEM files.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.clock import Clock, SystemClock

CA_CERT_NAME = "ca.pem"
"""File name of the CA certificate, in the CA directory and next to each issued certificate."""

CA_KEY_NAME = "ca.key"
"""File name of the CA private key."""

BACKDATE = timedelta(minutes=5)
"""How far ``not_before`` is set before the clock's time, to tolerate clock skew."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")


class PkiError(Exception):
    """A certificate or key cannot be created; the message says why and what to do."""


@dataclass(frozen=True)
class CaFiles:
    """Where :func:`init_ca` wrote the federation CA."""

    cert: Path
    """The self-signed CA certificate (PEM), the federation's trust bundle."""
    key: Path
    """The CA private key (PEM, mode ``0600``)."""


@dataclass(frozen=True)
class IssuedFiles:
    """Where :func:`issue_certificate` wrote a node's certificate."""

    cert: Path
    """The node certificate (PEM)."""
    key: Path
    """The node private key (PEM, mode ``0600``)."""
    ca: Path
    """The CA certificate (PEM) to use as the node's trust bundle."""


def init_ca(
    out_dir: Path,
    *,
    common_name: str = "Hanse development federation CA",
    valid_days: int = 3650,
    clock: Clock | None = None,
    force: bool = False,
) -> CaFiles:
    """Create a self-signed federation CA in ``out_dir``.

    Args:
        out_dir: Directory for ``ca.pem`` and ``ca.key``; created if missing.
        common_name: Subject common name of the CA.
        valid_days: Days the CA certificate is valid.
        clock: Source of the current time (the system clock by default).
        force: Overwrite existing files.

    Returns:
        The paths written.

    Raises:
        PkiError: An argument is invalid, or a file exists and ``force`` is false.
    """
    _check_valid_days(valid_days)
    if not common_name.strip():
        raise PkiError("the CA common name must not be empty")
    files = CaFiles(cert=out_dir / CA_CERT_NAME, key=out_dir / CA_KEY_NAME)
    if not force:
        _refuse_existing(files.cert, files.key)
    now = (clock or SystemClock()).now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=True, crl_sign=True, digital_signature=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private(files.key, _key_pem(key))
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def issue_certificate(
    ca_dir: Path,
    name: str,
    *,
    participant_id: str,
    out_dir: Path,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    valid_days: int = 365,
    not_before: datetime | None = None,
    clock: Clock | None = None,
    force: bool = False,
) -> IssuedFiles:
    """Issue a certificate for a node (or an operator) signed by the CA in ``ca_dir``.

    The certificate is good for TLS server and client authentication. Its URI subject
    alternative name is ``participant_id``; that is the identity peers see.

    Args:
        ca_dir: Directory holding ``ca.pem`` and ``ca.key`` from :func:`init_ca`.
        name: File stem and subject common name: lowercase letters, digits and ``-``.
        participant_id: The participant's absolute URI, for example ``urn:hanse:city-a``.
        out_dir: Directory for ``<name>.pem``, ``<name>.key`` and ``ca.pem``.
        dns_names: DNS names the node's server answers on.
        ip_addresses: IP addresses the node's server answers on.
        valid_days: Days the certificate is valid, counted from ``not_before``.
        not_before: Start of validity; by default the clock's time less :data:`BACKDATE`.
        clock: Source of the current time (the system clock by default).
        force: Overwrite existing files.

    Returns:
        The paths written.

    Raises:
        PkiError: An argument is invalid, the CA cannot be loaded, or a file exists
            and ``force`` is false. Nothing is written then.
    """
    _check_name(name)
    _check_participant_id(participant_id)
    _check_valid_days(valid_days)
    dns = [_check_dns_name(d) for d in dns_names]
    ips = [_parse_ip(ip) for ip in ip_addresses]
    if not_before is not None and not_before.tzinfo is None:
        raise PkiError("not_before must be timezone-aware (for example datetime.now(UTC))")
    ca_cert, ca_key = _load_ca(ca_dir)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    files = IssuedFiles(
        cert=out_dir / f"{name}.pem", key=out_dir / f"{name}.key", ca=out_dir / CA_CERT_NAME
    )
    write_ca = not _has_identical(files.ca, ca_pem)
    if not force:
        _refuse_existing(files.cert, files.key, *([files.ca] if write_ca else []))

    start = not_before if not_before is not None else (clock or SystemClock()).now() - BACKDATE
    key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(participant_id)]
    san += [x509.DNSName(d) for d in dns]
    san += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=False, crl_sign=False, digital_signature=True),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private(files.key, _key_pem(key))
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    if write_ca:
        _write_public(files.ca, ca_pem)
    return files


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise PkiError(
            f"certificate name {name!r} is not allowed: use 1 to 63 lowercase letters, "
            "digits and '-', starting with a letter or digit (for example 'city-a')"
        )


def _check_participant_id(participant_id: str) -> None:
    if not _URI_SCHEME.fullmatch(participant_id):
        raise PkiError(
            f"participant id {participant_id!r} is not an absolute URI: give a scheme and "
            "no spaces, for example 'urn:hanse:city-a' or 'https://city-a.example'"
        )


def _check_valid_days(valid_days: int) -> None:
    if valid_days < 1:
        raise PkiError(f"valid_days must be at least 1, got {valid_days}")


def _check_dns_name(dns_name: str) -> str:
    if len(dns_name) > 253 or not _DNS_NAME.fullmatch(dns_name):
        raise PkiError(
            f"DNS name {dns_name!r} is not a valid host name (ASCII letters, digits, '-' and '.')"
        )
    return dns_name


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise PkiError(
            f"IP address {address!r} is not a valid IPv4 or IPv6 address (for example 127.0.0.1)"
        ) from None


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_CERT_NAME, ca_dir / CA_KEY_NAME
    for path in (cert_path, key_path):
        if not path.is_file():
            raise PkiError(f"CA file {path} not found: create the CA first (init_ca)")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"CA certificate {cert_path} is not a PEM certificate: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"CA key {key_path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"CA key {key_path} is not an ECDSA key; create the CA with init_ca")
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise PkiError(f"CA key {key_path} does not belong to the CA certificate {cert_path}")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise PkiError(f"{cert_path} is not a CA certificate (BasicConstraints CA=true missing)")
    return cert, key


def _public_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_usage(*, key_cert_sign: bool, crl_sign: bool, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _refuse_existing(*paths: Path) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise PkiError(
            f"refusing to overwrite {', '.join(existing)}: remove the file(s) or pass force"
        )


def _has_identical(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def _write_private(path: Path, content: bytes) -> None:
    _write_atomic(path, content, 0o600)


def _write_public(path: Path, content: bytes) -> None:
    _write_atomic(path, content, 0o644)


def _write_atomic(path: Path, content: bytes, mode: int) -> None:
    """Write ``content`` to a new file beside ``path`` with ``mode``, then rename it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
