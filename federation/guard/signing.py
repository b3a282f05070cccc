"""Signed updates: the node signs what leaves, the aggregator checks who sent it.

After the egress check, :class:`SigningMod` adds one ConfigRecord, named
``hanse-signature``, to the reply. It holds:

- ``digest``: :func:`update_digest` of the reply, ``sha256:<hex>`` over a canonical
  serialisation of its ArrayRecords and MetricRecords;
- ``agreement``, ``dataset``, ``run``, ``round``, ``message-type``, ``reply-to``:
  what the update answers (the round is the node's own count for the run);
- ``signer``: the node's participant id; ``certificate``: its certificate (PEM);
- ``algorithm``: ``ES256``; ``signature``: base64url (no padding) of the DER ECDSA
  P-256/SHA-256 signature over the *statement*, the RFC 8785 canonical JSON of
  ``{"type": "hanse.update/1", "agreement", "dataset", "run", "round",
  "messageType", "replyTo", "digest", "signer"}``.

Binding the run, round and the id of the message answered makes a signed update
useless anywhere else (no replay into another round or run). :func:`verify_update`
checks all of it on the aggregator's side against the federation's trust bundle.

The digest: SHA-256 over, each item written as its length (8 bytes, big-endian)
followed by its bytes: ``hanse-update-digest/1``; then per ArrayRecord in order of
name: ``arrays``, its name, its number of arrays, and per array in record order:
its name, dtype name, shape as a JSON list, and its values in C order, little-endian;
then per MetricRecord in order of name: ``metrics``, its name, and the RFC 8785 JSON
of its values. Other records are not covered: a verified update carries none.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from connector.identity.tls import participant_id_of
from connector.signing import ALGORITHM, canonical_bytes
from federation.guard.context import GuardContext, signing_key
from federation.guard.refusal import Refusal, refuse
from federation.guard.rounds import is_train, next_round, run_id

SIGNATURE_RECORD: Final = "hanse-signature"
"""The name of the ConfigRecord holding the signature."""

STATEMENT_TYPE: Final = "hanse.update/1"
"""The ``type`` of the signed statement."""

_DIGEST_DOMAIN: Final = b"hanse-update-digest/1"
_TEXT_FIELDS: Final = (
    "digest",
    "agreement",
    "dataset",
    "run",
    "message-type",
    "reply-to",
    "signer",
    "certificate",
    "algorithm",
    "signature",
)


@dataclass(frozen=True)
class UpdateVerification:
    """What :func:`verify_update` found."""

    ok: bool
    """Whether the update is signed by a node of the federation and unchanged."""
    signer: str | None
    """The participant id the signature claims, if one was read."""
    agreement: str | None
    """The agreement it claims to be trained under, if read."""
    round: int | None
    """The node's round number, if read."""
    digest: str | None
    """The digest recomputed from the message's records."""
    problem: str | None
    """One sentence on what is wrong, or ``None`` when ``ok``."""


