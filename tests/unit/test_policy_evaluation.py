"""Tests for evaluating ODRL usage policies against a request (connector.policy.evaluation)."""

from __future__ import annotations

import copy
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.policy import (
    LEFT_OPERANDS,
    LOGICAL_OPERATORS,
    MAX_DEPTH,
    OPERATORS,
    ConstraintResult,
    Decision,
    PolicyError,
    UsageRequest,
    evaluate,
    normalize_offer_policy,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CONSUMER = "urn:hanse:city-b"
OTHER = "urn:hanse:city-z"
EU = "urn:hanse:group:eu-cities"
DE = "urn:hanse:group:de-cities"
US = "urn:hanse:group:us-cities"
AGGREGATOR = "urn:hanse:aggregator-1"
HASH = "sha256:ab12cd34"

REQUEST = UsageRequest(
    assignee=CONSUMER,
    memberships=frozenset({EU, DE}),
    purpose="research",
    task_id="task-1",
    task_hash=HASH,
    aggregator=AGGREGATOR,
    max_rounds=40,
    epsilon=1.0,
    delta=1e-5,
    min_participants=3,
    jurisdiction="DE",
)


def _atom(left: Any, operator: Any, right: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


def _permit(*constraints: Any, action: str = "use") -> dict[str, Any]:
    rule: dict[str, Any] = {"action": action}
    if constraints:
        rule["constraint"] = list(constraints)
    return {"permission": [rule]}


def _evaluate(policy: dict[str, Any], request: UsageRequest = REQUEST, **kwargs: Any) -> Decision:
    return evaluate(policy, request, now=kwargs.pop("now", NOW), **kwargs)


def _only(decision: Decision) -> ConstraintResult:
    assert len(decision.results) == 1
    return decision.results[0]


def _at(when: datetime) -> str:
    return when.isoformat()


# --- every operator against every left operand it applies to ---------------------------------


def _text_cases(left: str, value: str, other: str) -> list[tuple[str, str, Any, bool]]:
    return [
        (left, "eq", value, True),
        (left, "eq", other, False),
        (left, "neq", other, True),
        (left, "neq", value, False),
        (left, "isAnyOf", [other, value], True),
        (left, "isAnyOf", [other], False),
        (left, "isNoneOf", [other], True),
        (left, "isNoneOf", [other, value], False),
        (left, "isAllOf", [value], True),
        (left, "isAllOf", [value, other], False),
        (left, "isPartOf", [other, value], True),
        (left, "isPartOf", [other], False),
    ]


def _ordered_cases(left: str, low: Any, value: Any, high: Any) -> list[tuple[str, str, Any, bool]]:
    return [
        (left, "eq", value, True),
        (left, "eq", high, False),
        (left, "neq", high, True),
        (left, "neq", value, False),
        (left, "gt", low, True),
        (left, "gt", value, False),
        (left, "gteq", value, True),
        (left, "gteq", high, False),
        (left, "lt", high, True),
        (left, "lt", value, False),
        (left, "lteq", value, True),
        (left, "lteq", low, False),
        (left, "isAnyOf", [low, value], True),
        (left, "isAnyOf", [low, high], False),
        (left, "isNoneOf", [low, high], True),
        (left, "isNoneOf", [value, high], False),
        (left, "isAllOf", [value, value], True),
        (left, "isAllOf", [value, high], False),
        (left, "isPartOf", [value, high], True),
        (left, "isPartOf", [low], False),
    ]


HELD_AND_NOT: list[tuple[str, str, Any, bool]] = [
    *_text_cases("purpose", "research", "advertising"),
    *_text_cases("assignee", CONSUMER, OTHER),
    *_text_cases("aggregator", AGGREGATOR, "urn:hanse:aggregator-2"),
    *_text_cases("jurisdiction", "DE", "US"),
    *_ordered_cases("maxRounds", 39, 40, 41),
    *_ordered_cases("minParticipants", 2, 3, 4),
    *_ordered_cases("epsilon", 0.5, 1.0, 1.5),
    *_ordered_cases("delta", 1e-6, 1e-5, 1e-4),
    *_ordered_cases(
        "dateTime", _at(NOW - timedelta(days=1)), _at(NOW), _at(NOW + timedelta(days=1))
    ),
    ("membership", "eq", EU, True),
    ("membership", "eq", US, False),
    ("membership", "neq", US, True),
    ("membership", "neq", EU, False),
    ("membership", "isAnyOf", [US, EU], True),
    ("membership", "isAnyOf", [US], False),
    ("membership", "isNoneOf", [US], True),
    ("membership", "isNoneOf", [US, DE], False),
    ("membership", "isAllOf", [EU, DE], True),
    ("membership", "isAllOf", [EU, US], False),
    ("membership", "isPartOf", [EU, DE, US], True),
    ("membership", "isPartOf", [EU, US], False),
    ("task", "eq", "task-1", True),
    ("task", "eq", {"id": "task-1", "hash": HASH}, True),
    ("task", "eq", {"id": "task-1"}, True),
    ("task", "eq", "task-2", False),
    ("task", "eq", {"id": "task-1", "hash": "sha256:ffff"}, False),
    ("task", "eq", {"id": "task-2", "hash": HASH}, False),
    ("task", "neq", {"id": "task-1", "hash": "sha256:ffff"}, True),
    ("task", "neq", {"id": "task-1", "hash": HASH}, False),
    ("task", "isAnyOf", [{"id": "task-0"}, {"id": "task-1", "hash": HASH}], True),
    ("task", "isAnyOf", ["task-0", {"id": "task-1", "hash": "sha256:ffff"}], False),
    ("task", "isNoneOf", ["task-0", {"id": "task-1", "hash": "sha256:ffff"}], True),
    ("task", "isNoneOf", ["task-0", "task-1"], False),
    ("task", "isAllOf", ["task-1", {"id": "task-1", "hash": HASH}], True),
    ("task", "isAllOf", ["task-1", "task-2"], False),
    ("task", "isPartOf", ["task-0", "task-1"], True),
    ("task", "isPartOf", ["task-0"], False),
]
"""(left operand, operator, right operand, whether REQUEST satisfies it at NOW)."""

MISMATCHED: list[tuple[str, str]] = [
    (left, operator)
    for left in ("purpose", "assignee", "aggregator", "jurisdiction", "membership", "task")
    for operator in ("gt", "gteq", "lt", "lteq")
]
"""Pairs where the operator does not apply to the left operand: a type mismatch."""


@pytest.mark.parametrize(
    ("left", "operator", "right", "expected"),
    HELD_AND_NOT,
    ids=[f"{c[0]}-{c[1]}-{c[3]}-{i}" for i, c in enumerate(HELD_AND_NOT)],
)
def test_operator_on_left_operand(left: str, operator: str, right: Any, expected: bool) -> None:
    # Prepare
    policy = _permit(_atom(left, operator, right))

    # Execute
    decision = _evaluate(policy)

    # Assert
    result = _only(decision)
    assert result.satisfied is expected, result.reason
    assert result.undecided is False
    assert decision.permitted is expected
    assert (result.left_operand, result.operator, result.right_operand) == (left, operator, right)
    assert result.path == "permission[0].constraint[0]"
    assert result.reason.startswith("memberships " if left == "membership" else f"{left} ")


@pytest.mark.parametrize(("left", "operator"), MISMATCHED)
def test_ordering_operator_on_unordered_operand_is_a_type_mismatch(
    left: str, operator: str
) -> None:
    # Prepare
    policy = _permit(_atom(left, operator, "task-1" if left == "task" else "x"))

    # Execute
    decision = _evaluate(policy)

    # Assert
    result = _only(decision)
    assert not decision.permitted
    assert result.satisfied is False
    assert result.undecided is True
    assert result.reason.startswith("type mismatch:")
    assert f"'{operator}'" in result.reason


def test_every_left_operand_and_operator_pair_is_tested_both_ways() -> None:
    # Prepare
    every_pair = set(itertools.product(LEFT_OPERANDS, OPERATORS))

    # Execute
    outcomes: dict[tuple[str, str], set[bool]] = {}
    for left, operator, _, expected in HELD_AND_NOT:
        outcomes.setdefault((left, operator), set()).add(expected)

    # Assert
    assert set(outcomes) | set(MISMATCHED) == every_pair
    assert not set(outcomes) & set(MISMATCHED)
    assert all(seen == {True, False} for seen in outcomes.values())


# --- the semantics the usage contracts rely on --------------------------------------------------


@pytest.mark.parametrize(("rounds", "expected"), [(40, True), (50, True), (51, False)])
def test_max_rounds_bounds_the_requested_rounds(rounds: int, expected: bool) -> None:
    # Prepare
    policy = _permit(_atom("maxRounds", "lteq", 50))
    request = UsageRequest(assignee=CONSUMER, max_rounds=rounds)

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert decision.permitted is expected
    assert _only(decision).actual == rounds


@pytest.mark.parametrize(("participants", "expected"), [(2, False), (3, True), (10, True)])
def test_min_participants_is_a_floor_on_the_request(participants: int, expected: bool) -> None:
    # Prepare
    policy = _permit(_atom("minParticipants", "gteq", 3))
    request = UsageRequest(assignee=CONSUMER, min_participants=participants)

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert decision.permitted is expected


def test_memberships_part_of_a_list_needs_at_least_one_membership() -> None:
    # Prepare
    policy = _permit(_atom("membership", "isPartOf", [EU, DE]))
    request = UsageRequest(assignee=CONSUMER)

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    assert _only(decision).reason == f"memberships [] are not all part of [{EU!r}, {DE!r}]"


def test_memberships_are_shown_sorted() -> None:
    # Prepare
    policy = _permit(_atom("membership", "eq", US))

    # Execute
    result = _only(_evaluate(policy))

    # Assert
    assert result.actual == (DE, EU)
    assert result.reason == f"memberships [{DE!r}, {EU!r}] do not include {US!r}"


def test_task_hash_compares_without_regard_to_case() -> None:
    # Prepare
    policy = _permit(_atom("task", "eq", {"id": "task-1", "hash": HASH.upper()}))

    # Execute
    result = _only(_evaluate(policy))

    # Assert
    assert result.satisfied
    assert result.actual == {"id": "task-1", "hash": HASH}


def test_single_value_is_a_one_element_list_for_list_operators() -> None:
    # Prepare (JSON-LD compaction writes a one-element array as its element)
    policy = _permit(_atom("purpose", "isAnyOf", "research"))

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert _only(decision).reason == "purpose 'research' is one of ['research']"


@pytest.mark.parametrize(
    ("right", "expected"),
    [
        ("2025-06-01T14:00:00+02:00", True),
        ("2025-06-01T13:59:59+02:00", False),
        ("2025-06-01T12:00Z", True),
    ],
)
def test_datetimes_compare_across_timezones(right: str, expected: bool) -> None:
    # Prepare
    policy = _permit(_atom("dateTime", "lteq", right))

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted is expected


# --- logical constraints ----------------------------------------------------------------------

HOLDS = _atom("purpose", "eq", "research")
FAILS = _atom("purpose", "eq", "advertising")
UNDECIDED = _atom("jurisdiction", "eq", "DE")
"""Undecided for a request that states no jurisdiction."""


@pytest.mark.parametrize(
    ("logical", "members", "expected"),
    [
        ("and", [HOLDS, HOLDS], True),
        ("and", [HOLDS, FAILS], False),
        ("andSequence", [HOLDS, HOLDS, HOLDS], True),
        ("andSequence", [FAILS, HOLDS], False),
        ("or", [FAILS, HOLDS], True),
        ("or", [FAILS, FAILS], False),
        ("xone", [FAILS, HOLDS, FAILS], True),
        ("xone", [HOLDS, HOLDS], False),
        ("xone", [FAILS, FAILS], False),
    ],
)
def test_logical_constraint(logical: str, members: list[Any], expected: bool) -> None:
    # Prepare
    policy = _permit({logical: members})

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted is expected
    own, *inner = decision.results
    assert (own.path, own.operator, own.left_operand) == (
        "permission[0].constraint[0]",
        logical,
        None,
    )
    assert own.satisfied is expected
    assert [r.path for r in inner] == [
        f"permission[0].constraint[0].{logical}[{i}]" for i in range(len(members))
    ]


@pytest.mark.parametrize(
    ("logical", "members", "reason"),
    [
        (
            "and",
            [HOLDS, FAILS],
            "not every constraint of and holds: purpose 'research' is not 'advertising'",
        ),
        (
            "or",
            [FAILS, FAILS],
            "none of the 2 constraints of or holds: purpose 'research' is not 'advertising'; "
            "purpose 'research' is not 'advertising'",
        ),
        ("xone", [HOLDS, HOLDS], "2 of the 2 constraints of xone hold, not exactly one"),
        ("xone", [FAILS, FAILS], "none of the 2 constraints of xone holds, not exactly one"),
    ],
)
def test_logical_failure_says_why(logical: str, members: list[Any], reason: str) -> None:
    # Prepare
    policy = _permit({logical: members})

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.results[0].reason == reason
    assert decision.reason() == f"permission[0].constraint[0] is not satisfied: {reason}"


@pytest.mark.parametrize(
    ("logical", "members", "expected"),
    [
        ("or", [UNDECIDED, HOLDS], True),
        ("or", [UNDECIDED, FAILS], None),
        ("and", [UNDECIDED, FAILS], False),
        ("and", [UNDECIDED, HOLDS], None),
        ("xone", [HOLDS, HOLDS, UNDECIDED], False),
        ("xone", [HOLDS, UNDECIDED], None),
    ],
)
def test_undecided_member_decides_only_where_it_could_change_the_outcome(
    logical: str, members: list[Any], expected: bool | None
) -> None:
    # Prepare
    request = UsageRequest(assignee=CONSUMER, purpose="research")

    # Execute
    decision = _evaluate(_permit({logical: members}), request)

    # Assert
    own = decision.results[0]
    assert own.satisfied is (expected is True)
    assert own.undecided is (expected is None)
    assert decision.permitted is (expected is True)


def test_nested_logic_is_evaluated_with_paths() -> None:
    # Prepare
    policy = _permit(
        HOLDS,
        {
            "and": [
                {"or": [FAILS, _atom("maxRounds", "lteq", 50)]},
                {"xone": [_atom("membership", "eq", US), _atom("membership", "eq", EU)]},
            ]
        },
    )

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert [(r.path, r.satisfied) for r in decision.results] == [
        ("permission[0].constraint[0]", True),
        ("permission[0].constraint[1]", True),
        ("permission[0].constraint[1].and[0]", True),
        ("permission[0].constraint[1].and[0].or[0]", False),
        ("permission[0].constraint[1].and[0].or[1]", True),
        ("permission[0].constraint[1].and[1]", True),
        ("permission[0].constraint[1].and[1].xone[0]", False),
        ("permission[0].constraint[1].and[1].xone[1]", True),
    ]
    assert decision.failures == ()


def test_failures_are_the_rule_constraints_not_their_members() -> None:
    # Prepare
    policy = _permit(HOLDS, {"or": [FAILS, FAILS]}, _atom("maxRounds", "gt", 100))

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert [f.path for f in decision.failures] == [
        "permission[0].constraint[1]",
        "permission[0].constraint[2]",
    ]


def test_nesting_beyond_the_depth_limit_is_undecided_without_recursion_error() -> None:
    # Prepare
    constraint: dict[str, Any] = dict(HOLDS)
    for _ in range(1000):
        constraint = {"and": [constraint]}

    # Execute
    decision = _evaluate(_permit(constraint))

    # Assert
    assert not decision.permitted
    deepest = decision.results[-1]
    assert deepest.path == "permission[0].constraint[0]" + ".and[0]" * (MAX_DEPTH)
    assert deepest.undecided
    assert f"deeper than {MAX_DEPTH}" in deepest.reason


@pytest.mark.parametrize(
    ("constraint", "reason_part"),
    [
        ({"and": [HOLDS], "or": [HOLDS]}, "exactly one key"),
        ({"or": [HOLDS], "leftOperand": "purpose"}, "exactly one key"),
        ({"xone": []}, "non-empty list"),
        ({"and": HOLDS}, "non-empty list"),
    ],
)
def test_malformed_logical_constraint_is_undecided(
    constraint: dict[str, Any], reason_part: str
) -> None:
    # Prepare
    policy = _permit(constraint)

    # Execute
    decision = _evaluate(policy)

    # Assert
    result = _only(decision)
    assert not decision.permitted
    assert result.undecided
    assert reason_part in result.reason


def test_every_logical_operator_is_understood() -> None:
    # Prepare
    policies = {key: _permit({key: [HOLDS]}) for key in LOGICAL_OPERATORS}

    # Execute
    decisions = {key: _evaluate(policy) for key, policy in policies.items()}

    # Assert
    assert all(decision.permitted for decision in decisions.values())


# --- rules: actions, prohibitions, obligations ------------------------------------------------


def test_permission_without_constraints_permits() -> None:
    # Prepare
    policy = _permit()

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert decision.results == ()
    assert decision.granted_by == ("permission[0]",)
    assert decision.reason() == "permission[0] permits 'use' and its constraints hold"


def test_one_satisfied_permission_is_enough() -> None:
    # Prepare
    policy = {"permission": [{"action": "use", "constraint": [FAILS]}, {"action": "use"}]}

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert decision.granted_by == ("permission[1]",)
    assert decision.failures == ()


def test_use_permission_covers_any_action() -> None:
    # Prepare
    policy = _permit(HOLDS)

    # Execute
    decision = _evaluate(policy, action="distribute")

    # Assert
    assert decision.permitted
    assert decision.action == "distribute"


def test_narrower_permission_does_not_cover_use() -> None:
    # Prepare
    policy = _permit(HOLDS, action="read")

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    assert decision.results == ()
    assert decision.failures == ()
    assert decision.reason() == "no permission for action 'use'"


def test_policy_with_only_a_prohibition_permits_nothing() -> None:
    # Prepare
    policy = {"prohibition": [{"action": "distribute"}]}

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    assert decision.prohibited_by == ()
    assert decision.reason() == "no permission for action 'use'"


def test_prohibition_wins_over_permission() -> None:
    # Prepare
    policy = {
        **_permit(HOLDS),
        "prohibition": [{"action": "use", "constraint": [_atom("jurisdiction", "eq", "DE")]}],
    }

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    assert decision.granted_by == ("permission[0]",)
    assert decision.prohibited_by == ("prohibition[0]",)
    assert decision.failures == ()
    assert decision.obligations == ()
    assert decision.reason() == "prohibition[0] forbids 'use' and its constraints hold"


def test_unconditional_prohibition_of_the_action_refuses() -> None:
    # Prepare
    policy = {**_permit(), "prohibition": [{"action": "distribute"}]}

    # Execute
    decision = _evaluate(policy, action="distribute")

    # Assert
    assert not decision.permitted
    assert decision.reason() == "prohibition[0] forbids 'distribute'"


def test_prohibition_of_another_action_does_not_apply() -> None:
    # Prepare
    policy = {**_permit(), "prohibition": [{"action": "distribute"}]}

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert decision.prohibited_by == ()


def test_prohibition_whose_constraint_fails_does_not_apply() -> None:
    # Prepare
    policy = {
        **_permit(),
        "prohibition": [{"action": "use", "constraint": [_atom("jurisdiction", "eq", "US")]}],
    }

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert [r.satisfied for r in decision.results] == [False]


def test_prohibition_that_cannot_be_decided_applies() -> None:
    # Prepare (the request leaves out the fact the prohibition is about)
    policy = {
        **_permit(),
        "prohibition": [{"action": "use", "constraint": [_atom("jurisdiction", "eq", "US")]}],
    }
    request = UsageRequest(assignee=CONSUMER)

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    assert decision.prohibited_by == ("prohibition[0]",)
    assert [f.path for f in decision.failures] == ["prohibition[0].constraint[0]"]
    assert decision.reason() == (
        "prohibition[0] forbids 'use' unless shown not to apply, and "
        "prohibition[0].constraint[0] cannot be decided: the request states no "
        "jurisdiction, so jurisdiction eq 'US' cannot be checked"
    )


def test_prohibition_with_unknown_operand_applies() -> None:
    # Prepare
    policy = {
        **_permit(),
        "prohibition": [{"action": "use", "constraint": [_atom("colour", "eq", "red")]}],
    }

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    assert decision.prohibited_by == ("prohibition[0]",)


def test_obligations_and_duties_of_the_granting_permission_are_returned() -> None:
    # Prepare
    duty = {"action": "attribute", "constraint": [_atom("colour", "eq", "red")]}
    obligation = {
        "action": "delete",
        "constraint": [_atom("dateTime", "lteq", "2026-01-01T00:00Z")],
    }
    policy = {
        "permission": [
            {"action": "use", "constraint": [FAILS], "duty": [{"action": "notify"}]},
            {"action": "use", "duty": [duty]},
        ],
        "obligation": [obligation],
    }

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted
    assert decision.obligations == (duty, obligation)
    assert all(r.path.startswith("permission[0]") for r in decision.results)


def test_refusal_returns_no_obligations() -> None:
    # Prepare
    policy = {
        "permission": [{"action": "use", "constraint": [FAILS], "duty": [{"action": "notify"}]}],
        "obligation": [{"action": "delete"}],
    }

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    assert decision.obligations == ()


# --- typed literals ---------------------------------------------------------------------------


def test_numbers_normalised_to_typed_literals_evaluate() -> None:
    # Prepare
    policy = normalize_offer_policy(
        _permit(
            _atom("maxRounds", "lteq", 50),
            _atom("epsilon", "lteq", 1.5),
            _atom("delta", "lt", 0.0001),
            _atom("minParticipants", "isAnyOf", [3, 4, 5]),
        ),
        "offer-1",
    )

    # Execute
    decision = _evaluate(policy)

    # Assert
    constraints = policy["permission"][0]["constraint"]
    assert constraints[0]["rightOperand"] == {"@value": 50, "@type": "xsd:integer"}
    assert constraints[1]["rightOperand"] == {"@value": 1.5, "@type": "xsd:decimal"}
    assert decision.permitted
    assert [r.reason for r in decision.results] == [
        "maxRounds 40 is at most 50",
        "epsilon 1.0 is at most 1.5",
        "delta 1e-05 is less than 0.0001",
        "minParticipants 3 is one of [3, 4, 5]",
    ]


def test_boolean_normalised_to_typed_literal_is_a_type_mismatch_for_purpose() -> None:
    # Prepare
    policy = normalize_offer_policy(_permit(_atom("purpose", "eq", True)), "offer-1")

    # Execute
    decision = _evaluate(policy)

    # Assert
    result = _only(decision)
    assert not decision.permitted
    assert result.undecided
    assert result.reason.startswith("type mismatch: purpose takes a string")


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("maxRounds", {"@value": "50", "@type": "xsd:integer"}, True),
        ("maxRounds", {"@value": 30, "@type": "http://www.w3.org/2001/XMLSchema#integer"}, False),
        ("epsilon", {"@value": "1.5", "@type": "xsd:decimal"}, True),
        ("epsilon", {"@value": 0.5, "@type": "xsd:double"}, False),
        ("epsilon", "1.5", True),
        ("dateTime", {"@value": "2026-01-01T00:00:00Z", "@type": "xsd:dateTime"}, True),
        ("dateTime", {"@value": "2025-01-01T00:00:00Z", "@type": "xsd:dateTime"}, False),
        ("purpose", {"@value": "research", "@type": "xsd:string"}, True),
        ("purpose", {"@value": "research"}, True),
        ("purpose", {"@value": "research", "@language": "en"}, True),
    ],
)
def test_typed_literal_unwraps_to_its_value(left: str, right: Any, expected: bool) -> None:
    # Prepare
    operator = "eq" if left == "purpose" else "lteq"
    policy = _permit(_atom(left, operator, right))

    # Execute
    result = _only(_evaluate(policy))

    # Assert
    assert result.satisfied is expected, result.reason
    assert not result.undecided


