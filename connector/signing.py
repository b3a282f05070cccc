"""Signed agreements: both parties sign the DSP agreement, anyone can check it offline.

An agreement is signed over its canonical form: the DSP 2025-1 ``Agreement`` object
serialized with the JSON Canonicalization Scheme (RFC 8785), so key order and
whitespace never matter and a change to any value does. Each party signs those bytes
with the ECDSA P-256 key of its node certificate (SHA-256) and ships the certificate
with the signature, so a third party needs nothing but the federation's trust bundle
to check who signed: the certificate chains to a CA of the bundle, it was valid when
the signature was made, its URI subject alternative name is the agreement's
``assigner`` (the provider) or ``assignee`` (the consumer), and the signature matches
the canonical bytes.

The JSON form of a signed agreement (:meth:`SignedAgreement.to_json`)::

    {
      "agreement": {                         # the DSP Agreement, exactly as signed
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@id": "urn:uuid:...", "@type": "Agreement", "target": "urn:uuid:...",
        "assigner": "urn:hanse:city-a", "assignee": "urn:hanse:researcher",
        "timestamp": "2026-03-01T12:00:00Z", "permission": [...]
      },
      "signatures": [                        # exactly one per role
        {
          "role": "provider",                # or "consumer"
          "participantId": "urn:hanse:city-a",
          "algorithm": "ES256",              # ECDSA P-256 with SHA-256
          "certificatePem": "-----BEGIN CERTIFICATE-----...",  # leaf first,
                                             # intermediates may follow
          "value": "MEUCIQ...",              # base64url (no padding) of the DER
                                             # ECDSA signature over the canonical bytes
          "signedAt": "2026-03-01T12:00:00Z" # ISO 8601, UTC
        },
        {"role": "consumer", ...}
      ]
    }

To check a signature by hand: ``rfc8785.dumps(document["agreement"])`` gives the
signed bytes; the signature is DER-encoded (as OpenSSL writes it), not the raw
``r || s`` of JOSE, although the algorithm is named ``ES256``.

The signature covers the agreement only: ``role``, ``participantId`` and ``signedAt``
are not signed. The role and participant are bound anyway, because the certificate
must name the agreement's assigner or assignee; ``signedAt`` is the signer's claim of
when it signed and is used to check that the certificate was valid then.

Signing and verifying happen several times per negotiation, so what is costly and
depends only on immutable input is kept in bounded, thread-safe caches
(:func:`signing_cache_info`, :func:`clear_signing_caches`): certificates parsed from
their PEM bytes, a node's signing key checked against its certificate (keyed by both
PEM texts), trust bundles parsed into a store, and certificate chains found to chain to
a trust bundle. A chain is remembered with the time span in which every certificate of
its verified path is valid; a later check at a time outside that span is made afresh,
so a cached result never outlives a certificate's ``notAfter``. Signatures found to
match (or made here) are remembered by certificate, value and SHA-256 of the signed
bytes. Failures are never cached, and a changed agreement has other canonical bytes,
so it is checked afresh.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from connector.bounded_cache import BoundedCache, CacheInfo
from connector.clock import Clock, SystemClock
from connector.identity.tls import participant_id_of

Role = Literal["provider", "consumer"]
"""Which party a signature is from: the provider is the assigner, the consumer the assignee."""

ROLES: Final[tuple[Role, ...]] = ("provider", "consumer")
"""The roles that must each sign an agreement exactly once, in the order they are checked."""

ALGORITHM: Final = "ES256"
"""The only signature algorithm: ECDSA over P-256 with SHA-256 (DER-encoded signature)."""

PARTY_FIELD: Final[Mapping[str, str]] = {"provider": "assigner", "consumer": "assignee"}
"""The agreement field that names the party of each role."""

MAX_DEPTH: Final = 64
"""Deepest JSON nesting accepted in an agreement (it is canonicalized recursively)."""

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_WIDE_KEY = re.compile("[\ud800-\U0010ffff]")
_SAFE_INT = 2**53 - 1
_AGREEMENT_FIELDS = ("@id", "target", "assigner", "assignee")
_SIGNATURE_KEYS = frozenset(
    {"role", "participantId", "algorithm", "certificatePem", "value", "signedAt"}
)
_DOCUMENT_KEYS = frozenset({"agreement", "signatures"})

CERTIFICATE_CACHE_SIZE: Final = 256
"""Most certificate PEM texts whose parsed certificates are kept."""
SIGNER_CACHE_SIZE: Final = 16
"""Most (certificate, private key) pairs kept parsed and checked for signing."""
TRUST_STORE_CACHE_SIZE: Final = 16
"""Most trust bundles kept parsed."""
CHAIN_CACHE_SIZE: Final = 1024
"""Most (trust bundle, certificate chain) pairs whose verified validity span is kept."""
SIGNATURE_CACHE_SIZE: Final = 4096
"""Most (certificate, signature, signed bytes) triples known to match."""


@dataclass(frozen=True)
class _Signer:
    """A node's signing key, checked against its certificate."""

    key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    participant_id: str | None
    chain_pem: str
    """The certificate chain as a signature carries it (PEM, leaf first)."""