class SigningMod:
    """A Flower mod that signs every reply that passed the egress check."""

    def __init__(self, guard: GuardContext) -> None:
        """Sign with ``guard``'s node key."""
        self.guard = guard

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Add the ``hanse-signature`` ConfigRecord to a reply with content."""
        guard = self.guard
        if is_train(message):
            round_number = next_round(guard, message)
        else:
            round_number = guard.ledger().rounds_used(guard.agreement_id, run_id(message))
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        if SIGNATURE_RECORD in reply.content:
            return refuse(
                message,
                Refusal.SIGNING_FAILED,
                f"the reply already carries a {SIGNATURE_RECORD!r} record, which only the "
                "node's guard may add; the reply was withheld",
            )
        try:
            reply.content[SIGNATURE_RECORD] = signature_record(
                guard, message, reply.content, round_number
            )
        except Exception as exc:  # whatever fails, an unsigned update never leaves
            return refuse(
                message,
                Refusal.SIGNING_FAILED,
                "the reply could not be signed with the node's key; it was withheld",
                local=f"{type(exc).__name__}: {exc}",
            )
        return reply


def signature_record(
    guard: GuardContext, message: Message, content: RecordDict, round_number: int
) -> ConfigRecord:
    """The ``hanse-signature`` record for a reply to ``message`` with ``content``."""
    key, signer = signing_key(guard.certificate_pem, guard.key_pem)
    fields: dict[str, Any] = {
        "digest": update_digest(content),
        "agreement": guard.agreement_id,
        "dataset": guard.dataset_id,
        "run": run_id(message),
        "round": round_number,
        "message-type": message.metadata.message_type,
        "reply-to": message.metadata.message_id,
        "signer": signer,
    }
    der = key.sign(statement(fields), ec.ECDSA(hashes.SHA256()))
    return ConfigRecord(
        {
            **fields,
            "certificate": guard.certificate_pem.decode("ascii"),
            "algorithm": ALGORITHM,
            "signature": base64.urlsafe_b64encode(der).rstrip(b"=").decode("ascii"),
        }
    )


def statement(fields: dict[str, Any]) -> bytes:
    """The canonical bytes signed for an update with these record fields."""
    return canonical_bytes(
        {
            "type": STATEMENT_TYPE,
            "agreement": fields["agreement"],
            "dataset": fields["dataset"],
            "run": fields["run"],
            "round": fields["round"],
            "messageType": fields["message-type"],
            "replyTo": fields["reply-to"],
            "digest": fields["digest"],
            "signer": fields["signer"],
        }
    )


def update_digest(content: RecordDict) -> str:
    """``sha256:<hex>`` over the ArrayRecords and MetricRecords of ``content``.

    See the module documentation for the serialisation.

    Raises:
        TypeError: An array is not a NumPy array (``Array.numpy()`` fails).
        connector.signing.SigningError: A metric cannot be canonicalised (NaN).
    """
    digest = hashlib.sha256()
    _put(digest, _DIGEST_DOMAIN)
    arrays = content.array_records
    for name in sorted(arrays):
        record = arrays[name]
        _put(digest, b"arrays")
        _put(digest, name.encode())
        _put(digest, str(len(record)).encode())
        for key, array in record.items():
            values = np.ascontiguousarray(array.numpy())
            little = values.astype(values.dtype.newbyteorder("<"), copy=False)
            _put(digest, key.encode())
            _put(digest, str(values.dtype).encode())
            _put(digest, json.dumps([int(n) for n in values.shape]).encode())
            _put(digest, little.tobytes(order="C"))
    metrics = content.metric_records
    for name in sorted(metrics):
        _put(digest, b"metrics")
        _put(digest, name.encode())
        _put(digest, canonical_bytes(dict(metrics[name])))
    return "sha256:" + digest.hexdigest()


def verify_update(
    message: Message, trust_bundle_pem: bytes, *, at: datetime | None = None
) -> UpdateVerification:
    """Check a reply's ``hanse-signature`` on the aggregator's side.

    Checks: the reply is no error; it carries no ConfigRecord but the signature;
    the signature record is complete; its digest equals :func:`update_digest` of
    the message; its run, message type and reply-to equal the message's metadata;
    the certificate is ECDSA P-256, chains to ``trust_bundle_pem`` (as a node's
    client certificate) at ``at``, and names the signer; the signature matches
    the statement. A bad update never raises: it fails a check.

    Args:
        message: The reply as the aggregator received it.
        trust_bundle_pem: The federation's CA certificates (PEM).
        at: When the certificate must be valid (now by default).

    Returns:
        What was found; ``ok`` only when every check passed.

    Raises:
        ValueError: ``trust_bundle_pem`` holds no certificate, or ``at`` is naive.
    """
    if at is not None and at.tzinfo is None:
        raise ValueError("'at' must be timezone-aware (for example datetime.now(UTC))")
    try:
        store = Store(x509.load_pem_x509_certificates(trust_bundle_pem))
    except ValueError:
        raise ValueError(
            "the trust bundle holds no PEM certificate; give the federation CA certificate(s)"
        ) from None
    when = at or datetime.now(UTC)
    found = _Found()
    problem = _problem(message, store, when, found)
    return UpdateVerification(
        ok=problem is None,
        signer=found.signer,
        agreement=found.agreement,
        round=found.round,
        digest=found.digest,
        problem=problem,
    )


@dataclass
class _Found:
    signer: str | None = None
    agreement: str | None = None
    round: int | None = None
    digest: str | None = None


def _problem(message: Message, store: Store, when: datetime, found: _Found) -> str | None:
    if message.has_error():
        return f"the message is an error ({message.error.reason!s}), not an update"
    content = message.content
    record = content.config_records.get(SIGNATURE_RECORD)
    if record is None:
        return f"the update carries no {SIGNATURE_RECORD!r} record: it is not signed"
    others = [name for name in content.config_records if name != SIGNATURE_RECORD]
    if others:
        return f"the update carries ConfigRecord(s) {others} that no signature covers"
    for name in _TEXT_FIELDS:
        if not isinstance(record.get(name), str):
            return f"the signature record's {name!r} is missing or not text"
    fields: dict[str, Any] = dict(record)
    number = fields.get("round")
    if isinstance(number, bool) or not isinstance(number, int):
        return "the signature record's 'round' is missing or not a whole number"
    found.signer, found.agreement, found.round = fields["signer"], fields["agreement"], number
    try:
        found.digest = update_digest(content)
    except Exception as exc:  # a malformed array or metric is a failed check
        return f"the update's records cannot be digested ({type(exc).__name__})"
    if fields["digest"] != found.digest:
        return "the update's arrays or metrics were changed after signing: the digest differs"
    metadata = message.metadata
    if fields["run"] != str(metadata.run_id):
        return f"the update was signed for run {fields['run']}, not this run {metadata.run_id}"
    if fields["message-type"] != metadata.message_type:
        return (
            f"the update was signed as a {fields['message-type']!r} reply, "
            f"not {metadata.message_type!r}"
        )
    if fields["reply-to"] != metadata.reply_to_message_id:
        return "the update was signed as the answer to another message (replayed)"
    if fields["algorithm"] != ALGORITHM:
        return f"the signature algorithm {fields['algorithm']!r} is not {ALGORITHM}"
    return _certificate_problem(fields, store, when)


def _certificate_problem(fields: dict[str, Any], store: Store, when: datetime) -> str | None:
    try:
        chain = x509.load_pem_x509_certificates(fields["certificate"].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "the signature record's certificate is not a PEM certificate"
    leaf = chain[0]
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return "the signer's certificate holds no ECDSA P-256 key"
    verifier = PolicyBuilder().store(store).time(when).build_client_verifier()
    try:
        verifier.verify(leaf, chain[1:])
    except (VerificationError, ValueError) as exc:
        return f"the signer's certificate does not chain to the trust bundle ({exc})"
    named = participant_id_of(leaf)
    if named != fields["signer"]:
        return (
            f"the update claims to be signed by {fields['signer']}, but the certificate "
            f"names {named or 'no participant'}"
        )
    try:
        signature = base64.urlsafe_b64decode(
            fields["signature"] + "=" * (-len(fields["signature"]) % 4)
        )
        public_key.verify(signature, statement(fields), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return "the signature does not match the update's statement: it was altered or forged"
    return None


def _put(digest: Any, data: bytes) -> None:
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)