@pytest.mark.parametrize(
    ("right", "reason_part"),
    [
        ({"@value": "fifty", "@type": "xsd:integer"}, "is not a valid xsd:integer"),
        ({"@value": True, "@type": "xsd:integer"}, "is not a valid xsd:integer"),
        ({"@value": "NaN", "@type": "xsd:double"}, "is not a valid xsd:double"),
        ({"@value": 50, "@type": "xsd:duration"}, "unknown literal type 'xsd:duration'"),
        ({"@value": 50, "@type": "xsd:integer", "unit": "rounds"}, "unknown keys: unit"),
        ({"@value": "yes", "@type": "xsd:boolean"}, "is not a valid xsd:boolean"),
        ({"@value": "true", "@type": "xsd:boolean"}, "type mismatch: maxRounds takes a number"),
    ],
)
def test_bad_typed_literal_is_undecided(right: dict[str, Any], reason_part: str) -> None:
    # Prepare
    policy = _permit(_atom("maxRounds", "lteq", right))

    # Execute
    result = _only(_evaluate(policy))

    # Assert
    assert result.undecided
    assert reason_part in result.reason


# --- refusals ---------------------------------------------------------------------------------


def test_refuses_wrong_purpose() -> None:
    # Prepare
    policy = _permit(_atom("purpose", "isAnyOf", ["research", "forecasting"]))
    request = UsageRequest(assignee=CONSUMER, purpose="advertising")

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.actual == "advertising"
    assert not failure.undecided
    assert failure.reason == "purpose 'advertising' is not any of ['research', 'forecasting']"
    assert decision.reason() == (
        "permission[0].constraint[0] is not satisfied: "
        "purpose 'advertising' is not any of ['research', 'forecasting']"
    )


