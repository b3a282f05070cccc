"""Tests for the caches of connector.signing and the bounded cache they are built on.

Real certificates of a real CA (connector.identity); every test starts with empty caches.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from connector.bounded_cache import BoundedCache, CacheInfo
from connector.clock import FixedClock
from connector.identity import init_ca, issue_certificate
from connector.signing import (
    CERTIFICATE_CACHE_SIZE,
    Signature,
    SignedAgreement,
    SigningError,
    canonical_bytes,
    clear_signing_caches,
    sign_agreement,
    signing_cache_info,
    verify_signed_agreement,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROVIDER = "urn:hanse:city-a"
CONSUMER = "urn:hanse:researcher"


@dataclass(frozen=True)
class Party:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Federation:
    trust_pem: bytes
    provider: Party
    consumer: Party
    ca_dir: Path
    out: Path


def _issue(federation_ca: Path, out: Path, name: str, participant_id: str, **kw: Any) -> Party:
    files = issue_certificate(
        federation_ca, name, participant_id=participant_id, out_dir=out, clock=FixedClock(NOW), **kw
    )
    return Party(files.cert.read_bytes(), files.key.read_bytes())


def _federation(root: Path, **ca_kwargs: Any) -> Federation:
    ca = init_ca(root / "ca", clock=FixedClock(NOW), **ca_kwargs)
    out = root / "nodes"
    return Federation(
        trust_pem=ca.cert.read_bytes(),
        provider=_issue(ca.cert.parent, out, "city-a", PROVIDER),
        consumer=_issue(ca.cert.parent, out, "researcher", CONSUMER),
        ca_dir=ca.cert.parent,
        out=out,
    )


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    clear_signing_caches()
    yield
    clear_signing_caches()


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return _federation(tmp_path)


@pytest.fixture
def agreement() -> dict[str, Any]:
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
                        "leftOperand": "epsilon",
                        "operator": "lteq",
                        "rightOperand": {"@value": 2.5, "@type": "xsd:decimal"},
                    },
                ],
            }
        ],
    }


def _info() -> dict[str, CacheInfo]:
    return {info.name: info for info in signing_cache_info()}


def _sign(agreement: dict[str, Any], party: Party, role: str, at: datetime = NOW) -> Signature:
    return sign_agreement(
        agreement, role=role, cert_pem=party.cert_pem, key_pem=party.key_pem, clock=FixedClock(at)
    )


def _signed(agreement: dict[str, Any], federation: Federation) -> SignedAgreement:
    return SignedAgreement(
        agreement=agreement,
        signatures=(
            _sign(agreement, federation.provider, "provider"),
            _sign(agreement, federation.consumer, "consumer"),
        ),
    )


def _failed(report: Any) -> set[str]:
    return {check.name for check in report.checks if not check.ok}


# --- BoundedCache ---------------------------------------------------------------------------------


def test_bounded_cache_forgets_the_least_recently_used_entry() -> None:
    # Prepare
    cache: BoundedCache[str, int] = BoundedCache("numbers", 2)
    cache.put("a", 1)
    cache.put("b", 2)

    # Execute
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)

    # Assert
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert cache.info() == CacheInfo(name="numbers", size=2, capacity=2, hits=3, misses=1)
    cache.discard("a")
    cache.clear()
    assert cache.info() == CacheInfo(name="numbers", size=0, capacity=2, hits=0, misses=0)


def test_bounded_cache_refuses_a_capacity_below_one() -> None:
    with pytest.raises(ValueError, match="a cache needs a capacity of at least 1, not 0"):
        BoundedCache[str, int]("numbers", 0)


def test_bounded_cache_stays_bounded_under_threads() -> None:
    # Prepare
    cache: BoundedCache[tuple[int, int], int] = BoundedCache("numbers", 50)
    sizes: list[int] = []

    def work(thread: int) -> None:
        for i in range(2000):
            cache.put((thread, i), i)
            cache.get((thread, i - 1))
            if i % 100 == 0:
                sizes.append(cache.info().size)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]

    # Execute
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Assert
    assert max(sizes) <= 50
    assert cache.info().size == 50
    assert cache.info().hits + cache.info().misses == 4 * 2000


# --- canonical bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {"b": 1, "a": [True, False, None], "c": {"z": "x", "y": ""}},
        {"floats": [2.5, -0.1, 123456.789, 0.30000000000000004, 1e-4, 99.99]},
        {"integral floats": [0.0, -0.0, 1.0, 2.0, -3.0, 1e16, 9007199254740992.0]},
        {"exponents": [1e-5, 1e-7, 1e21, 1.5e300, 5e-324, -2.5e-9]},
        {"ints": [0, -1, 2**53 - 1, -(2**53 - 1)]},
        {"text": 'quote " backslash \\ newline \n tab \t nul \x00 \x1f del \x7f \u2028 é €'},
        {"\ue000": 1, "\U0001f600": 2, "é": 3, "z": 4, "Z": 5, "": 6},
        {"nested": [[[{"a": [{"b": 1.25}]}]]], "tuple": (1, "two")},
    ],
    ids=["plain", "floats", "integral-floats", "exponents", "ints", "text", "keys", "nested"],
)
def test_canonical_bytes_are_exactly_rfc8785(document: dict[str, Any]) -> None:
    # Execute
    data = canonical_bytes(document)

    # Assert
    assert data == rfc8785.dumps(document)


@pytest.mark.parametrize(
    "document",
    [{"n": float("nan")}, {"n": [float("inf")]}, {"n": 2**53}, {1: "non-string key"}],
    ids=["nan", "inf", "big-int", "int-key"],
)
def test_canonical_bytes_still_refuses_what_is_not_plain_json(document: dict[Any, Any]) -> None:
    with pytest.raises(SigningError, match="is not plain JSON and cannot be canonicalized"):
        canonical_bytes(document)


def test_canonical_bytes_still_refuses_deep_nesting() -> None:
    # Prepare: deep nesting behind a float that sends it to rfc8785, and plain deep nesting.
    deep: Any = "leaf"
    for _ in range(70):
        deep = [deep]

    # Execute / Assert
    with pytest.raises(SigningError, match="nests deeper than 64 levels"):
        canonical_bytes({"a": deep})
    with pytest.raises(SigningError, match="nests deeper than 64 levels"):
        canonical_bytes({"a": [1e-9, deep]})


# --- signing caches -------------------------------------------------------------------------------


def test_cached_signer_and_certificates_give_the_same_result(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Execute
    first = _sign(agreement, federation.provider, "provider")
    second = _sign(agreement, federation.provider, "provider")

    # Assert: the second signing parsed nothing again and signed with the same key.
    signers = _info()["signers"]
    assert (signers.size, signers.hits, signers.misses) == (1, 1, 1)
    assert first.certificate_pem == second.certificate_pem
    assert (first.participant_id, first.signed_at) == (second.participant_id, second.signed_at)
    consumer = _sign(agreement, federation.consumer, "consumer")
    for provider in (first, second):
        signed = SignedAgreement(agreement, (provider, consumer))
        assert verify_signed_agreement(signed, federation.trust_pem).ok


def test_cached_verification_gives_the_same_report(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)
    restored = SignedAgreement.from_json(signed.to_json())  # as a peer receives it

    # Execute
    first = verify_signed_agreement(restored, federation.trust_pem)
    before = _info()
    second = verify_signed_agreement(restored, federation.trust_pem)
    after = _info()

    # Assert
    assert first.ok, first.problem
    assert second == first
    assert after["chains"].hits == before["chains"].hits + 2
    assert after["signatures"].hits == before["signatures"].hits + 2
    assert after["trust_stores"].hits == before["trust_stores"].hits + 1
    assert (after["chains"].misses, after["signatures"].misses) == (
        before["chains"].misses,
        before["signatures"].misses,
    )


def test_a_different_pem_is_a_miss(federation: Federation, agreement: dict[str, Any]) -> None:
    # Prepare
    _sign(agreement, federation.provider, "provider")
    before = _info()

    # Execute: another party's certificate and key, then the same certificate with a comment.
    _sign(agreement, federation.consumer, "consumer")
    commented = Party(
        b"# the same certificate\n" + federation.provider.cert_pem, federation.provider.key_pem
    )
    _sign(agreement, commented, "provider")

    # Assert
    after = _info()
    assert after["signers"].misses == before["signers"].misses + 2
    assert after["signers"].size == 3
    assert after["certificates"].size == before["certificates"].size + 2


def test_certificate_cache_is_bounded(federation: Federation, agreement: dict[str, Any]) -> None:
    # Prepare: distinct PEM texts of one certificate (a comment line before it).
    signature = _sign(agreement, federation.provider, "provider")
    texts = [f"# copy {i}\n{signature.certificate_pem}" for i in range(CERTIFICATE_CACHE_SIZE + 20)]

    # Execute
    copies = [dataclasses.replace(signature, certificate_pem=text) for text in texts]

    # Assert
    info = _info()["certificates"]
    assert info.size == info.capacity == CERTIFICATE_CACHE_SIZE
    assert all(copy.certificate_pem.startswith("# copy") for copy in copies)


def test_expired_certificate_is_refused_after_an_earlier_success(
    tmp_path: Path, federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare: a provider certificate valid for two days; signed and verified while valid.
    short = _issue(federation.ca_dir, tmp_path / "short", "city-a-short", PROVIDER, valid_days=2)
    signed = SignedAgreement(
        agreement,
        (_sign(agreement, short, "provider"), _sign(agreement, federation.consumer, "consumer")),
    )
    assert verify_signed_agreement(signed, federation.trust_pem, at=NOW).ok
    before = _info()

    # Execute
    later = verify_signed_agreement(signed, federation.trust_pem, at=NOW + timedelta(days=3))

    # Assert: the cached chain was not used beyond the certificate's notAfter.
    assert not later.ok
    assert _failed(later) == {"provider.validity", "provider.chain"}
    assert later.problem is not None
    assert later.problem.startswith("provider certificate had expired at 2026-03-04T12:00:00Z")
    assert _info()["chains"].size == before["chains"].size
    with pytest.raises(SigningError, match="the certificate is not valid now"):
        _sign(agreement, short, "provider", NOW + timedelta(days=3))
    assert verify_signed_agreement(signed, federation.trust_pem, at=NOW).ok


def test_cached_chain_does_not_outlive_the_ca(tmp_path: Path, agreement: dict[str, Any]) -> None:
    # Prepare: the CA expires after 10 days, the node certificates after a year.
    federation = _federation(tmp_path, valid_days=10)
    signed = _signed(agreement, federation)
    assert verify_signed_agreement(signed, federation.trust_pem, at=NOW).ok

    # Execute
    later = verify_signed_agreement(signed, federation.trust_pem, at=NOW + timedelta(days=20))

    # Assert: the leaves are still valid, but their path to the CA is not.
    assert not later.ok
    assert _failed(later) == {"provider.chain", "consumer.chain"}


def test_foreign_trust_bundle_fails_after_an_earlier_success(
    tmp_path: Path, federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)
    assert verify_signed_agreement(signed, federation.trust_pem).ok
    foreign = init_ca(tmp_path / "foreign-ca", clock=FixedClock(NOW)).cert.read_bytes()

    # Execute
    report = verify_signed_agreement(signed, foreign)

    # Assert
    assert not report.ok
    assert _failed(report) == {"provider.chain", "consumer.chain"}


def test_changed_agreement_or_value_fails_after_an_earlier_success(
    federation: Federation, agreement: dict[str, Any]
) -> None:
    # Prepare
    signed = _signed(agreement, federation)
    assert verify_signed_agreement(signed, federation.trust_pem).ok
    tampered = {**agreement, "target": "urn:uuid:another-dataset"}
    provider, consumer = signed.signatures
    swapped = dataclasses.replace(provider, value=consumer.value)

    # Execute
    changed = verify_signed_agreement(
        dataclasses.replace(signed, agreement=tampered), federation.trust_pem
    )
    signed.agreement["permission"][0]["action"] = "distribute"  # changed in place
    in_place = verify_signed_agreement(signed, federation.trust_pem)
    signed.agreement["permission"][0]["action"] = "use"
    forged = verify_signed_agreement(
        dataclasses.replace(signed, signatures=(swapped, consumer)), federation.trust_pem
    )

    # Assert
    assert _failed(changed) == {"provider.signature", "consumer.signature"}
    assert _failed(in_place) == {"provider.signature", "consumer.signature"}
    assert _failed(forged) == {"provider.signature"}
    assert verify_signed_agreement(signed, federation.trust_pem).ok


def test_refusals_are_not_cached(federation: Federation, agreement: dict[str, Any]) -> None:
    # Prepare: the provider's certificate with the consumer's key.
    wrong = Party(federation.provider.cert_pem, federation.consumer.key_pem)

    # Execute / Assert: refused every time, nothing kept for the pair or the bad bundle.
    for _ in range(2):
        with pytest.raises(SigningError, match="the private key does not belong"):
            _sign(agreement, wrong, "provider")
        with pytest.raises(SigningError, match="trust bundle holds no PEM certificate"):
            verify_signed_agreement(_signed(agreement, federation), b"not pem")
    info = _info()
    assert (info["signers"].size, info["signers"].hits) == (2, 2)  # provider and consumer only
    assert info["trust_stores"].size == 0
