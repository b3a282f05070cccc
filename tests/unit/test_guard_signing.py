"""The signing mod and verify_update: the aggregator can tell who sent an update, unchanged."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.app import Array, ConfigRecord, Message

from federation.guard import (
    METRICS_RECORD,
    SIGNATURE_RECORD,
    GuardConfigError,
    GuardContext,
    Refusal,
    SigningMod,
    refuse,
    update_digest,
    verify_update,
)
from federation.guard.context import signing_key
from federation.guard.signing import statement
from tests.unit.guard_support import (
    AGREEMENT,
    ARRAYS,
    NODE,
    NOW,
    App,
    Pki,
    context,
    instruction,
    make_federation,
    make_guard,
    make_pki,
    metrics_reply,
    migrated_url,
    reason,
    update_reply,
)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def guard(tmp_path: Path, pki: Pki) -> GuardContext:
    return make_guard(pki, migrated_url(tmp_path))


def signed(guard: GuardContext, message: Message | None = None) -> Message:
    reply = SigningMod(guard)(message or instruction(), context(), App())
    assert not reply.has_error(), reply.error
    return reply


def test_a_signed_update_verifies(guard: GuardContext, pki: Pki) -> None:
    # Execute
    reply = signed(guard)
    result = verify_update(reply, pki.trust_pem, at=NOW)

    # Assert
    assert result.ok, result.problem
    assert (result.signer, result.agreement, result.round) == (NODE, AGREEMENT, 1)
    record = reply.content.config_records[SIGNATURE_RECORD]
    assert record["digest"] == result.digest == update_digest(reply.content)
    assert (record["run"], record["reply-to"], record["algorithm"]) == (
        "7",
        "instruction-1",
        "ES256",
    )


def test_evaluation_metrics_are_signed_too(guard: GuardContext, pki: Pki) -> None:
    reply = SigningMod(guard)(instruction("evaluate"), context(), App(metrics_reply))
    result = verify_update(reply, pki.trust_pem, at=NOW)
    assert result.ok, result.problem
    assert result.round == 0


def test_an_error_is_passed_on_unsigned(guard: GuardContext) -> None:
    reply = SigningMod(guard)(
        instruction(), context(), App(lambda m: refuse(m, Refusal.TRAINING_FAILED, "broke"))
    )
    assert reason(reply) == "TRAINING_FAILED: broke"
    assert not reply.has_content()


def tampered_array(reply: Message) -> None:
    arrays = reply.content.array_records[ARRAYS]
    arrays["bias"] = Array(arrays["bias"].numpy() + np.float32(1.0))


def tampered_metric(reply: Message) -> None:
    reply.content.metric_records[METRICS_RECORD]["mae"] = 0.0


def renamed_array(reply: Message) -> None:
    arrays = reply.content.array_records[ARRAYS]
    arrays["bias2"] = arrays["bias"]
    del arrays["bias"]


def extra_config(reply: Message) -> None:
    reply.content["extra"] = ConfigRecord({"note": "unsigned"})


def claimed_signer(reply: Message) -> None:
    reply.content.config_records[SIGNATURE_RECORD]["signer"] = "urn:hanse:city-b"


def other_round(reply: Message) -> None:
    reply.content.config_records[SIGNATURE_RECORD]["round"] = 2


def unsigned(reply: Message) -> None:
    del reply.content[SIGNATURE_RECORD]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (tampered_array, "changed after signing: the digest differs"),
        (tampered_metric, "changed after signing: the digest differs"),
        (renamed_array, "changed after signing: the digest differs"),
        (extra_config, "ConfigRecord(s) ['extra'] that no signature covers"),
        (claimed_signer, "claims to be signed by urn:hanse:city-b, but the certificate names"),
        (other_round, "does not match the update's statement"),
        (unsigned, "carries no 'hanse-signature' record: it is not signed"),
    ],
)
def test_a_changed_update_fails_verification(
    guard: GuardContext, pki: Pki, change: object, problem: str
) -> None:
    # Prepare
    reply = signed(guard)
    change(reply)  # type: ignore[operator]

    # Execute
    result = verify_update(reply, pki.trust_pem, at=NOW)

    # Assert
    assert not result.ok
    assert result.problem is not None
    assert problem in result.problem


def test_a_signature_replayed_onto_another_message_fails(guard: GuardContext, pki: Pki) -> None:
    # Prepare: the same signed content, sent as the answer to a later instruction.
    original = signed(guard)
    later = instruction(message_id="instruction-2")
    replayed = Message(original.content, reply_to=later)

    # Execute
    result = verify_update(replayed, pki.trust_pem, at=NOW)

    # Assert
    assert result.problem == "the update was signed as the answer to another message (replayed)"


def test_a_signature_replayed_into_another_run_fails(guard: GuardContext, pki: Pki) -> None:
    original = signed(guard)
    replayed = Message(original.content, reply_to=instruction(run_id=99))
    result = verify_update(replayed, pki.trust_pem, at=NOW)
    assert result.problem == "the update was signed for run 7, not this run 99"


def test_a_node_of_another_federation_is_not_trusted(tmp_path: Path, guard: GuardContext) -> None:
    # Prepare
    foreign = make_pki(tmp_path / "foreign")

    # Execute
    result = verify_update(signed(guard), foreign.trust_pem, at=NOW)

    # Assert
    assert result.problem is not None
    assert result.problem.startswith("the signer's certificate does not chain to the trust bundle")


def test_an_expired_certificate_fails(guard: GuardContext, pki: Pki) -> None:
    result = verify_update(signed(guard), pki.trust_pem, at=NOW + timedelta(days=400))
    assert result.problem is not None
    assert "does not chain to the trust bundle" in result.problem


def test_a_signature_by_another_key_fails(tmp_path: Path, pki: Pki, guard: GuardContext) -> None:
    # Prepare: another node of the same federation signs, but ships this node's certificate.
    [other] = make_federation(tmp_path / "other", ["urn:hanse:city-b"])
    reply = signed(guard)
    record = reply.content.config_records[SIGNATURE_RECORD]
    key, _ = signing_key(other.cert_pem, other.key_pem)
    der = key.sign(statement(dict(record)), ec.ECDSA(hashes.SHA256()))
    record["signature"] = base64.urlsafe_b64encode(der).rstrip(b"=").decode()

    # Execute
    result = verify_update(reply, pki.trust_pem, at=NOW)

    # Assert
    assert result.problem == (
        "the signature does not match the update's statement: it was altered or forged"
    )


def test_a_reply_already_carrying_a_signature_is_refused(guard: GuardContext) -> None:
    # Prepare
    def presigned(message: Message) -> Message:
        reply = update_reply(message)
        reply.content[SIGNATURE_RECORD] = ConfigRecord({"signer": NODE})
        return reply

    # Execute
    reply = SigningMod(guard)(instruction(), context(), App(presigned))

    # Assert
    assert reason(reply).startswith(f"{Refusal.SIGNING_FAILED}: the reply already carries")


def test_the_digest_covers_names_order_and_values() -> None:
    # Prepare
    message = instruction()
    base = update_reply(message).content
    moved = update_reply(message, delta=0.25).content
    more = update_reply(message, examples=65).content

    # Assert
    assert update_digest(base) == update_digest(update_reply(message).content)
    assert len({update_digest(base), update_digest(moved), update_digest(more)}) == 3


def test_verification_refuses_a_trust_bundle_without_certificates(guard: GuardContext) -> None:
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        verify_update(signed(guard), b"not a bundle", at=NOW)


def test_a_guard_with_a_key_of_another_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    [other] = make_federation(tmp_path / "other", ["urn:hanse:city-b"])
    with pytest.raises(GuardConfigError, match="key_pem does not belong to certificate_pem"):
        make_guard(replace(pki, key_pem=other.key_pem), migrated_url(tmp_path))


def test_a_guard_without_a_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(GuardConfigError, match="certificate_pem holds no PEM certificate"):
        make_guard(replace(pki, cert_pem=b"nothing"), migrated_url(tmp_path))