def test_refuses_expired_datetime() -> None:
    # Prepare
    policy = _permit(_atom("dateTime", "lteq", "2025-12-31T23:59:59Z"))
    before, after = datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)

    # Execute
    still_valid = _evaluate(policy, now=before)
    expired = _evaluate(policy, now=after)

    # Assert
    assert still_valid.permitted
    assert not expired.permitted
    (failure,) = expired.failures
    assert failure.actual == after
    assert failure.reason == "dateTime 2026-01-01T00:00:00+00:00 is after 2025-12-31T23:59:59+00:00"


def test_refuses_foreign_assignee() -> None:
    # Prepare
    policy = _permit(_atom("assignee", "isPartOf", [CONSUMER, "urn:hanse:city-c"]))
    request = UsageRequest(assignee=OTHER)

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.actual == OTHER
    assert failure.reason == (
        f"assignee {OTHER!r} is not part of [{CONSUMER!r}, 'urn:hanse:city-c']"
    )


def test_refuses_unknown_operand() -> None:
    # Prepare (by hand: normalize_offer_policy would refuse it)
    policy = {"permission": [{"action": "use", "constraint": [_atom("colour", "eq", "red")]}]}

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.left_operand == "colour"
    assert failure.undecided
    assert failure.reason.startswith("unknown left operand 'colour'; known: aggregator, ")


