"""Tests for the check a city runs before any data is read (connector.agreement_terms)."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.agreement_terms import AgreementTerms, UseRefusedError, agreement_id_of, check_use
from connector.negotiation.messages import build_agreement
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState, Role
from connector.negotiation.usage import usage_constraints

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXPIRY = "2026-06-01T00:00:00Z"
CITY = "urn:hanse:city-a"
RESEARCHER = "urn:hanse:researcher"
TASK = "forecast-next-hour"
HASH = "sha256:" + "0f" * 32
AGREEMENT_ID = "urn:uuid:agreement-1"

OFFER: dict[str, Any] = {
    "@id": "counts-research",
    "@type": "Offer",
    "target": "counts",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["forecasting"]},
                {
                    "leftOperand": "dateTime",
                    "operator": "lt",
                    "rightOperand": {"@value": EXPIRY, "@type": "xsd:dateTime"},
                },
                {
                    "leftOperand": "maxRounds",
                    "operator": "lteq",
                    "rightOperand": {"@value": 10, "@type": "xsd:integer"},
                },
            ],
        }
    ],
}

OPEN_OFFER: dict[str, Any] = {**OFFER, "permission": [{"action": "use"}]}
"""An offer that permits any use, forever."""

USAGE: dict[str, Any] = {
    "purpose": "forecasting",
    "task": {"id": TASK, "hash": HASH},
    "max_rounds": 5,
    "epsilon": 8.0,
    "delta": 1e-5,
}


def a_record(
    usage: dict[str, Any] | None = None,
    offer: dict[str, Any] | None = None,
    **fields: Any,
) -> NegotiationRecord:
    """A FINALIZED provider-side negotiation whose agreement is the offer plus the usage."""
    stated = USAGE if usage is None else usage
    agreement = build_agreement(
        agreement_id=AGREEMENT_ID,
        offer=OFFER if offer is None else offer,
        assigner=CITY,
        assignee=RESEARCHER,
        target="counts",
        timestamp=NOW - timedelta(days=1),
        extra_constraints=usage_constraints(stated),
    )
    record = NegotiationRecord(
        id="urn:uuid:p-1",
        role=Role.PROVIDER,
        state=NegotiationState.FINALIZED,
        consumer_pid="urn:uuid:c-1",
        provider_pid="urn:uuid:p-1",
        counterparty_id=RESEARCHER,
        counterparty_address="researcher.example:7443",
        dataset_id="counts",
        offer_id="counts-research",
        offer=OFFER,
        usage=stated,
        agreement=agreement,
    )
    return replace(record, **fields)


def check(record: NegotiationRecord, **overrides: Any) -> AgreementTerms:
    arguments: dict[str, Any] = {
        "consumer": RESEARCHER,
        "task_id": TASK,
        "task_hash": HASH,
        "rounds": 5,
        "now": NOW,
    }
    return check_use(record, **{**arguments, **overrides})


def refused(record: NegotiationRecord, match: str, **overrides: Any) -> UseRefusedError:
    """Assert ``check_use`` refuses with ``match`` and leaves the record as it was."""
    before = copy.deepcopy(record)
    with pytest.raises(UseRefusedError, match=match) as caught:
        check(record, **overrides)
    assert record == before
    return caught.value


# --- the terms of a live agreement --------------------------------------------------------------


def test_a_live_agreement_gives_its_terms() -> None:
    # Prepare
    record = a_record()

    # Execute
    terms = check(record)

    # Assert
    assert terms == AgreementTerms(
        agreement_id=AGREEMENT_ID,
        negotiation_id="urn:uuid:p-1",
        consumer=RESEARCHER,
        dataset_id="counts",
        task_id=TASK,
        task_hash=HASH,
        aggregator=RESEARCHER,
        max_rounds=5,
        epsilon=8.0,
        delta=1e-5,
        min_participants=None,
    )


def test_the_aggregator_is_the_stated_one_when_stated() -> None:
    # Prepare
    record = a_record({**USAGE, "aggregator": "urn:hanse:aggregator"})

    # Execute
    terms = check(record)

    # Assert
    assert terms.aggregator == "urn:hanse:aggregator"


def test_fewer_rounds_than_stated_are_covered() -> None:
    # Execute
    terms = check(a_record(), rounds=1)

    # Assert
    assert terms.max_rounds == 5


def test_a_use_without_stated_limits_has_none() -> None:
    # Prepare
    record = a_record({"purpose": "forecasting", "task": {"id": TASK}}, OPEN_OFFER)

    # Execute
    terms = check(record, rounds=50, task_hash="sha256:" + "11" * 32)

    # Assert
    assert terms.max_rounds is None
    assert terms.epsilon is None
    assert terms.delta is None
    assert terms.min_participants is None
    assert terms.task_hash == ""
    assert terms.aggregator == RESEARCHER


def test_whole_numbers_stated_as_json_numbers_of_either_kind_are_read() -> None:
    # Prepare: a peer may send integers as decimals and decimals as integers.
    record = a_record({**USAGE, "max_rounds": 5.0, "epsilon": 8, "delta": 0})

    # Execute
    terms = check(record)

    # Assert
    assert terms.max_rounds == 5
    assert isinstance(terms.max_rounds, int)
    assert terms.epsilon == 8.0
    assert isinstance(terms.epsilon, float)
    assert terms.delta == 0.0


@pytest.mark.parametrize("stated", [3, 3.0], ids=["integer", "decimal"])
def test_the_stated_fewest_cities_per_round_are_in_the_terms(stated: float) -> None:
    # Prepare: the city's offer asks for rounds of at least 3 cities.
    offer = copy.deepcopy(OFFER)
    offer["permission"][0]["constraint"].append(
        {
            "leftOperand": "minParticipants",
            "operator": "gteq",
            "rightOperand": {"@value": 3, "@type": "xsd:integer"},
        }
    )
    record = a_record({**USAGE, "min_participants": stated}, offer)

    # Execute
    terms = check(record)

    # Assert
    assert terms.min_participants == 3
    assert isinstance(terms.min_participants, int)


def test_the_id_of_a_record_without_agreement_is_empty() -> None:
    # Prepare
    record = a_record(agreement=None)

    # Execute / Assert
    assert agreement_id_of(record) == ""
    assert agreement_id_of(a_record()) == AGREEMENT_ID
    assert agreement_id_of(a_record(agreement={"@id": 5})) == ""


# --- refusals -----------------------------------------------------------------------------------


def test_a_consumer_side_record_is_refused() -> None:
    # Prepare
    record = a_record(role=Role.CONSUMER)

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID}: this node is not its provider")


@pytest.mark.parametrize(
    "state", [s for s in NegotiationState if s is not NegotiationState.FINALIZED]
)
def test_a_negotiation_that_is_not_finalized_is_refused(state: NegotiationState) -> None:
    # Prepare
    record = a_record(state=state)

    # Execute / Assert
    refused(record, f"^agreement {AGREEMENT_ID} is {state.value}, not FINALIZED$")


def test_a_terminated_negotiation_is_refused_with_its_reason() -> None:
    # Prepare
    record = a_record(state=NegotiationState.TERMINATED, reason="revoked by the operator")

    # Execute / Assert
    refused(
        record,
        rf"^agreement {AGREEMENT_ID} is TERMINATED, not FINALIZED \(revoked by the operator\)$",
    )


def test_a_negotiation_without_agreement_is_named_by_its_own_id() -> None:
    # Prepare
    record = a_record(agreement=None, state=NegotiationState.REQUESTED)

    # Execute / Assert
    refused(record, "^agreement urn:uuid:p-1 is REQUESTED, not FINALIZED")


def test_another_consumer_is_refused() -> None:
    # Execute / Assert
    refused(
        a_record(),
        f"agreement {AGREEMENT_ID} was made with {RESEARCHER}, not urn:hanse:intruder",
        consumer="urn:hanse:intruder",
    )


def test_another_task_is_refused() -> None:
    # Execute / Assert
    refused(
        a_record(),
        f"agreement {AGREEMENT_ID} covers task {TASK}, not other-task",
        task_id="other-task",
    )


def test_a_use_of_an_agreement_that_states_no_task_is_refused() -> None:
    # Prepare
    record = a_record({"purpose": "forecasting"}, OPEN_OFFER)

    # Execute / Assert
    refused(record, rf"agreement {AGREEMENT_ID} covers task \(none\), not {TASK}")


def test_another_task_hash_is_refused() -> None:
    # Prepare
    other = "sha256:" + "ee" * 32

    # Execute / Assert
    refused(
        a_record(),
        f"agreement {AGREEMENT_ID} covers task {TASK} with hash {HASH}, not {other}",
        task_hash=other,
    )


def test_more_rounds_than_stated_are_refused() -> None:
    # Execute / Assert
    refused(a_record(), f"agreement {AGREEMENT_ID} allows 5 rounds; the run asks for 6", rounds=6)


def test_a_round_limit_stated_as_a_decimal_still_limits() -> None:
    # Prepare
    record = a_record({**USAGE, "max_rounds": 5.0})

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} allows 5.0 rounds; the run asks for 6", rounds=6)


@pytest.mark.parametrize("value", ["5", True, float("inf"), [5]])
def test_a_round_limit_that_is_not_a_number_is_refused_not_ignored(value: object) -> None:
    # Prepare
    record = a_record({**USAGE, "max_rounds": value}, OPEN_OFFER)

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} states max_rounds .* which is not a number")


def test_a_fractional_round_limit_is_refused() -> None:
    # Prepare
    record = a_record({**USAGE, "max_rounds": 4.5})

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} states max_rounds 4.5, not a whole number")


@pytest.mark.parametrize("value", ["3", True, float("nan"), [3]])
def test_a_participant_floor_that_is_not_a_number_is_refused_not_ignored(value: object) -> None:
    # Prepare
    record = a_record({**USAGE, "min_participants": value}, OPEN_OFFER)

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} states min_participants .* which is not a number")


def test_a_fractional_participant_floor_is_refused() -> None:
    # Prepare
    record = a_record({**USAGE, "min_participants": 2.5}, OPEN_OFFER)

    # Execute / Assert
    refused(record, f"^agreement {AGREEMENT_ID} states min_participants 2.5, not a whole number$")


@pytest.mark.parametrize("key", ["epsilon", "delta"])
def test_a_privacy_budget_that_is_not_a_number_is_refused_not_ignored(key: str) -> None:
    # Prepare: a policy that does not look at the budget, so only check_use can catch it.
    record = a_record({**USAGE, key: "8.0"})
    record = replace(record, agreement={"@id": AGREEMENT_ID, "permission": [{"action": "use"}]})

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} states {key} '8.0', which is not a number")


def test_a_task_that_is_not_an_object_is_refused() -> None:
    # Prepare
    record = a_record({**USAGE, "task": TASK}, OPEN_OFFER)

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} states its task as '{TASK}', not as an id")


def test_an_expired_agreement_is_refused_naming_the_expiry() -> None:
    # Prepare
    record = a_record()
    after = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)

    # Execute
    error = refused(record, f"agreement {AGREEMENT_ID} no longer permits the use", now=after)

    # Assert
    assert "dateTime" in str(error)
    assert "2026-06-01T00:00:00+00:00" in str(error)
    assert "bound method" not in str(error)


def test_the_agreement_is_live_until_just_before_it_expires() -> None:
    # Execute
    terms = check(a_record(), now=datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC))

    # Assert
    assert terms.agreement_id == AGREEMENT_ID


def test_a_use_the_agreement_does_not_permit_is_refused() -> None:
    # Prepare: the stored usage says research, the agreement permits forecasting only.
    record = a_record()
    record = replace(record, usage={**USAGE, "purpose": "research"})

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} no longer permits the use: .*purpose")


def test_a_finalized_record_without_an_agreement_is_refused() -> None:
    # Prepare
    record = a_record(agreement=None)

    # Execute / Assert
    refused(record, "agreement urn:uuid:p-1 no longer permits the use: no permission")


@pytest.mark.parametrize(
    "agreement",
    [
        {"@id": AGREEMENT_ID, "permission": "use everything"},
        {"@id": AGREEMENT_ID, "permission": [{"constraint": []}]},
        {"@id": AGREEMENT_ID, "permission": [{"action": "use"}], "prohibition": {"action": "x"}},
    ],
    ids=["rules-not-a-list", "rule-without-action", "prohibition-not-a-list"],
)
def test_an_unreadable_policy_is_refused(agreement: dict[str, Any]) -> None:
    # Prepare
    record = a_record(agreement=agreement)

    # Execute / Assert
    refused(record, f"agreement {AGREEMENT_ID} has an unreadable policy")
