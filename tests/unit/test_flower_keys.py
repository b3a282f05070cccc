"""Tests for the node key in the forms Flower's SuperNode authentication takes
(federation.flower.keys)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_ssh_private_key,
)
from cryptography.x509.oid import NameOID
from flwr.supercore.primitives.asymmetric import bytes_to_public_key, public_key_to_bytes

from connector.clock import FixedClock
from connector.identity.pki import IssuedFiles, init_ca, issue_certificate
from federation.flower.keys import (
    NodeKeyError,
    public_key_pem_of_certificate,
    write_openssh_private_key,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def node(tmp_path: Path) -> IssuedFiles:
    clock = FixedClock(NOW)
    init_ca(tmp_path / "ca", clock=clock)
    return issue_certificate(
        tmp_path / "ca",
        "city-a",
        participant_id="urn:hanse:city-a",
        out_dir=tmp_path / "city-a",
        clock=clock,
    )


def _ec_private(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-ec")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# --- write_openssh_private_key ------------------------------------------------------------------


def test_the_openssh_key_is_the_node_key_and_private(node: IssuedFiles, tmp_path: Path) -> None:
    # Prepare
    target = tmp_path / "state" / "deeper" / "supernode.key"

    # Execute
    written = write_openssh_private_key(node.key.read_bytes(), target)

    # Assert
    assert written == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = target.read_bytes()
    assert data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    loaded = load_ssh_private_key(data, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    original = _ec_private(node.key)
    assert loaded.private_numbers() == original.private_numbers()
    assert public_key_to_bytes(loaded.public_key()) == public_key_to_bytes(original.public_key())


def test_an_existing_readable_file_is_replaced_and_made_private(
    node: IssuedFiles, tmp_path: Path
) -> None:
    # Prepare
    target = tmp_path / "supernode.key"
    target.write_bytes(b"an older, longer key file that must not leave a tail behind " * 10)
    target.chmod(0o644)

    # Execute
    write_openssh_private_key(node.key.read_bytes(), target)

    # Assert
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    loaded = load_ssh_private_key(target.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == _ec_private(node.key).private_numbers()


def test_the_same_key_written_twice_gives_a_key_flower_loads_both_times(
    node: IssuedFiles, tmp_path: Path
) -> None:
    # Prepare
    target = tmp_path / "supernode.key"
    write_openssh_private_key(node.key.read_bytes(), target)

    # Execute
    write_openssh_private_key(node.key.read_bytes(), target)

    # Assert
    loaded = load_ssh_private_key(target.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == _ec_private(node.key).private_numbers()


@pytest.mark.parametrize(
    ("key_pem", "message"),
    [
        (_rsa_pem(), "SuperNode authentication needs an elliptic-curve node key"),
        (
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "SuperNode authentication needs an elliptic-curve node key",
        ),
        (b"not a key at all", "cannot read the node key"),
        (b"", "cannot read the node key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "cannot read the node key",
        ),
    ],
    ids=["rsa", "ed25519", "garbage", "empty", "broken-pem"],
)
def test_a_key_flower_cannot_use_is_refused_and_nothing_is_written(
    key_pem: bytes, message: str, tmp_path: Path
) -> None:
    # Prepare
    target = tmp_path / "state" / "supernode.key"

    # Execute / Assert
    with pytest.raises(NodeKeyError, match=message):
        write_openssh_private_key(key_pem, target)
    assert not target.exists()
    assert not target.parent.exists()


def test_an_encrypted_key_is_refused_and_nothing_is_written(
    node: IssuedFiles, tmp_path: Path
) -> None:
    # Prepare
    encrypted = _ec_private(node.key).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    target = tmp_path / "supernode.key"

    # Execute / Assert
    with pytest.raises(NodeKeyError, match="cannot read the node key"):
        write_openssh_private_key(encrypted, target)
    assert not target.exists()


def test_a_refused_key_leaves_an_existing_file_as_it_was(tmp_path: Path) -> None:
    # Prepare
    target = tmp_path / "supernode.key"
    target.write_bytes(b"the key from before")

    # Execute / Assert
    with pytest.raises(NodeKeyError):
        write_openssh_private_key(_rsa_pem(), target)
    assert target.read_bytes() == b"the key from before"


# --- public_key_pem_of_certificate ------------------------------------------------------------


def test_the_public_key_is_the_certificate_key_in_flower_form(node: IssuedFiles) -> None:
    # Prepare
    cert_pem = node.cert.read_bytes()

    # Execute
    public_pem = public_key_pem_of_certificate(cert_pem)

    # Assert
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    expected = _ec_private(node.key).public_key()
    assert public_pem == public_key_to_bytes(expected)
    assert bytes_to_public_key(public_pem).public_numbers() == expected.public_numbers()


def test_a_certificate_as_text_gives_the_same_key(node: IssuedFiles) -> None:
    # Execute
    from_text = public_key_pem_of_certificate(node.cert.read_text())

    # Assert
    assert from_text == public_key_pem_of_certificate(node.cert.read_bytes())


def test_of_a_chain_the_first_certificate_counts(node: IssuedFiles) -> None:
    # Prepare
    chain = node.cert.read_bytes() + node.ca.read_bytes()

    # Execute
    public_pem = public_key_pem_of_certificate(chain)

    # Assert
    assert public_pem == public_key_to_bytes(_ec_private(node.key).public_key())


@pytest.mark.parametrize(
    "cert_pem",
    [
        b"not a certificate",
        "",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
    ids=["garbage", "empty", "broken-pem"],
)
def test_something_that_is_not_a_certificate_is_refused(cert_pem: str | bytes) -> None:
    # Execute / Assert
    with pytest.raises(NodeKeyError, match="cannot read the certificate"):
        public_key_pem_of_certificate(cert_pem)


def test_a_private_key_is_not_taken_for_a_certificate(node: IssuedFiles) -> None:
    # Execute / Assert
    with pytest.raises(NodeKeyError, match="cannot read the certificate"):
        public_key_pem_of_certificate(node.key.read_bytes())


@pytest.mark.parametrize(
    "key",
    [
        rsa.generate_private_key(public_exponent=65537, key_size=1024),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["rsa", "ed25519"],
)
def test_a_certificate_without_an_ec_key_is_refused(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
) -> None:
    # Prepare
    cert_pem = _self_signed(key)

    # Execute / Assert
    with pytest.raises(NodeKeyError, match="the certificate's key is not an elliptic-curve key"):
        public_key_pem_of_certificate(cert_pem)