def test_refuses_unknown_operand_even_beside_true_constraints() -> None:
    # Prepare
    policy = _permit(HOLDS, _atom("colour", "neq", "red"), HOLDS)

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    assert [f.path for f in decision.failures] == ["permission[0].constraint[1]"]


@pytest.mark.parametrize("operator", ["hasPart", "odrl:eq", "EQ", 3, ""])
def test_refuses_unknown_operator(operator: Any) -> None:
    # Prepare
    policy = _permit(_atom("purpose", operator, "research"))

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert failure.reason.startswith(f"unknown operator {operator!r}; known: eq, gt, ")


@pytest.mark.parametrize(
    ("constraint", "reason_part"),
    [
        (
            _atom("purpose", "gt", "a"),
            "'gt' compares numbers or datetimes, and purpose is a string",
        ),
        (_atom("purpose", "eq", 50), "purpose takes a string, not 50"),
        (_atom("assignee", "isAnyOf", [CONSUMER, 7]), "assignee takes a string, not 7"),
        (_atom("maxRounds", "lteq", "many"), "maxRounds takes a number, not 'many'"),
        (_atom("maxRounds", "lteq", True), "maxRounds takes a number, not True"),
        (_atom("epsilon", "lteq", "inf"), "epsilon takes a number, not 'inf'"),
        (_atom("dateTime", "lteq", "tomorrow"), "'tomorrow' is not an ISO 8601 datetime"),
        (_atom("dateTime", "lteq", 1767225600), "dateTime takes an ISO 8601 datetime"),
        (_atom("purpose", "eq", ["research"]), "'eq' takes a single value, not a list"),
        (_atom("membership", "isAnyOf", [{"id": EU}]), "membership takes a group id"),
        (_atom("task", "eq", {"id": "task-1", "version": 2}), "task takes a task id or an object"),
        (_atom("task", "eq", {"hash": HASH}), "task takes a task id or an object"),
    ],
)
def test_refuses_type_mismatch(constraint: dict[str, Any], reason_part: str) -> None:
    # Prepare
    policy = _permit(constraint)

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert reason_part in failure.reason


