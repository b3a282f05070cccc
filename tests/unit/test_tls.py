"""Tests for loading and describing TLS material (connector.identity.tls)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from connector.clock import FixedClock
from connector.identity.pki import BACKDATE, init_ca, issue_certificate
from connector.identity.tls import (
    IdentityError,
    TLSFiles,
    certificate_participant_id,
    certificate_summary,
    load_tls,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def files(tmp_path: Path) -> TLSFiles:
    ca = init_ca(tmp_path / "ca", clock=FixedClock(NOW))
    issued = issue_certificate(
        ca.cert.parent,
        "city-a",
        participant_id="urn:hanse:city-a",
        out_dir=tmp_path / "city-a",
        clock=FixedClock(NOW),
    )
    return TLSFiles(cert=issued.cert, key=issued.key, trust_bundle=issued.ca)


def test_load_tls_returns_file_contents(files: TLSFiles) -> None:
    # Prepare
    expected = (files.cert.read_bytes(), files.key.read_bytes(), files.trust_bundle.read_bytes())

    # Execute
    loaded = load_tls(files)

    # Assert
    assert (loaded.cert_pem, loaded.key_pem, loaded.trust_pem) == expected


def test_loaded_tls_repr_hides_private_key(files: TLSFiles) -> None:
    # Prepare
    loaded = load_tls(files)

    # Execute
    text = repr(loaded)

    # Assert
    assert "PRIVATE KEY" not in text
    assert "key_pem" not in text
    assert "BEGIN CERTIFICATE" in text


@pytest.mark.parametrize("field", ["cert", "key", "trust_bundle"])
def test_load_tls_missing_file_is_named(files: TLSFiles, tmp_path: Path, field: str) -> None:
    # Prepare
    missing = tmp_path / "nowhere" / f"{field}.pem"
    broken = replace(files, **{field: missing})

    # Execute
    with pytest.raises(IdentityError) as raised:
        load_tls(broken)

    # Assert
    assert str(missing) in str(raised.value)
    assert "not found" in str(raised.value)


def test_load_tls_directory_instead_of_file_is_named(files: TLSFiles, tmp_path: Path) -> None:
    # Prepare
    broken = replace(files, key=tmp_path)

    # Execute
    with pytest.raises(IdentityError) as raised:
        load_tls(broken)

    # Assert
    assert str(tmp_path) in str(raised.value)
    assert "cannot be read" in str(raised.value)


@pytest.mark.parametrize(
    ("field", "content", "expected"),
    [
        ("cert", b"hello, not a certificate\n", "holds no PEM certificate"),
        ("key", b"hello, not a key\n", "holds no PEM private key"),
        ("trust_bundle", b"", "holds no PEM certificate"),
        ("trust_bundle", b"# just a comment\n", "holds no PEM certificate"),
    ],
)
def test_load_tls_non_pem_file_is_named(
    files: TLSFiles, tmp_path: Path, field: str, content: bytes, expected: str
) -> None:
    # Prepare
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    broken = replace(files, **{field: bad})

    # Execute
    with pytest.raises(IdentityError) as raised:
        load_tls(broken)

    # Assert
    assert str(bad) in str(raised.value)
    assert expected in str(raised.value)


def test_load_tls_certificate_as_key_is_refused(files: TLSFiles) -> None:
    # Prepare
    broken = replace(files, key=files.cert)

    # Execute
    with pytest.raises(IdentityError) as raised:
        load_tls(broken)

    # Assert
    assert f"private key file {files.cert} holds no PEM private key" in str(raised.value)


def test_load_tls_mismatched_key_names_both_files(files: TLSFiles, tmp_path: Path) -> None:
    # Prepare
    other = issue_certificate(
        files.trust_bundle.parent.parent / "ca",
        "city-b",
        participant_id="urn:hanse:city-b",
        out_dir=tmp_path / "city-b",
    )
    broken = replace(files, key=other.key)

    # Execute
    with pytest.raises(IdentityError) as raised:
        load_tls(broken)

    # Assert
    assert str(other.key) in str(raised.value)
    assert str(files.cert) in str(raised.value)
    assert "does not belong to" in str(raised.value)


def test_load_tls_encrypted_key_is_refused(files: TLSFiles, tmp_path: Path) -> None:
    # Prepare
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )

    # Execute
    with pytest.raises(IdentityError) as raised:
        load_tls(replace(files, key=encrypted))

    # Assert
    assert str(encrypted) in str(raised.value)
    assert "encrypted" in str(raised.value)


def test_certificate_summary_describes_node_certificate(files: TLSFiles) -> None:
    # Prepare
    cert_pem = files.cert.read_bytes()
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)

    # Execute
    info = certificate_summary(cert_pem)

    # Assert
    assert info.common_name == "city-a"
    assert info.participant_id == "urn:hanse:city-a"
    assert info.issuer_common_name == "Hanse development federation CA"
    assert info.not_before == NOW - BACKDATE
    assert info.not_after == NOW - BACKDATE + timedelta(days=365)
    assert info.fingerprint_sha256 == hashlib.sha256(der).hexdigest()


def test_certificate_participant_id_is_none_without_uri_san(files: TLSFiles) -> None:
    # Prepare
    ca_pem = files.trust_bundle.read_bytes()

    # Execute
    participant_id = certificate_participant_id(ca_pem)

    # Assert
    assert participant_id is None
    assert certificate_participant_id(files.cert.read_bytes()) == "urn:hanse:city-a"


def test_certificate_summary_refuses_non_pem() -> None:
    # Prepare
    garbage = b"not a certificate"

    # Execute
    with pytest.raises(IdentityError) as raised:
        certificate_summary(garbage)

    # Assert
    assert "no PEM certificate" in str(raised.value)
