"""The usage statement: validation, its ``eq``-constraint form, and the facts it yields."""

from __future__ import annotations

import pytest

from connector.errors import ConnectorError
from connector.negotiation.usage import (
    check_usage,
    usage_constraints,
    usage_from_constraints,
    usage_request,
)

FULL = {
    "purpose": "forecasting",
    "task": {"id": "next-hour", "hash": "sha256:" + "ab" * 32},
    "aggregator": "urn:hanse:researcher",
    "max_rounds": 5,
    "epsilon": 2.5,
    "delta": 1e-5,
    "min_participants": 3,
    "jurisdiction": "NZ",
}


def test_a_full_statement_survives_the_round_trip_through_constraints() -> None:
    # Execute
    constraints = usage_constraints(check_usage(FULL))
    back = usage_from_constraints(constraints)

    # Assert
    assert back == FULL
    assert {
        "leftOperand": "maxRounds",
        "operator": "eq",
        "rightOperand": {"@value": 5, "@type": "xsd:integer"},
    } in constraints
    assert all(c["operator"] == "eq" for c in constraints)


def test_facts_for_the_evaluator() -> None:
    # Execute
    request = usage_request(check_usage(FULL), assignee="urn:hanse:researcher")

    # Assert
    assert request.assignee == "urn:hanse:researcher"
    assert request.purpose == "forecasting"
    assert request.task_id == "next-hour"
    assert request.task_hash == FULL["task"]["hash"]
    assert (request.max_rounds, request.epsilon, request.min_participants) == (5, 2.5, 3)


@pytest.mark.parametrize(
    ("usage", "field", "words"),
    [
        ({}, "usage.purpose", "state the purpose"),
        ({"purpose": "x", "colour": "red"}, "usage.colour", "unknown usage key"),
        ({"purpose": "x", "max_rounds": 2.5}, "usage.max_rounds", "whole number"),
        ({"purpose": "x", "epsilon": "high"}, "usage.epsilon", "must be a number"),
        ({"purpose": "x", "epsilon": True}, "usage.epsilon", "must be a number"),
        ({"purpose": "x", "task": "next-hour"}, "usage.task", "task must be"),
        ({"purpose": 7}, "usage.purpose", "must be a string"),
    ],
)
def test_bad_statements_are_refused_naming_the_key(usage, field, words) -> None:
    # Execute
    with pytest.raises(ConnectorError) as caught:
        check_usage(usage)

    # Assert
    assert caught.value.reason == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.violations] == [field]
    assert words in caught.value.message


def test_constraints_other_than_eq_on_known_operands_are_not_read_as_usage() -> None:
    # Execute
    usage = usage_from_constraints(
        [
            {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["a", "b"]},
            {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2030-01-01T00:00:00Z"},
            {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"},
        ]
    )

    # Assert
    assert usage == {"purpose": "research"}