@pytest.mark.parametrize(
    ("constraint", "missing"),
    [
        (_atom("purpose", "eq", "research"), "purpose"),
        (_atom("purpose", "neq", "advertising"), "purpose"),
        (_atom("purpose", "isNoneOf", ["advertising"]), "purpose"),
        (_atom("aggregator", "eq", AGGREGATOR), "aggregator"),
        (_atom("jurisdiction", "eq", "DE"), "jurisdiction"),
        (_atom("maxRounds", "lteq", 50), "max_rounds"),
        (_atom("minParticipants", "gteq", 3), "min_participants"),
        (_atom("epsilon", "lteq", 1), "epsilon"),
        (_atom("delta", "lteq", 1e-5), "delta"),
        (_atom("task", "eq", "task-1"), "task id"),
        (_atom("task", "isNoneOf", ["task-9"]), "task id"),
    ],
)
def test_refuses_missing_fact(constraint: dict[str, Any], missing: str) -> None:
    # Prepare
    request = UsageRequest(assignee=CONSUMER)

    # Execute
    decision = _evaluate(_permit(constraint), request)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert failure.actual is None
    assert failure.reason.startswith(f"the request states no {missing}, so ")


def test_refuses_missing_task_hash_when_the_policy_names_one() -> None:
    # Prepare
    policy = _permit(_atom("task", "eq", {"id": "task-1", "hash": HASH}))
    request = UsageRequest(assignee=CONSUMER, task_id="task-1")

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert failure.reason.startswith("the request states no task hash")


