"""DSP 2025-1 JSON-LD forms of the contract-negotiation messages, checked against the spec.

Builders are validated against the DSP JSON schemas; every DSP example message parses
and round-trips unchanged; malformed messages are refused with MESSAGE_INVALID naming
the property at fault.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest

from connector.errors import ConnectorError
from connector.negotiation.messages import (
    DSP_CONTEXT,
    DSP_STATES,
    DspMessage,
    MessageFieldError,
    NegotiationAck,
    accepted_event,
    agreement_message,
    build_agreement,
    finalized_event,
    negotiation_ack,
    negotiation_error,
    new_pid,
    offer_message,
    parse_negotiation_ack,
    request_message,
    termination_message,
    verification_message,
)
from connector.negotiation.states import Message, NegotiationState

CONSUMER_PID = "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833"
PROVIDER_PID = "urn:uuid:a343fcbf-99fc-4ce8-8e9b-148c97605aab"
DATASET = "urn:uuid:3dd1add8-4d2d-569e-d634-8394a8836a88"
CALLBACK = "grpcs://consumer.example:7443"
PURPOSE = {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
ROUNDS = {"leftOperand": "maxRounds", "operator": "lteq", "rightOperand": "10"}
WHEN = datetime(2025, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)

NOT_MESSAGES = {"contract-negotiation.json", "contract-negotiation-error.json"}
"""Examples of the ACK and the error answer: checked against negotiation_ack/_error."""

SCHEMA_OF = {
    Message.REQUEST: "negotiation/contract-request-message-schema.json",
    Message.OFFER: "negotiation/contract-offer-message-schema.json",
    Message.ACCEPTED: "negotiation/contract-negotiation-event-message-schema.json",
    Message.AGREEMENT: "negotiation/contract-agreement-message-schema.json",
    Message.VERIFICATION: "negotiation/contract-agreement-verification-message-schema.json",
    Message.FINALIZED: "negotiation/contract-negotiation-event-message-schema.json",
    Message.TERMINATION: "negotiation/contract-negotiation-termination-message-schema.json",
}
ACK_SCHEMA = "negotiation/contract-negotiation-schema.json"
ERROR_SCHEMA = "negotiation/contract-negotiation-error-schema.json"
AGREEMENT_REF = (
    "https://w3id.org/dspace/2025/1/negotiation/contract-schema.json#/definitions/Agreement"
)


def _offer(**extra: Any) -> dict[str, Any]:
    return {
        "@id": "urn:uuid:offer-1",
        "@type": "Offer",
        "target": DATASET,
        "permission": [{"action": "use", "constraint": [PURPOSE]}],
        **extra,
    }


def _agreement() -> dict[str, Any]:
    return build_agreement(
        agreement_id="urn:uuid:agreement-1",
        offer=_offer(),
        assigner="urn:hanse:city-a",
        assignee="urn:hanse:lab-b",
        target=DATASET,
        timestamp=WHEN,
        extra_constraints=[ROUNDS],
    )


BUILT: dict[str, Callable[[], DspMessage]] = {
    "initial-request": lambda: request_message(
        consumer_pid=CONSUMER_PID, offer=_offer(), callback_address=CALLBACK
    ),
    "counter-request": lambda: request_message(
        consumer_pid=CONSUMER_PID,
        offer=_offer(),
        callback_address=CALLBACK,
        provider_pid=PROVIDER_PID,
    ),
    "initial-offer": lambda: offer_message(
        provider_pid=PROVIDER_PID, consumer_pid="", offer=_offer(), callback_address=CALLBACK
    ),
    "counter-offer": lambda: offer_message(
        provider_pid=PROVIDER_PID, consumer_pid=CONSUMER_PID, offer=_offer()
    ),
    "accepted": lambda: accepted_event(consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID),
    "agreement": lambda: agreement_message(
        provider_pid=PROVIDER_PID, consumer_pid=CONSUMER_PID, agreement=_agreement()
    ),
    "verification": lambda: verification_message(
        consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID
    ),
    "finalized": lambda: finalized_event(consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID),
    "termination": lambda: termination_message(
        consumer_pid=CONSUMER_PID,
        provider_pid=PROVIDER_PID,
        code="POLICY_REFUSED",
        reasons=["purpose not offered"],
    ),
    "termination-bare": lambda: termination_message(
        consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID
    ),
}


def _example_dir(dsp_dir: Path) -> Path:
    return dsp_dir / "negotiation" / "example"


def _example(dsp_dir: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_example_dir(dsp_dir) / name).read_text("utf-8"))
    return loaded


def _normal(document: Any) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False)


def _refused(data: Any, expected: Message | None = None) -> ConnectorError:
    with pytest.raises(ConnectorError) as raised:
        DspMessage.from_json(data, expected=expected)
    return raised.value


def _assert_invalid(error: ConnectorError, field_path: str) -> None:
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "MESSAGE_INVALID"
    assert [v.field for v in error.violations] == [field_path]


# --- builders -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILT))
def test_every_builder_validates_against_its_dsp_schema(name: str, dsp_validate: Any) -> None:
    # Prepare
    message = BUILT[name]()

    # Execute
    document = message.to_json()

    # Assert
    dsp_validate(document, SCHEMA_OF[message.kind])
    assert document["@context"] == [DSP_CONTEXT]
    assert document["@type"] == message.message_type


@pytest.mark.parametrize("name", list(BUILT))
def test_every_built_message_parses_back_to_itself(name: str) -> None:
    # Prepare
    message = BUILT[name]()

    # Execute
    parsed = DspMessage.from_json(json.loads(json.dumps(message.to_json())), expected=message.kind)

    # Assert
    assert parsed == message
    assert parsed.extra == {}


def test_builders_emit_only_the_properties_of_their_type() -> None:
    # Prepare
    expected = {
        "initial-request": {"consumerPid", "offer", "callbackAddress"},
        "counter-request": {"consumerPid", "providerPid", "offer"},
        "initial-offer": {"providerPid", "offer", "callbackAddress"},
        "counter-offer": {"consumerPid", "providerPid", "offer"},
        "accepted": {"consumerPid", "providerPid", "eventType"},
        "agreement": {"consumerPid", "providerPid", "agreement"},
        "verification": {"consumerPid", "providerPid"},
        "finalized": {"consumerPid", "providerPid", "eventType"},
        "termination": {"consumerPid", "providerPid", "code", "reason"},
        "termination-bare": {"consumerPid", "providerPid"},
    }

    # Execute
    keys = {name: set(build().to_json()) - {"@context", "@type"} for name, build in BUILT.items()}

    # Assert
    assert keys == expected


def test_event_builders_carry_their_event_type() -> None:
    # Execute
    accepted = BUILT["accepted"]().to_json()
    finalized = BUILT["finalized"]().to_json()

    # Assert
    assert accepted["@type"] == finalized["@type"] == "ContractNegotiationEventMessage"
    assert (accepted["eventType"], finalized["eventType"]) == ("ACCEPTED", "FINALIZED")


def test_a_counter_message_drops_the_callback_address_as_the_schema_demands(
    dsp_validate: Any,
) -> None:
    # Prepare: the schemas allow callbackAddress only where the counter-party's pid is absent
    both = {
        **BUILT["counter-request"]().to_json(),
        "callbackAddress": CALLBACK,
    }

    # Execute
    message = BUILT["counter-request"]()

    # Assert
    assert message.callback_address == ""
    with pytest.raises(Exception, match="valid under each of"):
        dsp_validate(both, SCHEMA_OF[Message.REQUEST])


def test_builders_copy_the_offer_they_are_given() -> None:
    # Prepare
    offer = _offer()
    message = request_message(consumer_pid=CONSUMER_PID, offer=offer, callback_address=CALLBACK)

    # Execute
    offer["permission"].append({"action": "distribute"})
    message.to_json()["offer"]["@id"] = "changed"

    # Assert
    assert message.offer == _offer()


def test_dataset_id_is_the_target_of_the_offer_or_agreement() -> None:
    # Execute
    ids = {name: build().dataset_id for name, build in BUILT.items()}

    # Assert
    assert ids["initial-offer"] == ids["initial-request"] == ids["agreement"] == DATASET
    assert ids["verification"] == ids["termination"] == ""


@pytest.mark.parametrize(
    ("build", "field_path"),
    [
        (
            lambda: request_message(consumer_pid="", offer=_offer(), callback_address=CALLBACK),
            "consumerPid",
        ),
        (
            lambda: request_message(consumer_pid=CONSUMER_PID, offer=_offer(), callback_address=""),
            "callbackAddress",
        ),
        (
            lambda: offer_message(provider_pid=PROVIDER_PID, consumer_pid="", offer=_offer()),
            "callbackAddress",
        ),
        (
            lambda: offer_message(
                provider_pid=PROVIDER_PID,
                consumer_pid=CONSUMER_PID,
                offer={k: v for k, v in _offer().items() if k != "target"},
            ),
            "offer.target",
        ),
        (lambda: accepted_event(consumer_pid=CONSUMER_PID, provider_pid=""), "providerPid"),
        (
            lambda: agreement_message(
                provider_pid=PROVIDER_PID,
                consumer_pid=CONSUMER_PID,
                agreement={**_agreement(), "timestamp": "yesterday"},
            ),
            "agreement.timestamp",
        ),
    ],
    ids=["no-consumer-pid", "initial-request-no-callback", "initial-offer-no-callback",
         "offer-no-target", "no-provider-pid", "bad-timestamp"],
)  # fmt: skip
def test_builders_refuse_what_would_not_be_a_valid_dsp_message(
    build: Callable[[], DspMessage], field_path: str
) -> None:
    # Execute
    with pytest.raises(MessageFieldError) as raised:
        build()

    # Assert
    assert raised.value.field_path == field_path
    assert isinstance(raised.value, ValueError)


def test_new_pid_is_a_fresh_uuid_urn() -> None:
    # Execute
    pids = {new_pid() for _ in range(100)}

    # Assert
    assert len(pids) == 100
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", pid) for pid in pids)


# --- the DSP examples --------------------------------------------------------------------


def test_the_examples_are_all_accounted_for(dsp_dir: Path) -> None:
    # Execute
    names = {path.name for path in _example_dir(dsp_dir).glob("*.json")}

    # Assert: a new example in a DSP update must be looked at, not skipped silently
    assert names - NOT_MESSAGES == set(EXAMPLE_KINDS)
    assert names >= NOT_MESSAGES


EXAMPLE_KINDS = {
    "contract-agreement-message-full.json": Message.AGREEMENT,
    "contract-agreement-message.json": Message.AGREEMENT,
    "contract-agreement-verification-message.json": Message.VERIFICATION,
    "contract-negotiation-event-message.json": Message.ACCEPTED,
    "contract-negotiation-termination-message.json": Message.TERMINATION,
    "contract-offer-message.json": Message.OFFER,
    "contract-offer-message_initial.json": Message.OFFER,
    "contract-request-message.json": Message.REQUEST,
    "contract-request-message_initial.json": Message.REQUEST,
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_KINDS))
def test_every_dsp_example_parses_and_round_trips(
    name: str, dsp_dir: Path, dsp_validate: Any
) -> None:
    # Prepare
    document = _example(dsp_dir, name)
    dsp_validate(document, SCHEMA_OF[EXAMPLE_KINDS[name]])

    # Execute
    message = DspMessage.from_json(document, expected=EXAMPLE_KINDS[name])

    # Assert
    assert message.kind is EXAMPLE_KINDS[name]
    assert message.extra == {}  # nothing in the examples needs the lossless fallback
    assert _normal(message.to_json()) == _normal(document)


def test_the_full_agreement_example_keeps_its_profile_and_logical_constraints(
    dsp_dir: Path,
) -> None:
    # Prepare
    document = _example(dsp_dir, "contract-agreement-message-full.json")

    # Execute
    message = DspMessage.from_json(document)

    # Assert
    assert message.agreement is not None
    assert message.agreement["profile"] == "https://test.com/profile"
    assert message.agreement == document["agreement"]


def test_the_initial_examples_carry_the_callback_address(dsp_dir: Path) -> None:
    # Execute
    request = DspMessage.from_json(_example(dsp_dir, "contract-request-message_initial.json"))
    offer = DspMessage.from_json(_example(dsp_dir, "contract-offer-message_initial.json"))

    # Assert
    assert (request.provider_pid, request.callback_address) == ("", "https://example.com/callback")
    assert (offer.consumer_pid, offer.callback_address) == ("", "https://example.com/callback")
    assert offer.consumer_pid == ""


def test_the_termination_example_gives_code_and_reasons(dsp_dir: Path) -> None:
    # Execute
    message = DspMessage.from_json(
        _example(dsp_dir, "contract-negotiation-termination-message.json")
    )

    # Assert
    assert message.code == "99"
    assert message.reasons == ("License model does not fit.",)


def test_unmodelled_properties_and_contexts_are_kept(dsp_dir: Path) -> None:
    # Prepare: another connector's extension property and its own context
    document = _example(dsp_dir, "contract-request-message.json")
    document["@context"] = [DSP_CONTEXT, "https://example.com/ext/context.jsonld"]
    document["ext:trace"] = {"id": "abc", "hops": [1, 2]}

    # Execute
    message = DspMessage.from_json(document)

    # Assert
    assert message.extra == {"ext:trace": {"id": "abc", "hops": [1, 2]}}
    assert _normal(message.to_json()) == _normal(document)


def test_non_text_reasons_are_kept_verbatim(dsp_dir: Path, dsp_validate: Any) -> None:
    # Prepare: the schema allows any item in reason, e.g. a JSON-LD value object
    document = _example(dsp_dir, "contract-negotiation-termination-message.json")
    document["reason"] = [{"@value": "Lizenz passt nicht.", "@language": "de"}, "plain"]
    dsp_validate(document, SCHEMA_OF[Message.TERMINATION])

    # Execute
    message = DspMessage.from_json(document)

    # Assert
    assert message.reasons == ("Lizenz passt nicht.", "plain")
    assert _normal(message.to_json()) == _normal(document)


# --- the answers: ACK and error ----------------------------------------------------------


@pytest.mark.parametrize("state", sorted(DSP_STATES))
def test_negotiation_ack_validates_for_every_dsp_state(
    state: NegotiationState, dsp_validate: Any
) -> None:
    # Execute
    document = negotiation_ack(consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID, state=state)

    # Assert
    dsp_validate(document, ACK_SCHEMA)
    assert parse_negotiation_ack(document) == NegotiationAck(CONSUMER_PID, PROVIDER_PID, state)


def test_negotiation_ack_matches_the_dsp_example(dsp_dir: Path) -> None:
    # Execute
    document = negotiation_ack(
        consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID, state=NegotiationState.REQUESTED
    )

    # Assert
    assert _normal(document) == _normal(_example(dsp_dir, "contract-negotiation.json"))


@pytest.mark.parametrize(
    "state", [s for s in NegotiationState if s not in DSP_STATES], ids=lambda s: s.value
)
def test_negotiation_ack_refuses_states_dsp_does_not_know(state: NegotiationState) -> None:
    # Execute / Assert
    assert state is NegotiationState.INITIAL or state.is_pending
    with pytest.raises(ValueError, match="not a DSP negotiation state"):
        negotiation_ack(consumer_pid=CONSUMER_PID, provider_pid=PROVIDER_PID, state=state)


@pytest.mark.parametrize(
    ("change", "field_path"),
    [
        (lambda d: d.pop("@context"), "@context"),
        (lambda d: d.update({"@type": "ContractNegotiationError"}), "@type"),
        (lambda d: d.pop("providerPid"), "providerPid"),
        (lambda d: d.update({"state": "REQUESTING"}), "state"),
    ],
    ids=["no-context", "wrong-type", "no-provider-pid", "ing-state"],
)
def test_parse_negotiation_ack_refuses_malformed_answers(
    change: Callable[[dict[str, Any]], Any], field_path: str, dsp_dir: Path
) -> None:
    # Prepare
    document = _example(dsp_dir, "contract-negotiation.json")
    change(document)

    # Execute
    with pytest.raises(ConnectorError) as raised:
        parse_negotiation_ack(document)

    # Assert
    _assert_invalid(raised.value, field_path)


def test_negotiation_error_matches_the_dsp_example(dsp_dir: Path, dsp_validate: Any) -> None:
    # Execute
    document = negotiation_error(
        consumer_pid=CONSUMER_PID,
        provider_pid=PROVIDER_PID,
        code="99",
        reasons=["Catalog not provisioned for this requester."],
    )
    bare = negotiation_error(consumer_pid=CONSUMER_PID, provider_pid="")

    # Assert
    dsp_validate(document, ERROR_SCHEMA)
    dsp_validate(bare, ERROR_SCHEMA)
    assert _normal(document) == _normal(_example(dsp_dir, "contract-negotiation-error.json"))
    assert set(bare) == {"@context", "@type", "consumerPid", "providerPid"}


# --- malformed messages ------------------------------------------------------------------


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return change


MALFORMED = [
    # (id, example, change, field path)
    ("missing-consumer-pid", "contract-agreement-verification-message.json",
     _without("consumerPid"), "consumerPid"),
    ("missing-consumer-pid-request", "contract-request-message.json",
     _without("consumerPid"), "consumerPid"),
    ("empty-consumer-pid", "contract-negotiation-event-message.json",
     _set("consumerPid", ""), "consumerPid"),
    ("consumer-pid-not-a-string", "contract-negotiation-event-message.json",
     _set("consumerPid", 42), "consumerPid"),
    ("missing-provider-pid", "contract-agreement-message.json",
     _without("providerPid"), "providerPid"),
    ("missing-provider-pid-offer", "contract-offer-message.json",
     _without("providerPid"), "providerPid"),
    ("wrong-type", "contract-request-message.json",
     _set("@type", "ContractBargainMessage"), "@type"),
    ("answer-as-message", "contract-negotiation.json", lambda d: None, "@type"),
    ("missing-type", "contract-request-message.json", _without("@type"), "@type"),
    ("unknown-event-type", "contract-negotiation-event-message.json",
     _set("eventType", "REQUESTED"), "eventType"),
    ("missing-event-type", "contract-negotiation-event-message.json",
     _without("eventType"), "eventType"),
    ("initial-request-without-callback", "contract-request-message_initial.json",
     _without("callbackAddress"), "callbackAddress"),
    ("initial-offer-without-callback", "contract-offer-message_initial.json",
     _without("callbackAddress"), "callbackAddress"),
    ("offer-without-id", "contract-request-message.json", _without("offer.@id"), "offer.@id"),
    ("offer-not-an-object", "contract-request-message.json", _set("offer", "urn:x"), "offer"),
    ("missing-offer", "contract-request-message.json", _without("offer"), "offer"),
    ("offer-wrong-type", "contract-offer-message.json", _set("offer.@type", "Agreement"),
     "offer.@type"),
    ("offer-message-without-target", "contract-offer-message.json", _without("offer.target"),
     "offer.target"),
    ("offer-without-rules", "contract-request-message.json", _without("offer.permission"),
     "offer.permission"),
    ("offer-empty-permission", "contract-request-message.json", _set("offer.permission", []),
     "offer.permission"),
    ("offer-rule-with-target", "contract-request-message.json",
     _set("offer.permission.0.target", DATASET), "offer.permission[0].target"),
    ("offer-rule-without-action", "contract-offer-message.json",
     _without("offer.permission.0.action"), "offer.permission[0].action"),
    ("agreement-missing-assignee", "contract-agreement-message.json",
     _without("agreement.assignee"), "agreement.assignee"),
    ("agreement-missing-timestamp", "contract-agreement-message.json",
     _without("agreement.timestamp"), "agreement.timestamp"),
    ("agreement-bad-timestamp", "contract-agreement-message.json",
     _set("agreement.timestamp", "2023-01-01"), "agreement.timestamp"),
    ("agreement-missing-id", "contract-agreement-message.json", _without("agreement.@id"),
     "agreement.@id"),
    ("agreement-wrong-type", "contract-agreement-message.json", _set("agreement.@type", "Offer"),
     "agreement.@type"),
    ("agreement-missing-target", "contract-agreement-message.json",
     _without("agreement.target"), "agreement.target"),
    ("agreement-rule-with-target", "contract-agreement-message-full.json",
     _set("agreement.permission.3.target", DATASET), "agreement.permission[3].target"),
    ("missing-agreement", "contract-agreement-message.json", _without("agreement"), "agreement"),
    ("missing-context", "contract-agreement-message.json", _without("@context"), "@context"),
    ("context-without-dsp", "contract-agreement-message.json",
     _set("@context", ["https://w3id.org/dspace/2024/1/context.json"]), "@context"),
    ("context-as-string", "contract-agreement-message.json", _set("@context", DSP_CONTEXT),
     "@context"),
    ("empty-reason", "contract-negotiation-termination-message.json", _set("reason", []),
     "reason"),
    ("code-not-a-string", "contract-negotiation-termination-message.json", _set("code", 99),
     "code"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("example", "change", "field_path"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_messages_are_refused_naming_the_property(
    example: str,
    change: Callable[[dict[str, Any]], Any],
    field_path: str,
    dsp_dir: Path,
) -> None:
    # Prepare
    document = _example(dsp_dir, example)
    change(document)

    # Execute
    error = _refused(document)

    # Assert
    _assert_invalid(error, field_path)


def test_an_unexpected_message_type_is_refused(dsp_dir: Path) -> None:
    # Prepare
    document = _example(dsp_dir, "contract-request-message.json")

    # Execute
    error = _refused(document, expected=Message.AGREEMENT)

    # Assert
    _assert_invalid(error, "@type")
    assert error.message == "expected a ContractAgreementMessage, got a ContractRequestMessage"


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [("ACCEPTED", Message.FINALIZED), ("FINALIZED", Message.ACCEPTED)],
)
def test_an_event_of_the_wrong_side_is_refused(
    event_type: str, expected: Message, dsp_dir: Path
) -> None:
    # Prepare: ACCEPTED comes only from the consumer, FINALIZED only from the provider
    document = _example(dsp_dir, "contract-negotiation-event-message.json")
    document["eventType"] = event_type

    # Execute
    error = _refused(document, expected=expected)

    # Assert
    _assert_invalid(error, "eventType")
    assert f"got a ContractNegotiationEventMessage with eventType {event_type}" in error.message


def test_an_event_where_another_message_is_expected_is_refused(dsp_dir: Path) -> None:
    # Prepare
    document = _example(dsp_dir, "contract-negotiation-event-message.json")

    # Execute
    error = _refused(document, expected=Message.VERIFICATION)

    # Assert
    _assert_invalid(error, "@type")
    assert error.message.startswith("expected a ContractAgreementVerificationMessage, got a ")


@pytest.mark.parametrize("data", [[], "ContractRequestMessage", None], ids=repr)
def test_a_message_that_is_not_an_object_is_refused(data: Any) -> None:
    # Execute
    error = _refused(data)

    # Assert
    assert error.reason == "MESSAGE_INVALID"
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT


# --- build_agreement ---------------------------------------------------------------------


def test_build_agreement_validates_against_the_dsp_agreement_schema(
    dsp_validate: Any, tmp_path: Path
) -> None:
    # Prepare: a one-line schema naming the Agreement definition (an absolute path
    # given to dsp_validate replaces its DSP directory)
    schema = tmp_path / "agreement-schema.json"
    schema.write_text(
        json.dumps(
            {"$schema": "https://json-schema.org/draft/2019-09/schema", "$ref": AGREEMENT_REF}
        )
    )
    offer = _offer(prohibition=[{"action": "distribute"}], profile="urn:hanse:profile:v1")

    # Execute
    agreement = build_agreement(
        agreement_id="urn:uuid:agreement-1",
        offer=offer,
        assigner="urn:hanse:city-a",
        assignee="urn:hanse:lab-b",
        target=DATASET,
        timestamp=WHEN,
        extra_constraints=[ROUNDS],
    )

    # Assert
    dsp_validate(agreement, str(schema))
    assert "@context" not in agreement
    assert agreement["@type"] == "Agreement"
    assert agreement["prohibition"] == [{"action": "distribute"}]
    assert agreement["profile"] == "urn:hanse:profile:v1"


def test_build_agreement_fails_the_schema_check_when_invalid(
    dsp_validate: Any, tmp_path: Path
) -> None:
    # Prepare: guards the schema check above against passing vacuously
    schema = tmp_path / "agreement-schema.json"
    schema.write_text(json.dumps({"$ref": AGREEMENT_REF}))
    agreement = _agreement()
    del agreement["assignee"]

    # Execute / Assert
    with pytest.raises(Exception, match="assignee"):
        dsp_validate(agreement, str(schema))


def test_build_agreement_appends_the_stated_usage_to_every_permission() -> None:
    # Prepare
    offer = _offer(permission=[{"action": "use", "constraint": [PURPOSE]}, {"action": "read"}])
    before = copy.deepcopy(offer)

    # Execute
    agreement = build_agreement(
        agreement_id="urn:uuid:agreement-1",
        offer=offer,
        assigner="urn:hanse:city-a",
        assignee="urn:hanse:lab-b",
        target=DATASET,
        timestamp=WHEN,
        extra_constraints=[ROUNDS],
    )

    # Assert
    assert agreement["permission"] == [
        {"action": "use", "constraint": [PURPOSE, ROUNDS]},
        {"action": "read", "constraint": [ROUNDS]},
    ]
    assert offer == before  # the offer is not changed
    assert agreement["@id"] == "urn:uuid:agreement-1"
    assert agreement["target"] == DATASET
    assert (agreement["assigner"], agreement["assignee"]) == ("urn:hanse:city-a", "urn:hanse:lab-b")


def test_build_agreement_does_not_repeat_a_stated_constraint_the_offer_has() -> None:
    # Prepare: a counter-request's offer already carries the consumer's usage
    offer = _offer(permission=[{"action": "use", "constraint": [PURPOSE, ROUNDS]}])

    # Execute
    agreement = build_agreement(
        agreement_id="urn:uuid:agreement-1",
        offer=offer,
        assigner="a",
        assignee="b",
        target=DATASET,
        timestamp=WHEN,
        extra_constraints=[PURPOSE, ROUNDS],
    )

    # Assert
    assert agreement["permission"] == [{"action": "use", "constraint": [PURPOSE, ROUNDS]}]


def test_build_agreement_writes_the_timestamp_in_utc_to_the_second() -> None:
    # Prepare
    local = datetime(2025, 3, 4, 7, 6, 7, 999_999, tzinfo=timezone(timedelta(hours=2)))

    # Execute
    agreement = build_agreement(
        agreement_id="urn:uuid:agreement-1",
        offer=_offer(),
        assigner="a",
        assignee="b",
        target=DATASET,
        timestamp=local,
    )

    # Assert
    assert agreement["timestamp"] == "2025-03-04T05:06:07Z"
    assert agreement["permission"] == _offer()["permission"]


@pytest.mark.parametrize(
    ("offer", "timestamp", "stated", "match"),
    [
        (_offer(), datetime(2025, 1, 1), (), "timezone-aware"),
        (
            {"@id": "o", "@type": "Offer", "prohibition": [{"action": "distribute"}]},
            WHEN,
            [ROUNDS],
            "no permission",
        ),
        ({"@id": "o", "@type": "Offer"}, WHEN, (), "permission or a prohibition"),
        (
            _offer(permission=[{"action": "use", "target": DATASET}]),
            WHEN,
            (),
            "must not carry a target",
        ),
    ],
    ids=["naive-timestamp", "usage-without-permission", "no-rules", "rule-with-target"],
)
def test_build_agreement_refuses_what_cannot_be_a_dsp_agreement(
    offer: dict[str, Any], timestamp: datetime, stated: Any, match: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        build_agreement(
            agreement_id="urn:uuid:agreement-1",
            offer=offer,
            assigner="a",
            assignee="b",
            target=DATASET,
            timestamp=timestamp,
            extra_constraints=stated,
        )
