"""ODRL policies as Hanse reads them: the DSP 2025-1 compact JSON-LD ``Offer`` form.

This module checks a policy's shape: rules with actions, constraints with a known
left operand and operator, logical constraints (``and``, ``or``, ``xone``,
``andSequence``) nesting atomic ones. Anything unknown is refused with a message
that says where, never silently accepted. Evaluating a policy against a request is
:mod:`connector.policy.evaluation`'s work.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

LEFT_OPERANDS: frozenset[str] = frozenset(
    {
        "purpose",
        "dateTime",
        "assignee",
        "membership",
        "task",
        "aggregator",
        "maxRounds",
        "epsilon",
        "delta",
        "minParticipants",
        "jurisdiction",
    }
)
"""Left operands the node understands; any other is refused."""

OPERATORS: frozenset[str] = frozenset(
    {"eq", "neq", "gt", "gteq", "lt", "lteq", "isAnyOf", "isAllOf", "isNoneOf", "isPartOf"}
)
"""Constraint operators the node understands; any other is refused."""

LOGICAL_OPERATORS: frozenset[str] = frozenset({"and", "or", "xone", "andSequence"})
"""Logical constraint keys."""

RULE_KINDS: tuple[str, ...] = ("permission", "prohibition", "obligation")
"""The ODRL rule lists a policy may hold."""

MAX_DEPTH = 8
"""Deepest nesting of logical constraints accepted."""


class PolicyError(ValueError):
    """A policy is malformed; ``path`` says where (for example ``permission[0].action``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def normalize_offer_policy(policy: Mapping[str, Any], offer_id: str) -> dict[str, Any]:
    """Check ``policy`` and return it as a DSP ``Offer`` whose ``@id`` is ``offer_id``.

    Raises:
        PolicyError: the policy is not a well-formed Offer of the understood subset.
    """
    if not isinstance(policy, Mapping):
        raise PolicyError("", "a policy must be a JSON object")
    # Check the shape first (bounded depth), then copy: never deep-copy unchecked input.
    kind = policy.get("@type", "Offer")
    if kind != "Offer":
        raise PolicyError("@type", f"an offer policy has @type 'Offer', not {kind!r}")
    if "target" in policy:
        raise PolicyError("target", "an offer in a catalog names no target; remove it")
    if not any(policy.get(k) for k in ("permission", "prohibition")):
        raise PolicyError("", "a policy needs at least one permission or prohibition")
    for key in policy:
        if key not in {"@id", "@type", "@context", "profile", *RULE_KINDS}:
            raise PolicyError(str(key), f"unknown policy key {key!r}")
    profile = policy.get("profile")
    if profile is not None and not (
        isinstance(profile, str)
        or (isinstance(profile, list) and all(isinstance(p, str) for p in profile))
    ):
        raise PolicyError("profile", "profile must be a string or a list of strings")
    for kind_name in RULE_KINDS:
        if kind_name not in policy:
            continue
        rules = policy[kind_name]
        if not isinstance(rules, list) or not rules:
            raise PolicyError(kind_name, "must be a non-empty list of rules")
        for index, rule in enumerate(rules):
            _check_rule(rule, f"{kind_name}[{index}]", depth=1)
    result: dict[str, Any] = _typed_literals(copy.deepcopy(dict(policy)))
    result.pop("@context", None)
    result["@type"] = "Offer"
    result["@id"] = offer_id
    return result


def typed_literal(value: bool | int | float) -> dict[str, Any]:
    """A JSON number or boolean as a JSON-LD typed literal.

    DSP right operands are strings, objects or arrays, so ``50`` travels as
    ``{"@value": 50, "@type": "xsd:integer"}``.
    """
    if isinstance(value, bool):
        return {"@value": value, "@type": "xsd:boolean"}
    if isinstance(value, int):
        return {"@value": value, "@type": "xsd:integer"}
    return {"@value": value, "@type": "xsd:decimal"}


def _typed_literals(node: Any) -> Any:
    """Rewrite numeric and boolean right operands (also inside lists) as typed literals."""
    if isinstance(node, list):
        return [_typed_literals(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _typed_literals(value) for key, value in node.items()}
    right = out.get("rightOperand")
    if "leftOperand" in out and isinstance(right, bool | int | float):
        out["rightOperand"] = typed_literal(right)
    elif "leftOperand" in out and isinstance(right, list):
        out["rightOperand"] = [
            typed_literal(v) if isinstance(v, bool | int | float) else v for v in right
        ]
    return out


def _check_rule(rule: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PolicyError(path, f"duties nest deeper than {MAX_DEPTH}")
    if not isinstance(rule, Mapping):
        raise PolicyError(path, "a rule must be an object with an 'action'")
    action = rule.get("action")
    if not isinstance(action, str) or not action:
        raise PolicyError(f"{path}.action", "a rule needs an 'action' string such as 'use'")
    for key in rule:
        if key not in {"action", "constraint", "duty"}:
            raise PolicyError(f"{path}.{key}", f"unknown rule key {key!r}")
    constraints = rule.get("constraint", [])
    if not isinstance(constraints, list):
        raise PolicyError(f"{path}.constraint", "must be a list of constraints")
    for index, constraint in enumerate(constraints):
        _check_constraint(constraint, f"{path}.constraint[{index}]", depth=1)
    duties = rule.get("duty", [])
    if not isinstance(duties, list):
        raise PolicyError(f"{path}.duty", "must be a list of duties")
    for index, duty in enumerate(duties):
        _check_rule(duty, f"{path}.duty[{index}]", depth + 1)


def _check_constraint(constraint: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PolicyError(path, f"logical constraints nest deeper than {MAX_DEPTH}")
    if not isinstance(constraint, Mapping):
        raise PolicyError(path, "a constraint must be an object")
    logical = [k for k in constraint if k in LOGICAL_OPERATORS]
    if logical:
        if len(constraint) != 1:
            raise PolicyError(path, "a logical constraint has exactly one key: and, or, xone")
        members = constraint[logical[0]]
        if not isinstance(members, list) or not members:
            raise PolicyError(f"{path}.{logical[0]}", "must be a non-empty list of constraints")
        for index, member in enumerate(members):
            _check_constraint(member, f"{path}.{logical[0]}[{index}]", depth + 1)
        return
    for key in ("leftOperand", "operator", "rightOperand"):
        if key not in constraint:
            raise PolicyError(path, f"an atomic constraint needs '{key}'")
    left = constraint["leftOperand"]
    if not isinstance(left, str) or left not in LEFT_OPERANDS:
        known = ", ".join(sorted(LEFT_OPERANDS))
        raise PolicyError(f"{path}.leftOperand", f"unknown left operand {left!r}; known: {known}")
    operator = constraint["operator"]
    if not isinstance(operator, str) or operator not in OPERATORS:
        known = ", ".join(sorted(OPERATORS))
        raise PolicyError(f"{path}.operator", f"unknown operator {operator!r}; known: {known}")
    right = constraint["rightOperand"]
    if right is None:
        raise PolicyError(f"{path}.rightOperand", "rightOperand must not be null")
    extra = set(constraint) - {"leftOperand", "operator", "rightOperand", "@id"}
    if extra:
        raise PolicyError(path, f"unknown constraint keys: {', '.join(sorted(extra))}")