def test_empty_fact_counts_as_missing() -> None:
    # Prepare
    policy = _permit(_atom("assignee", "neq", OTHER))
    request = UsageRequest(assignee="")

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    assert decision.failures[0].reason.startswith("the request states no assignee")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_refuses_non_finite_request_number(value: float) -> None:
    # Prepare
    policy = _permit(_atom("epsilon", "neq", 5))
    request = UsageRequest(assignee=CONSUMER, epsilon=value)

    # Execute
    decision = _evaluate(policy, request)

    # Assert
    assert not decision.permitted
    assert "is not a finite number" in decision.failures[0].reason


@pytest.mark.parametrize(
    ("constraint", "request_", "reason_part"),
    [
        (
            _atom("purpose", "isNoneOf", ["advertising"]),
            UsageRequest(assignee=CONSUMER, purpose=5),  # type: ignore[arg-type]
            "the request's purpose 5 is not a string",
        ),
        (
            _atom("task", "neq", "task-9"),
            UsageRequest(assignee=CONSUMER, task_id=9),  # type: ignore[arg-type]
            "the request's task_id 9 is not a string",
        ),
        (
            _atom("maxRounds", "lteq", 50),
            UsageRequest(assignee=CONSUMER, max_rounds="10"),  # type: ignore[arg-type]
            "the request's max_rounds '10' is not a finite number",
        ),
        (
            _atom("membership", "isNoneOf", [US]),
            UsageRequest(assignee=CONSUMER, memberships=EU),  # type: ignore[arg-type]
            "are not a set of strings",
        ),
    ],
)
def test_refuses_request_fact_of_the_wrong_type(
    constraint: dict[str, Any], request_: UsageRequest, reason_part: str
) -> None:
    # Prepare (a caller building the request from untyped JSON)
    policy = _permit(constraint)

    # Execute
    decision = _evaluate(policy, request_)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert reason_part in failure.reason


