"""Tests for signed agreements (connector.signing), with real certificates of one federation."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft201909Validator
from referencing import Registry, Resource

from connector.clock import FixedClock
from connector.identity import init_ca, issue_certificate
from connector.signing import (
    Role,
    Signature,
    SignedAgreement,
    SigningError,
    agreement_digest,
    canonical_bytes,
    sign_agreement,
    verify_signed_agreement,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROVIDER = "urn:hanse:city-a"
CONSUMER = "urn:hanse:researcher"
DSP_BASE = "https://w3id.org/dspace/2025/1/"
AGREEMENT_SCHEMA = DSP_BASE + "negotiation/contract-schema.json#/definitions/Agreement"


@dataclass(frozen=True)
class Party:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Federation:
    trust_pem: bytes
    provider: Party
    consumer: Party
    make: Callable[..., Party]
    """``make(name, participant_id, **issue_certificate kwargs)``: another party of this CA."""


def _party(ca_dir: Path, out: Path, name: str, participant_id: str, **kwargs: Any) -> Party:
    files = issue_certificate(
        ca_dir, name, participant_id=participant_id, out_dir=out, clock=FixedClock(NOW), **kwargs
    )
    return Party(files.cert.read_bytes(), files.key.read_bytes())


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    ca = init_ca(tmp_path / "ca", clock=FixedClock(NOW))
    out = tmp_path / "nodes"

    def make(name: str, participant_id: str, **kwargs: Any) -> Party:
        return _party(ca.cert.parent, out, name, participant_id, **kwargs)

    return Federation(
        trust_pem=ca.cert.read_bytes(),
        provider=make("city-a", PROVIDER),
        consumer=make("researcher", CONSUMER),
        make=make,
    )


@pytest.fixture
def foreign_consumer(tmp_path: Path) -> Party:
    """A party with the consumer's participant id, certified by another federation's CA."""
    ca = init_ca(tmp_path / "foreign-ca", clock=FixedClock(NOW))
    return _party(ca.cert.parent, tmp_path / "foreign", "researcher", CONSUMER)


@pytest.fixture
def agreement() -> dict[str, Any]:
    """A DSP 2025-1 Agreement shaped like the specification's example."""
    return {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@id": "urn:uuid:e8dc8655-44c2-46ef-b701-4cffdc2faa44",
        "@type": "Agreement",
        "target": "urn:uuid:3dd1add4-4d2d-569e-d634-8394a8836d23",
        "timestamp": "2026-03-01T11:59:00Z",
        "assigner": PROVIDER,
        "assignee": CONSUMER,
        "permission": [
            {
                "action": "use",
                "constraint": [
                    {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"},
                    {
                        "leftOperand": "dateTime",
                        "operator": "lteq",
                        "rightOperand": {"@value": "2026-12-31T00:00:00Z", "@type": "xsd:dateTime"},
                    },
                    {
                        "and": [
                            {
                                "leftOperand": "maxRounds",
                                "operator": "lteq",
                                "rightOperand": {"@value": 50, "@type": "xsd:integer"},
                            },
                            {
                                "leftOperand": "epsilon",
                                "operator": "lteq",
                                "rightOperand": {"@value": 2.5, "@type": "xsd:decimal"},
                            },
                        ]
                    },
                ],
            }
        ],
    }


def _sign(agreement: dict[str, Any], party: Party, role: str, at: datetime = NOW) -> Signature:
    return sign_agreement(
        agreement, role=role, cert_pem=party.cert_pem, key_pem=party.key_pem, clock=FixedClock(at)
    )


def _signed(agreement: dict[str, Any], federation: Federation) -> SignedAgreement:
    return SignedAgreement(
        agreement=agreement,
        signatures=(
            _sign(agreement, federation.provider, "provider"),
            _sign(agreement, federation.consumer, "consumer", NOW + timedelta(hours=1)),
        ),
    )


def _forged(
    agreement: dict[str, Any], party: Party, role: Role, participant_id: str, signed_at: str
) -> Signature:
    """A signature made directly with the key, without sign_agreement's checks."""
    key = serialization.load_pem_private_key(party.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(canonical_bytes(agreement), ec.ECDSA(hashes.SHA256()))
    return Signature(
        participant_id=participant_id,
        role=role,
        algorithm="ES256",
        certificate_pem=party.cert_pem.decode(),
        value=base64.urlsafe_b64encode(der).rstrip(b"=").decode(),
        signed_at=signed_at,
    )


def _failed(report: Any) -> set[str]:
    return {check.name for check in report.checks if not check.ok}


def test_agreement_signed_by_both_parties_verifies(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert report.ok, report.problem
    assert report.problem is None
    assert [c.name for c in report.checks] == [
        f"{role}.{aspect}"
        for role in ("provider", "consumer")
        for aspect in ("present", "certificate", "validity", "chain", "signature", "identity")
    ]
    assert all(c.ok and c.detail for c in report.checks)
    provider, consumer = signed.signatures
    assert (provider.participant_id, provider.role, provider.algorithm) == (
        PROVIDER,
        "provider",
        "ES256",
    )
    assert (consumer.participant_id, consumer.role) == (CONSUMER, "consumer")
    assert provider.signed_at == "2026-03-01T12:00:00Z"
    assert consumer.signed_at == "2026-03-01T13:00:00Z"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", provider.value)
    assert provider.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")


def test_verification_needs_no_clock_and_holds_after_expiry(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare: the certificates expire a year after NOW; the signatures stay good.
    signed = _signed(agreement, federation)

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)
    at_later = verify_signed_agreement(signed, federation.trust_pem, at=NOW + timedelta(days=800))

    # Assert
    assert report.ok, report.problem
    assert not at_later.ok
    assert at_later.problem is not None
    assert at_later.problem.startswith("provider certificate had expired at 2028-")


def test_signed_agreement_validates_against_dsp_agreement_schema(
    federation: Federation, agreement: dict[str, Any], dsp_dir: Path
) -> None:
    # Prepare
    resources = [
        (
            DSP_BASE + path.relative_to(dsp_dir).as_posix(),
            Resource.from_contents(json.loads(path.read_text(encoding="utf-8"))),
        )
        for path in dsp_dir.rglob("*-schema.json")
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    validator = Draft201909Validator({"$ref": AGREEMENT_SCHEMA}, registry=registry)
    document = json.loads(json.dumps(_signed(agreement, federation).to_json()))

    # Execute
    errors = list(validator.iter_errors(document["agreement"]))
    broken = list(validator.iter_errors({**document["agreement"], "@type": "Offer"}))

    # Assert
    assert errors == []
    assert document["agreement"] == agreement
    assert broken, "the schema check must be able to fail"


def test_canonical_form_ignores_key_order_and_whitespace(agreement: dict[str, Any]) -> None:
    # Prepare
    def reversed_keys(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: reversed_keys(node[k]) for k in reversed(list(node))}
        if isinstance(node, list):
            return [reversed_keys(v) for v in node]
        return node

    reordered = json.loads(json.dumps(reversed_keys(agreement), indent=4))
    changed = copy.deepcopy(agreement)
    changed["permission"][0]["constraint"][0]["rightOperand"] = "marketing"

    # Execute
    digest = agreement_digest(agreement)

    # Assert
    assert list(reordered) != list(agreement)
    assert canonical_bytes(reordered) == canonical_bytes(agreement)
    assert agreement_digest(reordered) == digest
    assert agreement_digest(changed) != digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert canonical_bytes({"b": 1, "a": [1.0, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_canonical_bytes_refuses_what_is_not_plain_json() -> None:
    # Prepare
    nested: dict[str, Any] = {}
    node = nested
    for _ in range(100):
        node["x"] = {}
        node = node["x"]

    # Execute / Assert
    with pytest.raises(SigningError, match="cannot be canonicalized"):
        canonical_bytes({"epsilon": float("nan")})
    with pytest.raises(SigningError, match="nests deeper"):
        canonical_bytes(nested)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set(("@id",), "urn:uuid:00000000-0000-0000-0000-000000000000"),
        _set(("target",), "urn:uuid:another-dataset"),
        _set(("timestamp",), "2026-03-01T11:59:01Z"),
        _set(("assigner",), "urn:hanse:city-b"),
        _set(("assignee",), "urn:hanse:someone-else"),
        _set(("permission", 0, "action"), "distribute"),
        _set(("permission", 0, "constraint", 0, "rightOperand"), "marketing"),
        _set(("permission", 0, "constraint", 2, "and", 0, "rightOperand", "@value"), 51),
        _set(("prohibition",), [{"action": "distribute"}]),
    ],
    ids=[
        "id",
        "target",
        "timestamp",
        "assigner",
        "assignee",
        "action",
        "purpose",
        "rounds",
        "added-rule",
    ],
)
def test_changed_agreement_fails_both_signatures(
    federation: Federation, agreement: dict[str, Any], change: Callable[[dict[str, Any]], None]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)
    tampered = copy.deepcopy(signed.agreement)
    change(tampered)

    # Execute
    report = verify_signed_agreement(
        dataclasses.replace(signed, agreement=tampered), federation.trust_pem
    )

    # Assert
    assert not report.ok
    assert report.problem == (
        "provider signature does not match the agreement: the agreement was changed after "
        "signing, or it was signed with another certificate's key"
    )
    assert {"provider.signature", "consumer.signature"} <= _failed(report)


def test_consumer_signature_over_another_agreement_is_named(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    other = copy.deepcopy(agreement)
    other["permission"][0]["constraint"][0]["rightOperand"] = "marketing"
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(
            _sign(agreement, federation.provider, "provider"),
            _sign(other, federation.consumer, "consumer"),
        ),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem is not None
    assert report.problem.startswith("consumer signature does not match the agreement")
    assert _failed(report) == {"consumer.signature"}


def test_swapped_roles_fail_identity(federation: Federation, agreement: dict[str, Any]) -> None:
    # Prepare
    provider, consumer = _signed(agreement, federation).signatures
    swapped = SignedAgreement(
        agreement=agreement,
        signatures=(
            dataclasses.replace(provider, role="consumer"),
            dataclasses.replace(consumer, role="provider"),
        ),
    )

    # Execute
    report = verify_signed_agreement(swapped, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem == (
        f"provider certificate names {CONSUMER}, but the agreement's assigner is {PROVIDER}: "
        "the provider must sign with its own certificate"
    )
    assert _failed(report) == {"provider.identity", "consumer.identity"}


def test_signing_in_the_wrong_role_is_refused(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Execute / Assert
    with pytest.raises(SigningError, match="only the consumer can sign as consumer"):
        _sign(agreement, federation.provider, "consumer")
    with pytest.raises(SigningError, match="role must be 'provider' or 'consumer'"):
        _sign(agreement, federation.provider, "aggregator")


def test_certificate_from_a_foreign_ca_fails_chain(
    federation: Federation, agreement: dict[str, Any], foreign_consumer: Party
) -> None:
    # Prepare
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(
            _sign(agreement, federation.provider, "provider"),
            _sign(agreement, foreign_consumer, "consumer"),
        ),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem is not None
    assert report.problem.startswith(
        "consumer certificate does not chain to a CA in the trust bundle"
    )
    assert _failed(report) == {"consumer.chain"}


def test_signer_who_is_not_the_assigner_fails_identity(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare: city-b is a member of the federation, but not this agreement's provider.
    city_b = federation.make("city-b", "urn:hanse:city-b")
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(
            _forged(agreement, city_b, "provider", "urn:hanse:city-b", "2026-03-01T12:00:00Z"),
            _sign(agreement, federation.consumer, "consumer"),
        ),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem == (
        f"provider certificate names urn:hanse:city-b, but the agreement's assigner is "
        f"{PROVIDER}: the provider must sign with its own certificate"
    )
    assert _failed(report) == {"provider.identity"}
    with pytest.raises(SigningError, match="the certificate names urn:hanse:city-b"):
        _sign(agreement, city_b, "provider")


def test_participant_id_that_disagrees_with_the_certificate_fails_identity(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    provider, consumer = _signed(agreement, federation).signatures
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(provider, dataclasses.replace(consumer, participant_id="urn:hanse:other")),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem == (
        f"consumer signature claims to be by urn:hanse:other, but its certificate names {CONSUMER}"
    )


def test_missing_consumer_signature_fails(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    provider, _ = _signed(agreement, federation).signatures

    # Execute
    report = verify_signed_agreement(
        SignedAgreement(agreement=agreement, signatures=(provider,)), federation.trust_pem
    )

    # Assert
    assert not report.ok
    assert report.problem == "there is no consumer signature; both provider and consumer must sign"
    assert _failed(report) == {"consumer.present"}


def test_duplicated_provider_signature_fails(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    provider, consumer = _signed(agreement, federation).signatures

    # Execute
    report = verify_signed_agreement(
        SignedAgreement(agreement=agreement, signatures=(provider, consumer, provider)),
        federation.trust_pem,
    )

    # Assert
    assert not report.ok
    assert report.problem == "there are 2 provider signatures; exactly one is allowed"
    assert _failed(report) == {"provider.present"}


def test_certificate_expired_at_signing_time(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare: valid for a year, ending a month before NOW.
    expired = federation.make(
        "city-a-old", PROVIDER, not_before=NOW - timedelta(days=395), valid_days=365
    )
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(
            _forged(agreement, expired, "provider", PROVIDER, "2026-03-01T12:00:00Z"),
            _sign(agreement, federation.consumer, "consumer"),
        ),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem == (
        "provider certificate had expired when it signed (2026-03-01T12:00:00Z): "
        "it was valid until 2026-01-30T12:00:00Z"
    )
    assert _failed(report) == {"provider.validity", "provider.chain"}
    with pytest.raises(SigningError, match="the certificate is not valid now"):
        _sign(agreement, expired, "provider")


def test_signature_dated_before_the_certificate_fails(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(
            _forged(agreement, federation.provider, "provider", PROVIDER, "2025-06-01T00:00:00Z"),
            _sign(agreement, federation.consumer, "consumer"),
        ),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert report.problem is not None
    assert report.problem.startswith("provider certificate was not yet valid when it signed")


def test_signing_with_a_key_that_does_not_match_the_certificate_is_refused(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Execute / Assert
    with pytest.raises(SigningError, match="private key does not belong to the certificate"):
        sign_agreement(
            agreement,
            role="provider",
            cert_pem=federation.provider.cert_pem,
            key_pem=federation.consumer.key_pem,
            clock=FixedClock(NOW),
        )
    with pytest.raises(SigningError, match="not a PEM private key"):
        sign_agreement(
            agreement,
            role="provider",
            cert_pem=federation.provider.cert_pem,
            key_pem=b"not a key",
            clock=FixedClock(NOW),
        )


def test_signing_a_malformed_agreement_is_refused(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    without_assignee = {k: v for k, v in agreement.items() if k != "assignee"}

    # Execute / Assert
    with pytest.raises(SigningError, match="'assignee' must be a non-empty string"):
        _sign(without_assignee, federation.provider, "provider")
    with pytest.raises(SigningError, match="@type must be 'Agreement'"):
        _sign({**agreement, "@type": "Offer"}, federation.provider, "provider")


def test_garbage_signature_value_fails_without_raising(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    provider, consumer = _signed(agreement, federation).signatures
    signed = SignedAgreement(
        agreement=agreement,
        signatures=(dataclasses.replace(provider, value="AAAA"), consumer),
    )

    # Execute
    report = verify_signed_agreement(signed, federation.trust_pem)

    # Assert
    assert not report.ok
    assert _failed(report) == {"provider.signature"}


def test_json_round_trip_keeps_a_verifiable_agreement(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)

    # Execute
    text = json.dumps(signed.to_json(), indent=2)
    restored = SignedAgreement.from_json(json.loads(text))

    # Assert
    assert restored == signed
    assert restored.digest == agreement_digest(agreement)
    assert verify_signed_agreement(restored, federation.trust_pem).ok
    document = json.loads(text)
    assert set(document) == {"agreement", "signatures"}
    assert document["agreement"] == agreement
    assert document["signatures"][0] == {
        "role": "provider",
        "participantId": PROVIDER,
        "algorithm": "ES256",
        "certificatePem": signed.signatures[0].certificate_pem,
        "value": signed.signatures[0].value,
        "signedAt": "2026-03-01T12:00:00Z",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [d], "a signed agreement is a JSON object with 'agreement' and 'signatures'"),
        (lambda d: {"agreement": d["agreement"]}, "signed agreement lacks 'signatures'"),
        (lambda d: {**d, "extra": 1}, "unknown signed-agreement field(s): extra"),
        (lambda d: {**d, "signatures": {}}, "'signatures' must be a JSON array, not an object"),
        (lambda d: {**d, "agreement": "x"}, "the agreement must be a JSON object, not a string"),
        (
            lambda d: {**d, "agreement": {**d["agreement"], "@type": "Offer"}},
            "the agreement's @type must be 'Agreement', not 'Offer'",
        ),
        (
            lambda d: {**d, "agreement": {**d["agreement"], "assigner": 7}},
            "the agreement's 'assigner' must be a non-empty string",
        ),
        (
            lambda d: {**d, "agreement": {**d["agreement"], "epsilon": float("inf")}},
            "cannot be canonicalized",
        ),
        (lambda d: {**d, "signatures": [None]}, "signatures[0]: a signature is a JSON object"),
        (_set(("signatures", 1, "role"), "admin"), "signatures[1]: signature role must be"),
        (_set(("signatures", 0, "algorithm"), "RS256"), "signature algorithm 'RS256'"),
        (_set(("signatures", 0, "value"), "abc="), "not base64url without padding"),
        (_set(("signatures", 0, "value"), 5), "field 'value' must be a string, not a number"),
        (_set(("signatures", 0, "certificatePem"), "nope"), "certificatePem holds no PEM"),
        (_set(("signatures", 0, "certificatePem"), "zertifikat \u00e4"), "must be ASCII PEM"),
        (_set(("signatures", 0, "signedAt"), "yesterday"), "not an ISO 8601 time"),
        (_set(("signatures", 0, "signedAt"), "2026-03-01T12:00:00"), "names no time zone"),
        (_set(("signatures", 0, "participantId"), ""), "'participantId' must be a non-empty"),
        (_set(("signatures", 0, "note"), "hi"), "signatures[0]: unknown signature field(s): note"),
    ],
    ids=lambda value: "" if callable(value) else re.sub(r"\W+", "-", value)[:40],
)
def test_malformed_json_is_refused_with_a_clear_message(
    federation: Federation,
    agreement: dict[str, Any],
    change: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    # Prepare
    document = _signed(agreement, federation).to_json()
    del_value = change(document)
    data = document if del_value is None else del_value

    # Execute / Assert
    with pytest.raises(SigningError, match=re.escape(message)):
        SignedAgreement.from_json(data)


def test_missing_signature_field_is_named(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    document = _signed(agreement, federation).to_json()
    del document["signatures"][1]["value"]

    # Execute / Assert
    with pytest.raises(
        SigningError, match=re.escape("signatures[1]: signature lacks field(s): value")
    ):
        SignedAgreement.from_json(document)


def test_unusable_trust_bundle_or_naive_time_raises(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)

    # Execute / Assert
    with pytest.raises(SigningError, match="trust bundle holds no PEM certificate"):
        verify_signed_agreement(signed, b"not pem")
    with pytest.raises(SigningError, match="'at' must be timezone-aware"):
        verify_signed_agreement(signed, federation.trust_pem, at=datetime(2026, 3, 1))
