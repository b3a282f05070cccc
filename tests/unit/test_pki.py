"""Tests for the development federation PKI (connector.identity.pki)."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.clock import FixedClock
from connector.identity.pki import (
    BACKDATE,
    CaFiles,
    PkiError,
    init_ca,
    issue_certificate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ca(tmp_path: Path) -> CaFiles:
    return init_ca(tmp_path / "ca", clock=FixedClock(NOW))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_init_ca_writes_self_signed_p256_ca(tmp_path: Path) -> None:
    # Prepare
    clock = FixedClock(NOW)

    # Execute
    files = init_ca(tmp_path / "ca", common_name="Test CA", valid_days=10, clock=clock)

    # Assert
    cert = _cert(files.cert)
    key = load_pem_private_key(files.key.read_bytes(), password=None)
    assert files.cert == tmp_path / "ca" / "ca.pem"
    assert files.key == tmp_path / "ca" / "ca.key"
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test CA"
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=10)


def test_init_ca_key_file_is_private(ca: CaFiles) -> None:
    # Prepare
    key_path = ca.key

    # Execute
    mode = stat.S_IMODE(key_path.stat().st_mode)

    # Assert
    assert mode == 0o600


def test_init_ca_refuses_to_overwrite_and_leaves_files_unchanged(ca: CaFiles) -> None:
    # Prepare
    before = _snapshot(ca.cert.parent)

    # Execute
    with pytest.raises(PkiError, match="refusing to overwrite") as raised:
        init_ca(ca.cert.parent)

    # Assert
    assert str(ca.cert) in str(raised.value)
    assert _snapshot(ca.cert.parent) == before


def test_init_ca_force_replaces_the_ca(ca: CaFiles) -> None:
    # Prepare
    before = _snapshot(ca.cert.parent)

    # Execute
    init_ca(ca.cert.parent, force=True)

    # Assert
    after = _snapshot(ca.cert.parent)
    assert after.keys() == before.keys()
    assert after["ca.pem"] != before["ca.pem"]
    assert after["ca.key"] != before["ca.key"]
    assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600


def test_issue_certificate_properties(ca: CaFiles, tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "city-a"

    # Execute
    files = issue_certificate(
        ca.cert.parent,
        "city-a",
        participant_id="urn:hanse:city-a",
        out_dir=out,
        dns_names=("localhost", "city-a.hanse.svc"),
        ip_addresses=("127.0.0.1", "::1"),
        valid_days=30,
        clock=FixedClock(NOW),
    )

    # Assert
    cert = _cert(files.cert)
    ca_cert = _cert(ca.cert)
    key = load_pem_private_key(files.key.read_bytes(), password=None)
    assert (files.cert, files.key, files.ca) == (
        out / "city-a.pem",
        out / "city-a.key",
        out / "ca.pem",
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "city-a"
    assert cert.issuer == ca_cert.subject
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:hanse:city-a"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "city-a.hanse.svc"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW - BACKDATE + timedelta(days=30)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert files.ca.read_bytes() == ca.cert.read_bytes()


def test_issue_certificate_with_defaults_is_valid_now_for_localhost(ca: CaFiles) -> None:
    # Prepare
    before = datetime.now(UTC)

    # Execute
    files = issue_certificate(
        ca.cert.parent, "node", participant_id="https://node.example", out_dir=ca.cert.parent
    )

    # Assert
    cert = _cert(files.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["https://node.example"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.not_valid_before_utc <= before
    assert cert.not_valid_after_utc >= before + timedelta(days=364)
    assert files.ca == ca.cert


def test_issue_certificate_not_before_sets_validity_window(ca: CaFiles, tmp_path: Path) -> None:
    # Prepare
    start = datetime(2030, 1, 1, tzinfo=UTC)

    # Execute
    files = issue_certificate(
        ca.cert.parent,
        "future",
        participant_id="urn:hanse:future",
        out_dir=tmp_path / "out",
        not_before=start,
        valid_days=2,
    )

    # Assert
    cert = _cert(files.cert)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + timedelta(days=2)


def test_issue_certificate_past_clock_gives_expired_certificate(
    ca: CaFiles, tmp_path: Path
) -> None:
    # Prepare
    past = FixedClock(datetime.now(UTC) - timedelta(days=400))

    # Execute
    files = issue_certificate(
        ca.cert.parent,
        "old",
        participant_id="urn:hanse:old",
        out_dir=tmp_path / "out",
        valid_days=30,
        clock=past,
    )

    # Assert
    assert _cert(files.cert).not_valid_after_utc < datetime.now(UTC)


def test_issue_certificate_refuses_to_overwrite_and_leaves_files_unchanged(
    ca: CaFiles, tmp_path: Path
) -> None:
    # Prepare
    out = tmp_path / "out"
    issue_certificate(ca.cert.parent, "city-a", participant_id="urn:hanse:city-a", out_dir=out)
    before = _snapshot(out)

    # Execute
    with pytest.raises(PkiError, match="refusing to overwrite") as raised:
        issue_certificate(ca.cert.parent, "city-a", participant_id="urn:hanse:other", out_dir=out)

    # Assert
    assert str(out / "city-a.pem") in str(raised.value)
    assert _snapshot(out) == before


def test_issue_certificate_force_overwrites(ca: CaFiles, tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "out"
    issue_certificate(ca.cert.parent, "city-a", participant_id="urn:hanse:city-a", out_dir=out)

    # Execute
    files = issue_certificate(
        ca.cert.parent, "city-a", participant_id="urn:hanse:other", out_dir=out, force=True
    )

    # Assert
    san = _cert(files.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:hanse:other"]
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600


def test_issue_certificate_shares_identical_ca_copy(ca: CaFiles, tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "out"
    issue_certificate(ca.cert.parent, "city-a", participant_id="urn:hanse:city-a", out_dir=out)

    # Execute
    files = issue_certificate(
        ca.cert.parent, "city-b", participant_id="urn:hanse:city-b", out_dir=out
    )

    # Assert
    assert sorted(p.name for p in out.iterdir()) == [
        "ca.pem",
        "city-a.key",
        "city-a.pem",
        "city-b.key",
        "city-b.pem",
    ]
    assert files.ca.read_bytes() == ca.cert.read_bytes()


def test_issue_certificate_refuses_a_different_ca_copy(ca: CaFiles, tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "out"
    out.mkdir()
    (out / "ca.pem").write_bytes(b"another CA\n")

    # Execute
    with pytest.raises(PkiError, match="refusing to overwrite") as raised:
        issue_certificate(ca.cert.parent, "city-a", participant_id="urn:hanse:city-a", out_dir=out)

    # Assert
    assert str(out / "ca.pem") in str(raised.value)
    assert _snapshot(out) == {"ca.pem": b"another CA\n"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "City-A"}, "certificate name 'City-A'"),
        ({"name": "-city"}, "certificate name '-city'"),
        ({"name": "city_a"}, "certificate name 'city_a'"),
        ({"name": ""}, "certificate name ''"),
        ({"name": "a" * 64}, "certificate name"),
        ({"name": "../escape"}, "certificate name"),
        ({"participant_id": "city-a"}, "participant id 'city-a' is not an absolute URI"),
        ({"participant_id": ""}, "participant id '' is not an absolute URI"),
        ({"participant_id": "urn:hanse: city"}, "is not an absolute URI"),
        ({"participant_id": "1urn:x"}, "is not an absolute URI"),
        ({"ip_addresses": ("300.1.1.1",)}, "IP address '300.1.1.1'"),
        ({"ip_addresses": ("localhost",)}, "IP address 'localhost'"),
        ({"dns_names": ("bad name",)}, "DNS name 'bad name'"),
        ({"valid_days": 0}, "valid_days must be at least 1"),
        ({"not_before": datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
def test_issue_certificate_rejects_bad_input_and_writes_nothing(
    ca: CaFiles, tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    # Prepare
    out = tmp_path / "out"
    arguments: dict[str, object] = {
        "name": "city-a",
        "participant_id": "urn:hanse:city-a",
        **overrides,
    }

    # Execute
    with pytest.raises(PkiError) as raised:
        issue_certificate(ca.cert.parent, out_dir=out, **arguments)  # type: ignore[arg-type]

    # Assert
    assert message in str(raised.value)
    assert not out.exists()


def test_issue_certificate_without_ca_names_missing_file(tmp_path: Path) -> None:
    # Prepare
    ca_dir = tmp_path / "no-ca"

    # Execute
    with pytest.raises(PkiError) as raised:
        issue_certificate(
            ca_dir, "city-a", participant_id="urn:hanse:city-a", out_dir=tmp_path / "o"
        )

    # Assert
    assert str(ca_dir / "ca.pem") in str(raised.value)
    assert "init_ca" in str(raised.value)
    assert not (tmp_path / "o").exists()