@pytest.mark.parametrize("right", ["2025-12-31T23:59:59", "2025-12-31"])
def test_refuses_datetime_without_timezone(right: str) -> None:
    # Prepare
    policy = _permit(_atom("dateTime", "lteq", right))

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert failure.reason == f"the datetime {right!r} states no timezone; a policy's must"


@pytest.mark.parametrize(
    ("constraint", "reason_part"),
    [
        ("purpose=research", "a constraint must be an object"),
        ({"leftOperand": "purpose", "operator": "eq"}, "needs a 'rightOperand'"),
        (_atom("purpose", "eq", None), "needs a 'rightOperand'"),
        ({**_atom("maxRounds", "lteq", 50), "unit": "rounds"}, "unknown constraint keys"),
        (_atom("purpose", "isAnyOf", []), "needs at least one value"),
    ],
)
def test_refuses_malformed_constraint(constraint: Any, reason_part: str) -> None:
    # Prepare
    policy = _permit(constraint)

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert not decision.permitted
    (failure,) = decision.failures
    assert failure.undecided
    assert reason_part in failure.reason


def test_constraint_id_is_allowed() -> None:
    # Prepare
    policy = _permit({**HOLDS, "@id": "urn:constraint:1"})

    # Execute
    decision = _evaluate(policy)

    # Assert
    assert decision.permitted


