"""What a consumer states it will do with a dataset, and its two forms.

The consumer's request carries its usage as ``eq`` constraints in the offer it
sends (DSP: the terms at which it would accept); the provider reads them back into
a :class:`~connector.policy.UsageRequest` and evaluates its own policy against
them. The agreement keeps both: the provider's policy and the stated usage.

Which groups the consumer belongs to (the ``membership`` fact) is never the
consumer's word: the provider records the groups its own peer config places the
consumer in under :data:`MEMBERSHIPS`, next to the stated usage
(:func:`with_memberships`), and :func:`usage_request` reads them from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from connector.errors import invalid_argument
from connector.policy import UsageRequest

USAGE_FIELDS: dict[str, str] = {
    "purpose": "purpose",
    "task": "task",
    "aggregator": "aggregator",
    "max_rounds": "maxRounds",
    "epsilon": "epsilon",
    "delta": "delta",
    "min_participants": "minParticipants",
    "jurisdiction": "jurisdiction",
}
"""Usage keys (management API, CLI) and the ODRL left operand each becomes."""

MEMBERSHIPS = "memberships"
"""Usage key under which a provider records the consumer's groups (from its peer config).

Set only by the provider; a consumer cannot state it (:func:`check_usage` refuses the
key, :func:`usage_from_constraints` never reads a ``membership`` constraint)."""

_NUMBERS = {"max_rounds": int, "min_participants": int, "epsilon": float, "delta": float}


def check_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a usage object from a caller; return it normalised.

    Raises:
        ConnectorError: INVALID_ARGUMENT naming the key.
    """
    result: dict[str, Any] = {}
    for key, value in usage.items():
        if key == MEMBERSHIPS:
            raise invalid_argument(
                "memberships are not stated by the consumer: the provider decides which "
                "groups a peer belongs to, from its own peer config; remove the key",
                f"usage.{key}",
            )
        if key not in USAGE_FIELDS:
            known = ", ".join(USAGE_FIELDS)
            raise invalid_argument(f"unknown usage key {key!r}; known: {known}", f"usage.{key}")
        if value is None or value == "":
            continue
        if key in _NUMBERS:
            kind = _NUMBERS[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid_argument(f"{key} must be a number", f"usage.{key}")
            if kind is int and not float(value).is_integer():
                raise invalid_argument(f"{key} must be a whole number", f"usage.{key}")
            result[key] = kind(value)
        elif key == "task":
            if not isinstance(value, Mapping) or not isinstance(value.get("id"), str):
                raise invalid_argument('task must be {"id": ..., "hash": ...}', "usage.task")
            result[key] = {
                "id": value["id"],
                **({"hash": value["hash"]} if value.get("hash") else {}),
            }
        elif isinstance(value, str):
            result[key] = value
        else:
            raise invalid_argument(f"{key} must be a string", f"usage.{key}")
    if "purpose" not in result:
        raise invalid_argument("state the purpose of the use", "usage.purpose")
    return result


def usage_constraints(usage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The usage as ODRL ``eq`` constraints (numbers as JSON-LD typed literals)."""
    from connector.policy import typed_literal

    constraints: list[dict[str, Any]] = []
    for key, left in USAGE_FIELDS.items():
        if key not in usage:
            continue
        value = usage[key]
        right = typed_literal(value) if isinstance(value, int | float) else value
        constraints.append({"leftOperand": left, "operator": "eq", "rightOperand": right})
    return constraints


def usage_from_constraints(constraints: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Read a usage back from the ``eq`` constraints a consumer sent (others are ignored)."""
    by_left = {left: key for key, left in USAGE_FIELDS.items()}
    usage: dict[str, Any] = {}
    for constraint in constraints:
        key = by_left.get(str(constraint.get("leftOperand")))
        if key is None or constraint.get("operator") != "eq":
            continue
        right = constraint.get("rightOperand")
        if isinstance(right, Mapping) and "@value" in right:
            right = right["@value"]
        usage[key] = right
    return usage


def with_memberships(usage: Mapping[str, Any], groups: Iterable[str]) -> dict[str, Any]:
    """``usage`` with the provider's ``groups`` for the consumer recorded (sorted).

    Any memberships already in ``usage`` are replaced; with no groups the key is left
    out, so a usage without memberships reads as the empty set.
    """
    result = {key: value for key, value in usage.items() if key != MEMBERSHIPS}
    recorded = sorted(set(groups))
    if recorded:
        result[MEMBERSHIPS] = recorded
    return result


def usage_request(usage: Mapping[str, Any], *, assignee: str) -> UsageRequest:
    """The facts the policy evaluator checks, for a consumer ``assignee``.

    Its memberships are those the provider recorded under :data:`MEMBERSHIPS` (none: the
    empty set).
    """
    task = usage.get("task") or {}
    return UsageRequest(
        assignee=assignee,
        memberships=_recorded_memberships(usage.get(MEMBERSHIPS)),
        purpose=usage.get("purpose"),
        task_id=task.get("id"),
        task_hash=task.get("hash"),
        aggregator=usage.get("aggregator"),
        max_rounds=usage.get("max_rounds"),
        epsilon=usage.get("epsilon"),
        delta=usage.get("delta"),
        min_participants=usage.get("min_participants"),
        jurisdiction=usage.get("jurisdiction"),
    )


def _recorded_memberships(value: Any) -> Any:
    """The recorded memberships as a set of group ids.

    Anything but a list of strings is passed on as it is, so the evaluator finds every
    ``membership`` constraint undecided (fail closed) instead of reading, say, a string's
    characters as groups.
    """
    if value is None:
        return frozenset()
    if isinstance(value, list | tuple) and all(isinstance(group, str) for group in value):
        return frozenset(value)
    return value
