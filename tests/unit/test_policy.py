"""Tests for ODRL offer policies as Hanse reads them (connector.policy)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from connector.policy import (
    LEFT_OPERANDS,
    LOGICAL_OPERATORS,
    MAX_DEPTH,
    OPERATORS,
    PolicyError,
    normalize_offer_policy,
)

DSP_BASE = "https://w3id.org/dspace/2025/1/"
OFFER_SCHEMA = DSP_BASE + "negotiation/contract-schema.json#/definitions/Offer"

PURPOSE = {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}


def _policy(*constraints: Any, **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": "use"}
    if constraints:
        rule["constraint"] = list(constraints)
    return {"permission": [rule], **extra}


def _refusal(policy: Any) -> PolicyError:
    with pytest.raises(PolicyError) as raised:
        normalize_offer_policy(policy, "offer-1")
    return raised.value


@pytest.fixture(scope="module")
def offer_validate(dsp_dir: Path) -> Callable[[Any], None]:
    """Validate a document against the DSP 2025-1 ``Offer`` definition."""
    from referencing import Registry, Resource

    resources = []
    for path in dsp_dir.rglob("*-schema.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = DSP_BASE + path.relative_to(dsp_dir).as_posix()
        resources.append((uri, Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)
    validator = jsonschema.Draft201909Validator({"$ref": OFFER_SCHEMA}, registry=registry)
    return validator.validate


# --- accepted policies ------------------------------------------------------------------------


def test_normalised_policy_is_an_offer_with_the_offer_id() -> None:
    # Prepare
    policy = {
        "@context": "https://w3id.org/dspace/2025/1/context.jsonld",
        "@id": "urn:other:id",
        **_policy(PURPOSE),
    }

    # Execute
    result = normalize_offer_policy(policy, "offer-1")

    # Assert
    assert result == {"@id": "offer-1", "@type": "Offer", **_policy(PURPOSE)}
    assert "@context" not in result


def test_explicit_offer_type_is_kept() -> None:
    # Prepare
    policy = {"@type": "Offer", **_policy()}

    # Execute
    result = normalize_offer_policy(policy, "offer-1")

    # Assert
    assert result["@type"] == "Offer"
    assert result["permission"] == [{"action": "use"}]


def test_input_is_not_mutated_nor_shared() -> None:
    # Prepare
    policy = {"@context": ["x"], **_policy({"and": [PURPOSE, PURPOSE]})}
    before = copy.deepcopy(policy)

    # Execute
    result = normalize_offer_policy(policy, "offer-1")
    result["permission"][0]["constraint"][0]["and"].clear()

    # Assert
    assert policy == before


def test_prohibition_obligation_duty_and_profile_are_accepted() -> None:
    # Prepare
    policy = {
        "profile": "https://hanse.example/profile",
        "permission": [
            {"action": "use", "duty": [{"action": "attribute", "constraint": [PURPOSE]}]}
        ],
        "prohibition": [{"action": "distribute"}],
        "obligation": [{"action": "delete"}],
    }

    # Execute
    result = normalize_offer_policy(policy, "offer-1")

    # Assert
    assert result["prohibition"] == [{"action": "distribute"}]
    assert result["obligation"] == [{"action": "delete"}]
    assert result["permission"][0]["duty"][0]["action"] == "attribute"


def test_prohibition_alone_is_enough() -> None:
    # Prepare
    policy = {"prohibition": [{"action": "distribute"}]}

    # Execute
    result = normalize_offer_policy(policy, "offer-1")

    # Assert
    assert result == {"@id": "offer-1", "@type": "Offer", "prohibition": [{"action": "distribute"}]}


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_every_operator_is_accepted(operator: str) -> None:
    # Prepare
    constraint = {"leftOperand": "purpose", "operator": operator, "rightOperand": "research"}

    # Execute
    result = normalize_offer_policy(_policy(constraint), "offer-1")

    # Assert
    assert result["permission"][0]["constraint"] == [constraint]


def test_the_operators_are_the_design_subset() -> None:
    # Prepare
    design = {"eq", "neq", "gt", "gteq", "lt", "lteq", "isAnyOf", "isAllOf", "isNoneOf", "isPartOf"}

    # Execute
    known = set(OPERATORS)

    # Assert
    assert known == design


@pytest.mark.parametrize("left", sorted(LEFT_OPERANDS))
def test_every_left_operand_is_accepted(left: str) -> None:
    # Prepare
    constraint = {"leftOperand": left, "operator": "eq", "rightOperand": "x", "@id": "c1"}

    # Execute
    result = normalize_offer_policy(_policy(constraint), "offer-1")

    # Assert
    assert result["permission"][0]["constraint"] == [constraint]


@pytest.mark.parametrize("logical", sorted(LOGICAL_OPERATORS))
def test_logical_constraints_nest(logical: str) -> None:
    # Prepare
    inner = {"or": [PURPOSE, {"leftOperand": "epsilon", "operator": "lteq", "rightOperand": "1"}]}
    constraint = {logical: [PURPOSE, inner]}

    # Execute
    result = normalize_offer_policy(_policy(constraint), "offer-1")

    # Assert
    assert result["permission"][0]["constraint"] == [constraint]


def _nested(wrappers: int) -> dict[str, Any]:
    constraint: dict[str, Any] = dict(PURPOSE)
    for _ in range(wrappers):
        constraint = {"and": [constraint]}
    return constraint


def test_nesting_up_to_the_depth_limit_is_accepted() -> None:
    # Prepare
    constraint = _nested(MAX_DEPTH - 1)

    # Execute
    result = normalize_offer_policy(_policy(constraint), "offer-1")

    # Assert
    assert result["permission"][0]["constraint"] == [constraint]


def test_nesting_beyond_the_depth_limit_is_refused() -> None:
    # Prepare
    policy = _policy(_nested(MAX_DEPTH))

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "permission[0].constraint[0]" + ".and[0]" * MAX_DEPTH
    assert f"deeper than {MAX_DEPTH}" in error.message


def test_very_deep_nesting_is_refused_without_recursion_error() -> None:
    # Prepare
    policy = _policy(_nested(1000))

    # Execute
    error = _refusal(policy)

    # Assert
    assert f"deeper than {MAX_DEPTH}" in error.message


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [[], "use", None, 3])
def test_policy_that_is_not_a_mapping_is_refused(policy: Any) -> None:
    # Prepare
    given = policy

    # Execute
    error = _refusal(given)

    # Assert
    assert error.path == ""
    assert error.message == "a policy must be a JSON object"
    assert str(error) == "a policy must be a JSON object"


@pytest.mark.parametrize("kind", ["Agreement", "Set", "odrl:Offer"])
def test_wrong_type_is_refused(kind: str) -> None:
    # Prepare
    policy = {"@type": kind, **_policy()}

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "@type"
    assert repr(kind) in error.message
    assert str(error) == f"@type: {error.message}"


def test_target_is_refused() -> None:
    # Prepare
    policy = {"target": "urn:dataset:1", **_policy()}

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "target"
    assert "no target" in error.message


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"obligation": [{"action": "delete"}]},
        {"permission": [], "prohibition": []},
        {"profile": "p"},
    ],
)
def test_policy_without_permission_or_prohibition_is_refused(policy: dict[str, Any]) -> None:
    # Prepare
    given = policy

    # Execute
    error = _refusal(given)

    # Assert
    assert error.path == ""
    assert "at least one permission or prohibition" in error.message


def test_unknown_top_level_key_is_refused() -> None:
    # Prepare
    policy = _policy(assigner="urn:hanse:city-a")

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "assigner"
    assert "unknown policy key 'assigner'" in error.message


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ({"permission": {"action": "use"}}, "permission"),
        ({"permission": "use"}, "permission"),
        ({"permission": [{"action": "use"}], "prohibition": []}, "prohibition"),
        ({"permission": [{"action": "use"}], "obligation": {"action": "x"}}, "obligation"),
    ],
)
def test_rule_list_that_is_not_a_non_empty_list_is_refused(
    policy: dict[str, Any], path: str
) -> None:
    # Prepare
    given = policy

    # Execute
    error = _refusal(given)

    # Assert
    assert error.path == path
    assert error.message == "must be a non-empty list of rules"


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"constraint": [PURPOSE]}, "permission[0].action"),
        ({"action": ""}, "permission[0].action"),
        ({"action": {"@id": "use"}}, "permission[0].action"),
        ({"action": "use", "duty": [{"constraint": []}]}, "permission[0].duty[0].action"),
    ],
)
def test_rule_without_action_is_refused(rule: dict[str, Any], path: str) -> None:
    # Prepare
    policy = {"permission": [rule]}

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == path
    assert "needs an 'action'" in error.message


def test_rule_that_is_not_a_mapping_is_refused() -> None:
    # Prepare
    policy = {"permission": [{"action": "use"}, "use"]}

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "permission[1]"
    assert "must be an object" in error.message


def test_unknown_rule_key_is_refused() -> None:
    # Prepare
    policy = {"prohibition": [{"action": "use", "target": "urn:x"}]}

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "prohibition[0].target"
    assert "unknown rule key 'target'" in error.message


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        (
            {"action": "use", "constraint": PURPOSE},
            "permission[0].constraint",
            "list of constraints",
        ),
        ({"action": "use", "duty": {"action": "x"}}, "permission[0].duty", "list of duties"),
    ],
)
def test_constraint_or_duty_that_is_not_a_list_is_refused(
    rule: dict[str, Any], path: str, message: str
) -> None:
    # Prepare
    policy = {"permission": [rule]}

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == path
    assert message in error.message


def test_constraint_that_is_not_a_mapping_is_refused() -> None:
    # Prepare
    policy = _policy(PURPOSE, "purpose=research")

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "permission[0].constraint[1]"
    assert error.message == "a constraint must be an object"


@pytest.mark.parametrize("missing", ["leftOperand", "operator", "rightOperand"])
def test_atomic_constraint_missing_a_key_is_refused(missing: str) -> None:
    # Prepare
    constraint = {k: v for k, v in PURPOSE.items() if k != missing}

    # Execute
    error = _refusal(_policy(constraint))

    # Assert
    assert error.path == "permission[0].constraint[0]"
    assert error.message == f"an atomic constraint needs '{missing}'"


def test_unknown_left_operand_is_refused_and_the_known_are_listed() -> None:
    # Prepare
    constraint = {"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"}

    # Execute
    error = _refusal(_policy(PURPOSE, constraint))

    # Assert
    assert error.path == "permission[0].constraint[1].leftOperand"
    assert "unknown left operand 'spatial'" in error.message
    assert ", ".join(sorted(LEFT_OPERANDS)) in error.message


def test_unknown_operator_is_refused_and_the_known_are_listed() -> None:
    # Prepare
    constraint = {"leftOperand": "purpose", "operator": "like", "rightOperand": "res%"}

    # Execute
    error = _refusal(_policy(constraint))

    # Assert
    assert error.path == "permission[0].constraint[0].operator"
    assert "unknown operator 'like'" in error.message
    assert ", ".join(sorted(OPERATORS)) in error.message


@pytest.mark.parametrize(
    "constraint",
    [
        {"leftOperand": ["purpose"], "operator": "eq", "rightOperand": "research"},
        {"leftOperand": {"@id": "purpose"}, "operator": "eq", "rightOperand": "research"},
        {"leftOperand": "purpose", "operator": {"@id": "eq"}, "rightOperand": "research"},
    ],
)
def test_non_string_left_operand_or_operator_is_refused(constraint: dict[str, Any]) -> None:
    # Prepare
    policy = _policy(constraint)

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path.startswith("permission[0].constraint[0]")


def test_extra_constraint_keys_are_refused() -> None:
    # Prepare
    constraint = {**PURPOSE, "unit": "m", "dataType": "string"}

    # Execute
    error = _refusal(_policy(constraint))

    # Assert
    assert error.path == "permission[0].constraint[0]"
    assert error.message == "unknown constraint keys: dataType, unit"


@pytest.mark.parametrize(
    "constraint",
    [
        {"and": [PURPOSE], "or": [PURPOSE]},
        {"xone": [PURPOSE], "@id": "c1"},
        {"and": [PURPOSE], **PURPOSE},
    ],
)
def test_logical_constraint_with_more_than_one_key_is_refused(constraint: dict[str, Any]) -> None:
    # Prepare
    policy = _policy(constraint)

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "permission[0].constraint[0]"
    assert "exactly one key" in error.message


@pytest.mark.parametrize("members", [[], PURPOSE, "purpose"])
def test_logical_constraint_without_a_member_list_is_refused(members: Any) -> None:
    # Prepare
    policy = _policy({"andSequence": members})

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "permission[0].constraint[0].andSequence"
    assert error.message == "must be a non-empty list of constraints"


def test_error_inside_nested_logical_constraint_names_its_path() -> None:
    # Prepare
    bad = {"leftOperand": "colour", "operator": "eq", "rightOperand": "red"}
    policy = {
        "permission": [{"action": "use"}],
        "prohibition": [{"action": "use", "constraint": [{"or": [PURPOSE, {"and": [bad]}]}]}],
    }

    # Execute
    error = _refusal(policy)

    # Assert
    assert error.path == "prohibition[0].constraint[0].or[1].and[0].leftOperand"
    assert str(error).startswith("prohibition[0].constraint[0].or[1].and[0].leftOperand: ")


# --- DSP 2025-1 conformance -------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        _policy(PURPOSE),
        _policy({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["a", "b"]}),
        _policy({"leftOperand": "task", "operator": "eq", "rightOperand": {"@id": "t1"}}),
        _policy({"or": [PURPOSE, {"and": [PURPOSE, PURPOSE]}]}),
        {
            "profile": ["https://hanse.example/profile"],
            "permission": [{"action": "use", "duty": [{"action": "attribute"}]}],
            "prohibition": [{"action": "distribute", "constraint": [PURPOSE]}],
            "obligation": [{"action": "delete"}],
        },
    ],
    ids=["atomic", "list-operand", "object-operand", "logical", "all-rules"],
)
def test_normalised_policy_validates_as_a_dsp_offer(
    offer_validate: Callable[[Any], None], policy: dict[str, Any]
) -> None:
    # Prepare
    result = normalize_offer_policy(policy, "urn:uuid:offer-1")

    # Execute
    offer_validate(result)

    # Assert
    assert result["@type"] == "Offer"


def test_dsp_offer_validator_can_fail(offer_validate: Callable[[Any], None]) -> None:
    # Prepare
    result = normalize_offer_policy(_policy(PURPOSE), "offer-1")
    with_target = {**result, "target": "urn:dataset:1"}

    # Execute
    with pytest.raises(jsonschema.ValidationError) as raised:
        offer_validate(with_target)

    # Assert
    assert raised.value.validator == "not"


@pytest.mark.parametrize(
    ("constraint", "xsd"),
    [
        ({"leftOperand": "maxRounds", "operator": "lteq", "rightOperand": 50}, "xsd:integer"),
        ({"leftOperand": "epsilon", "operator": "lteq", "rightOperand": 3.0}, "xsd:decimal"),
    ],
)
def test_numeric_right_operand_becomes_a_typed_literal_and_validates(
    offer_validate: Callable[[Any], None], constraint: dict[str, Any], xsd: str
) -> None:
    # Prepare
    result = normalize_offer_policy(_policy(constraint), "offer-1")

    # Execute
    offer_validate(result)

    # Assert
    typed = {**constraint, "rightOperand": {"@value": constraint["rightOperand"], "@type": xsd}}
    assert result["permission"][0]["constraint"] == [typed]