# --- structure, purity and the public surface -------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        (["use"], ""),
        ({"permission": {"action": "use"}}, "permission"),
        ({"permission": ["use"]}, "permission[0]"),
        ({"permission": [{"constraint": []}]}, "permission[0].action"),
        ({"prohibition": [{"action": {"@id": "use"}}]}, "prohibition[0].action"),
        ({"permission": [{"action": "use", "constraint": HOLDS}]}, "permission[0].constraint"),
        ({"permission": [{"action": "use", "duty": {"action": "x"}}]}, "permission[0].duty"),
        ({"permission": [{"action": "use"}], "obligation": [3]}, "obligation[0]"),
    ],
)
def test_unreadable_policy_raises_policy_error(policy: Any, path: str) -> None:
    # Prepare
    given = policy

    # Execute
    with pytest.raises(PolicyError) as raised:
        _evaluate(given)

    # Assert
    assert raised.value.path == path


def test_naive_now_is_refused() -> None:
    # Prepare
    naive = datetime(2025, 6, 1, 12, 0)

    # Execute
    with pytest.raises(ValueError, match="timezone-aware") as raised:
        evaluate(_permit(), REQUEST, now=naive)

    # Assert
    assert "now" in str(raised.value)


def test_empty_action_is_refused() -> None:
    # Prepare
    policy = _permit()

    # Execute
    with pytest.raises(ValueError, match="action") as raised:
        _evaluate(policy, action="")

    # Assert
    assert raised.type is ValueError


def test_evaluation_does_not_mutate_the_policy() -> None:
    # Prepare
    policy = {
        **_permit(HOLDS, {"or": [FAILS, _atom("maxRounds", "lteq", {"@value": 50})]}),
        "prohibition": [{"action": "distribute"}],
        "obligation": [{"action": "delete"}],
    }
    before = copy.deepcopy(policy)

    # Execute
    first = _evaluate(policy)
    second = _evaluate(policy)

    # Assert
    assert policy == before
    assert first == second


def test_time_comes_only_from_now() -> None:
    # Prepare
    policy = _permit(_atom("dateTime", "lt", "2000-01-02T00:00:00+00:00"))
    long_ago = datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=5)))

    # Execute
    decision = _evaluate(policy, now=long_ago)

    # Assert
    assert decision.permitted
    assert _only(decision).actual == long_ago


def test_usage_request_states_only_the_assignee_by_default() -> None:
    # Prepare
    request = UsageRequest(assignee=CONSUMER)

    # Execute
    facts = [
        request.purpose,
        request.task_id,
        request.task_hash,
        request.aggregator,
        request.max_rounds,
        request.epsilon,
        request.delta,
        request.min_participants,
        request.jurisdiction,
    ]

    # Assert
    assert request.memberships == frozenset()
    assert facts == [None] * len(facts)


def test_results_are_frozen() -> None:
    # Prepare
    decision = _evaluate(_permit(HOLDS))

    # Execute
    with pytest.raises(AttributeError) as raised:
        decision.results[0].satisfied = False  # type: ignore[misc]

    # Assert
    assert "satisfied" in str(raised.value)


def test_dsp_agreement_example_is_evaluated(dsp_dir: Path) -> None:
    # Prepare
    message = json.loads(
        (dsp_dir / "negotiation/example/contract-agreement-message-full.json").read_text("utf-8")
    )
    agreement = message["agreement"]
    before, after = datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)

    # Execute
    in_time = _evaluate(agreement, now=before)
    too_late = _evaluate(agreement, now=after)

    # Assert
    assert in_time.permitted
    assert in_time.granted_by == ("permission[0]",)
    assert not too_late.permitted
    assert too_late.reason() == (
        "permission[0].constraint[0] is not satisfied: "
        "dateTime 2024-01-01T00:00:00+00:00 is after 2023-12-31T06:00:00+00:00"
    )
    partner = [r for r in too_late.results if r.left_operand == "partner"]
    assert partner
    assert all(r.undecided and "unknown left operand 'partner'" in r.reason for r in partner)