_certificates: BoundedCache[bytes, tuple[x509.Certificate, ...]] = BoundedCache(
    "certificates", CERTIFICATE_CACHE_SIZE
)
_signers: BoundedCache[tuple[bytes, bytes], _Signer] = BoundedCache("signers", SIGNER_CACHE_SIZE)
_trust_stores: BoundedCache[bytes, Store] = BoundedCache("trust_stores", TRUST_STORE_CACHE_SIZE)
_chains: BoundedCache[tuple[bytes, bytes], tuple[datetime, datetime]] = BoundedCache(
    "chains", CHAIN_CACHE_SIZE
)
_signatures: BoundedCache[tuple[str, str, bytes], bool] = BoundedCache(
    "signatures", SIGNATURE_CACHE_SIZE
)
_CACHES: Final = (_certificates, _signers, _trust_stores, _chains, _signatures)


class SigningError(Exception):
    """An agreement cannot be signed, or a signed agreement is malformed; the message says why."""


@dataclass(frozen=True)
class Signature:
    """One party's signature over the canonical form of an agreement.

    Construction checks the form of every field (not the signature itself) and raises
    :class:`SigningError` if one is malformed.
    """

    participant_id: str
    """The signer's participant id, as its certificate names it."""
    role: Role
    """``provider`` (the agreement's assigner) or ``consumer`` (its assignee)."""
    algorithm: str
    """Always :data:`ALGORITHM` (``ES256``)."""
    certificate_pem: str
    """The signer's certificate (PEM), leaf first; intermediate CA certificates may follow."""
    value: str
    """base64url without padding of the DER ECDSA signature over the canonical bytes."""
    signed_at: str
    """When the signer signed, ISO 8601 in UTC (``2026-03-01T12:00:00Z``)."""

    def __post_init__(self) -> None:
        _check_text(self.participant_id, "participantId")
        if self.role not in ROLES:
            raise SigningError(
                f"signature role must be 'provider' or 'consumer', not {self.role!r}"
            )
        if self.algorithm != ALGORITHM:
            raise SigningError(
                f"signature algorithm {self.algorithm!r} is not supported; only {ALGORITHM!r}"
            )
        _check_text(self.value, "value")
        if not _BASE64URL.fullmatch(self.value) or len(self.value) % 4 == 1:
            raise SigningError(
                "signature value is not base64url without padding (A-Z, a-z, 0-9, '-', '_')"
            )
        _check_text(self.certificate_pem, "certificatePem")
        _certificate_chain(_pem_bytes(self.certificate_pem), "certificatePem")
        _parse_time(self.signed_at, "signedAt")

    @property
    def signed_at_time(self) -> datetime:
        """:attr:`signed_at` as a timezone-aware datetime."""
        return _parse_time(self.signed_at, "signedAt")

    def to_json(self) -> dict[str, str]:
        """The JSON object of this signature (see the module docstring)."""
        return {
            "role": self.role,
            "participantId": self.participant_id,
            "algorithm": self.algorithm,
            "certificatePem": self.certificate_pem,
            "value": self.value,
            "signedAt": self.signed_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> Signature:
        """Read a signature from its JSON object.

        Raises:
            SigningError: ``data`` is not a well-formed signature object.
        """
        if not isinstance(data, Mapping):
            raise SigningError(f"a signature is a JSON object, not {_json_type(data)}")
        unknown = sorted(str(k) for k in data if k not in _SIGNATURE_KEYS)
        if unknown:
            raise SigningError(f"unknown signature field(s): {', '.join(unknown)}")
        missing = sorted(k for k in _SIGNATURE_KEYS if k not in data)
        if missing:
            raise SigningError(f"signature lacks field(s): {', '.join(missing)}")
        for key in sorted(_SIGNATURE_KEYS):
            if not isinstance(data[key], str):
                raise SigningError(
                    f"signature field {key!r} must be a string, not {_json_type(data[key])}"
                )
        return cls(
            participant_id=data["participantId"],
            role=data["role"],
            algorithm=data["algorithm"],
            certificate_pem=data["certificatePem"],
            value=data["value"],
            signed_at=data["signedAt"],
        )


@dataclass(frozen=True)
class SignedAgreement:
    """A DSP agreement with the signatures of its parties.

    Construction checks that ``agreement`` is a DSP ``Agreement`` naming its target and
    both parties, and raises :class:`SigningError` if not. Whether the signatures are
    complete and genuine is for :func:`verify_signed_agreement`.
    """

    agreement: dict[str, Any]
    """The DSP 2025-1 ``Agreement`` object, exactly as signed."""
    signatures: tuple[Signature, ...]
    """The parties' signatures; a complete one has one per role."""

    def __post_init__(self) -> None:
        _check_agreement(self.agreement)
        if not isinstance(self.signatures, tuple) or not all(
            isinstance(s, Signature) for s in self.signatures
        ):
            raise SigningError("signatures must be a tuple of Signature")

    @property
    def digest(self) -> str:
        """:func:`agreement_digest` of the agreement."""
        return agreement_digest(self.agreement)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the signed agreement (see the module docstring)."""
        return {
            "agreement": copy.deepcopy(self.agreement),
            "signatures": [s.to_json() for s in self.signatures],
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedAgreement:
        """Read a signed agreement from its JSON object (as parsed by ``json.loads``).

        Raises:
            SigningError: ``data`` is not a well-formed signed agreement; the message
                names the part at fault.
        """
        if not isinstance(data, Mapping):
            raise SigningError(
                "a signed agreement is a JSON object with 'agreement' and 'signatures', "
                f"not {_json_type(data)}"
            )
        unknown = sorted(str(k) for k in data if k not in _DOCUMENT_KEYS)
        if unknown:
            raise SigningError(f"unknown signed-agreement field(s): {', '.join(unknown)}")
        for key in ("agreement", "signatures"):
            if key not in data:
                raise SigningError(f"signed agreement lacks {key!r}")
        agreement = data["agreement"]
        signatures = data["signatures"]
        if not isinstance(signatures, list):
            raise SigningError(f"'signatures' must be a JSON array, not {_json_type(signatures)}")
        _check_agreement(agreement)
        parsed = []
        for index, item in enumerate(signatures):
            try:
                parsed.append(Signature.from_json(item))
            except SigningError as exc:
                raise SigningError(f"signatures[{index}]: {exc}") from None
        return cls(agreement=copy.deepcopy(dict(agreement)), signatures=tuple(parsed))


@dataclass(frozen=True)
class Check:
    """One check made by :func:`verify_signed_agreement`."""

    name: str
    """What was checked, ``<role>.<aspect>`` (for example ``consumer.signature``)."""
    ok: bool
    """Whether it passed."""
    detail: str
    """One sentence: what was found."""


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of verifying a signed agreement."""

    ok: bool
    """True when every check passed: both parties signed this very agreement."""
    checks: tuple[Check, ...]
    """Every check made, in order."""
    problem: str | None
    """The first failed check's detail, or ``None`` when ``ok``."""


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The RFC 8785 (JSON Canonicalization Scheme) serialization of ``document``.

    Raises:
        SigningError: ``document`` is not plain JSON (for example a NaN, an integer
            beyond 2**53, a non-string key, or nesting deeper than :data:`MAX_DEPTH`).
    """
    if not isinstance(document, Mapping):
        raise SigningError(f"only a JSON object can be canonicalized, not {_json_type(document)}")
    plain = dict(document)
    if _encoder_writes_canonical(plain, 1):
        # The standard library's C encoder writes exactly the RFC 8785 bytes here.
        try:
            return json.dumps(
                plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 names the problem
    else:
        _check_depth(document)  # the walk above may have stopped early
    try:
        return rfc8785.dumps(plain)
    except ValueError as exc:  # CanonicalizationError, or a lone surrogate in a key
        raise SigningError(
            f"the document is not plain JSON and cannot be canonicalized: {exc}"
        ) from None


def agreement_digest(agreement: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical bytes of ``agreement``.

    Raises:
        SigningError: ``agreement`` cannot be canonicalized.
    """
    return "sha256:" + hashlib.sha256(canonical_bytes(agreement)).hexdigest()


def sign_agreement(
    agreement: Mapping[str, Any],
    *,
    role: str,
    cert_pem: bytes,
    key_pem: bytes,
    clock: Clock | None = None,
) -> Signature:
    """Sign ``agreement`` as its provider or consumer.

    Args:
        agreement: The DSP ``Agreement`` object.
        role: ``provider`` (the certificate must name the ``assigner``) or
            ``consumer`` (it must name the ``assignee``).
        cert_pem: The signer's certificate (PEM), leaf first; intermediates may follow.
        key_pem: The certificate's private key (unencrypted PEM, ECDSA P-256).
        clock: Source of the signing time (the system clock by default).

    Returns:
        The signature, carrying the certificate.

    Raises:
        SigningError: The role is unknown, the agreement is malformed, the certificate
            does not name the party of ``role``, is not valid now, or the key does not
            belong to it.
    """
    if role not in ROLES:
        raise SigningError(f"role must be 'provider' or 'consumer', not {role!r}")
    checked_role: Role = role
    data = _check_agreement(agreement)
    signer = _signer(cert_pem, key_pem)
    leaf = signer.leaf
    party_field = PARTY_FIELD[checked_role]
    participant_id = signer.participant_id
    if participant_id is None:
        raise SigningError(
            "the certificate has no URI subject alternative name, so it names no "
            "participant; sign with a Hanse node certificate"
        )
    if participant_id != agreement[party_field]:
        raise SigningError(
            f"the certificate names {participant_id}, but the {checked_role} of this "
            f"agreement (its {party_field}) is {agreement[party_field]}; "
            f"only the {checked_role} can sign as {checked_role}"
        )
    now = (clock or SystemClock()).now().astimezone(UTC).replace(microsecond=0)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise SigningError(
            f"the certificate is not valid now ({_format_time(now)}): it is valid from "
            f"{_format_time(leaf.not_valid_before_utc)} to "
            f"{_format_time(leaf.not_valid_after_utc)}; renew it before signing"
        )
    der = signer.key.sign(data, ec.ECDSA(hashes.SHA256()))
    value = base64.urlsafe_b64encode(der).rstrip(b"=").decode("ascii")
    _signatures.put((signer.chain_pem, value, hashlib.sha256(data).digest()), True)
    return Signature(
        participant_id=participant_id,
        role=checked_role,
        algorithm=ALGORITHM,
        certificate_pem=signer.chain_pem,
        value=value,
        signed_at=_format_time(now),
    )


def verify_signed_agreement(
    signed: SignedAgreement,
    trust_bundle_pem: bytes,
    *,
    at: datetime | None = None,
) -> VerificationReport:
    """Check that both parties signed this very agreement with trusted certificates.

    For the provider and then the consumer: there is exactly one signature of that
    role; its certificate is ECDSA P-256, was valid at the time of signing, and chains
    to a CA in ``trust_bundle_pem`` (as a TLS client certificate: the node
    certificates' ``clientAuth`` usage); the signature matches the canonical bytes of
    the agreement; and the certificate (and the signature's ``participantId``) names
    the agreement's ``assigner`` (provider) or ``assignee`` (consumer). Revocation is
    not checked. A bad signature never raises: it fails a check.

    Args:
        signed: The signed agreement.
        trust_bundle_pem: The federation's CA certificates (PEM).
        at: The time at which certificates must have been valid; by default each
            signature's own ``signedAt``.

    Returns:
        Every check made, and the first problem found.

    Raises:
        SigningError: The trust bundle holds no PEM certificate, or ``at`` is naive.
    """
    if at is not None and at.tzinfo is None:
        raise SigningError("'at' must be timezone-aware (for example datetime.now(UTC))")
    trust = _Trust(trust_bundle_pem, _trust_store(trust_bundle_pem))
    data = canonical_bytes(signed.agreement)
    digest = hashlib.sha256(data).digest()
    checks: list[Check] = []
    for role in ROLES:
        of_role = [s for s in signed.signatures if s.role == role]
        if len(of_role) != 1:
            detail = (
                f"there is no {role} signature; both provider and consumer must sign"
                if not of_role
                else f"there are {len(of_role)} {role} signatures; exactly one is allowed"
            )
            checks.append(Check(f"{role}.present", False, detail))
            continue
        checks.append(Check(f"{role}.present", True, f"there is one {role} signature"))
        checks.extend(_signature_checks(of_role[0], signed.agreement, data, digest, trust, at))
    problem = next((c.detail for c in checks if not c.ok), None)
    return VerificationReport(ok=problem is None, checks=tuple(checks), problem=problem)


@dataclass(frozen=True)
class _Trust:
    """A trust bundle: its PEM bytes (the cache key) and the parsed store."""

    pem: bytes
    store: Store


def _signature_checks(
    signature: Signature,
    agreement: Mapping[str, Any],
    data: bytes,
    digest: bytes,
    trust: _Trust,
    at: datetime | None,
) -> list[Check]:
    role = signature.role
    chain_pem = _pem_bytes(signature.certificate_pem)
    chain = _certificate_chain(chain_pem, "certificatePem")
    leaf = chain[0]
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return [
            Check(
                f"{role}.certificate",
                False,
                f"{role} certificate does not hold an ECDSA P-256 key, so it cannot "
                f"have made an {ALGORITHM} signature",
            )
        ]
    checks = [Check(f"{role}.certificate", True, f"{role} certificate holds an ECDSA P-256 key")]

    when = at if at is not None else signature.signed_at_time
    moment = (
        f"at {_format_time(when)}" if at is not None else f"when it signed ({signature.signed_at})"
    )
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if when < not_before:
        checks.append(
            Check(
                f"{role}.validity",
                False,
                f"{role} certificate was not yet valid {moment}: "
                f"it is valid from {_format_time(not_before)}",
            )
        )
    elif when > not_after:
        checks.append(
            Check(
                f"{role}.validity",
                False,
                f"{role} certificate had expired {moment}: "
                f"it was valid until {_format_time(not_after)}",
            )
        )
    else:
        checks.append(Check(f"{role}.validity", True, f"{role} certificate was valid {moment}"))

    chain_problem = _chain_problem(chain, chain_pem, trust, when)
    if chain_problem is not None:
        checks.append(
            Check(
                f"{role}.chain",
                False,
                f"{role} certificate does not chain to a CA in the trust bundle {moment} "
                f"({chain_problem}); it was not issued by this federation",
            )
        )
    else:
        checks.append(
            Check(f"{role}.chain", True, f"{role} certificate chains to the trust bundle")
        )

    if not _signature_matches(signature, public_key, data, digest):
        checks.append(
            Check(
                f"{role}.signature",
                False,
                f"{role} signature does not match the agreement: the agreement was changed "
                "after signing, or it was signed with another certificate's key",
            )
        )
    else:
        checks.append(Check(f"{role}.signature", True, f"{role} signature matches the agreement"))

    party_field = PARTY_FIELD[role]
    party = agreement[party_field]
    named = participant_id_of(leaf)
    if named != party:
        detail = (
            f"{role} certificate names {named or 'no participant'}, but the agreement's "
            f"{party_field} is {party}: the {role} must sign with its own certificate"
        )
        checks.append(Check(f"{role}.identity", False, detail))
    elif signature.participant_id != named:
        detail = (
            f"{role} signature claims to be by {signature.participant_id}, but its "
            f"certificate names {named}"
        )
        checks.append(Check(f"{role}.identity", False, detail))
    else:
        checks.append(
            Check(f"{role}.identity", True, f"{role} certificate names the {party_field} {party}")
        )
    return checks


def _chain_problem(
    chain: tuple[x509.Certificate, ...], chain_pem: bytes, trust: _Trust, when: datetime
) -> str | None:
    """Why ``chain`` does not chain to ``trust`` at ``when``, or ``None`` when it does.

    A verified path is remembered with the span in which all its certificates are
    valid; within that span the answer is the same (the other checks do not depend on
    time), outside it the chain is verified afresh.
    """
    key = (trust.pem, chain_pem)
    span = _chains.get(key)
    if span is not None and span[0] <= when <= span[1]:
        return None
    verifier = PolicyBuilder().store(trust.store).time(when).build_client_verifier()
    try:
        verified = verifier.verify(chain[0], list(chain[1:]))
    except (VerificationError, ValueError) as exc:
        return str(exc)
    path = verified.chain
    _chains.put(
        key,
        (
            max(c.not_valid_before_utc for c in path),
            min(c.not_valid_after_utc for c in path),
        ),
    )
    return None


def _signature_matches(
    signature: Signature, public_key: ec.EllipticCurvePublicKey, data: bytes, digest: bytes
) -> bool:
    """Whether ``signature`` is the leaf key's ECDSA signature over ``data``."""
    key = (signature.certificate_pem, signature.value, digest)
    if _signatures.get(key):
        return True
    try:
        public_key.verify(_b64decode(signature.value), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    _signatures.put(key, True)
    return True


def _check_agreement(agreement: Any) -> bytes:
    """Check the fields an agreement must have; its canonical bytes."""
    if not isinstance(agreement, Mapping):
        raise SigningError(f"the agreement must be a JSON object, not {_json_type(agreement)}")
    if agreement.get("@type") != "Agreement":
        raise SigningError(
            f"the agreement's @type must be 'Agreement', not {agreement.get('@type')!r}"
        )
    for key in _AGREEMENT_FIELDS:
        value = agreement.get(key)
        if not isinstance(value, str) or not value:
            raise SigningError(f"the agreement's {key!r} must be a non-empty string")
    return canonical_bytes(agreement)


def signing_cache_info() -> tuple[CacheInfo, ...]:
    """Size, capacity, hits and misses of each cache this module keeps (see the module doc)."""
    return tuple(cache.info() for cache in _CACHES)


def clear_signing_caches() -> None:
    """Forget everything this module has cached (parsed keys, certificates, verified chains)."""
    for cache in _CACHES:
        cache.clear()


def _encoder_writes_canonical(value: Any, depth: int) -> bool:
    """Whether ``json.dumps`` (sorted keys, compact) writes ``value`` as RFC 8785 does.

    True for plain dicts, lists, strings, booleans, ``None``, integers within
    ±(2**53 - 1) and floats that Python and ECMAScript write alike (finite, no
    exponent, not integral: RFC 8785 writes ``2.0`` as ``2``), where no object key has
    a character from U+D800 up (whose code point order can differ from the UTF-16
    order RFC 8785 sorts by). Stops at the first value that is not; a whole walk
    that returns True has also checked the depth.

    Raises:
        SigningError: The value nests deeper than :data:`MAX_DEPTH`.
    """
    if depth > MAX_DEPTH:
        raise SigningError(f"the document nests deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is float:
        text = repr(value)
        return math.isfinite(value) and "e" not in text and not text.endswith(".0")
    if kind is list or kind is tuple:
        return all(_encoder_writes_canonical(item, depth + 1) for item in value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and _WIDE_KEY.search(key)):
                return False
            if not _encoder_writes_canonical(item, depth + 1):
                return False
        return True
    return False


def _check_depth(document: Mapping[str, Any]) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SigningError(f"the document nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)


def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise SigningError(f"signature field {name!r} must be a non-empty string")


def _pem_bytes(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise SigningError("certificatePem must be ASCII PEM text") from None


def _certificate_chain(pem: bytes, name: str) -> tuple[x509.Certificate, ...]:
    chain = _certificates.get(pem)
    if chain is not None:
        return chain
    try:
        chain = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError:
        raise SigningError(
            f"{name} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')"
        ) from None
    _certificates.put(pem, chain)
    return chain


def _signer(cert_pem: bytes, key_pem: bytes) -> _Signer:
    """The key of ``key_pem``, checked to belong to the leaf of ``cert_pem``."""
    signer = _signers.get((cert_pem, key_pem))
    if signer is not None:
        return signer
    chain = _certificate_chain(cert_pem, "certificate")
    leaf = chain[0]
    key = _private_key(key_pem)
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise SigningError(
            "the private key does not belong to the certificate; "
            "use the key that was issued with that certificate"
        )
    signer = _Signer(
        key=key,
        leaf=leaf,
        participant_id=participant_id_of(leaf),
        chain_pem="".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain
        ),
    )
    _signers.put((cert_pem, key_pem), signer)
    return signer


def _trust_store(trust_bundle_pem: bytes) -> Store:
    store = _trust_stores.get(trust_bundle_pem)
    if store is not None:
        return store
    try:
        store = Store(x509.load_pem_x509_certificates(trust_bundle_pem))
    except ValueError:
        raise SigningError(
            "the trust bundle holds no PEM certificate; give the federation CA "
            "certificate(s) (ca.pem)"
        ) from None
    _trust_stores.put(trust_bundle_pem, store)
    return store


def _private_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise SigningError("the private key is encrypted; give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError("the private key is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningError(f"the private key is not ECDSA P-256, which {ALGORITHM} needs")
    return key


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise SigningError(
            f"{name} {value!r} is not an ISO 8601 time (for example 2026-03-01T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise SigningError(f"{name} {value!r} names no time zone; write it in UTC with 'Z'")
    return parsed.astimezone(UTC)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__
