"""Evaluating an ODRL usage policy against what a consumer asks for.

``evaluate(policy, request, now=..., action=...)`` answers one question: may this
consumer perform ``action`` now, under ``policy``? It is a pure function: no I/O, and
the time is only ``now``.

Semantics:

- A rule *matches* the requested action when its ``action`` equals it, or is ``use``
  (ODRL's ``use`` covers every action). Rules that do not match are not evaluated.
- The policy is **permitted** iff at least one matching ``permission`` has all its
  constraints satisfied (a permission without constraints is satisfied), and no
  matching ``prohibition`` applies. A prohibition wins over any permission.
- Every constraint evaluates to satisfied, not satisfied, or *undecided*: an unknown
  left operand or operator, a right operand of the wrong type (``gt`` on a string), a
  fact the request does not state (``purpose`` constrained, ``request.purpose`` None),
  a malformed constraint. An undecided constraint is a failed one, with a reason: it
  never satisfies a permission, and it never lifts a prohibition either. A
  prohibition applies unless one of its constraints is proven unsatisfied, so a
  request cannot escape a prohibition by leaving a fact out (fail closed).
- Logical constraints combine their members: ``and`` and ``andSequence`` all of them
  (in order; the evaluation is static, so the order changes nothing), ``or`` at least
  one, ``xone`` exactly one. An undecided member makes the whole undecided only
  where its value could change the outcome (``or`` with a satisfied member is
  satisfied whatever the others are).
- Obligations are not evaluated here. When permitted, ``Decision.obligations`` holds
  the ``duty`` rules of every granting permission, then the policy's ``obligation``
  rules, as written, for the caller to enforce; when refused it is empty.

Left operands and the request fact each is checked against: ``purpose``,
``assignee``, ``aggregator``, ``jurisdiction`` (strings: ``eq``, ``neq`` and the list
operators only); ``dateTime`` (``now``, against an ISO 8601 datetime that states a
timezone); ``maxRounds``, ``minParticipants``, ``epsilon``, ``delta`` (numbers; the
request's value on the left, so ``maxRounds lteq 50`` means ``max_rounds <= 50``);
``membership`` (the request's set of groups); ``task`` (id and content hash).

Operators on a single value: ``eq``, ``neq``, ``gt``, ``gteq``, ``lt``, ``lteq``;
``isAnyOf`` (the value is in the list), ``isNoneOf`` (it is not), ``isPartOf`` (the
value is in the list), ``isAllOf`` (every listed value is this one). On
``membership``: ``eq``/``neq`` a single group is/is not among the memberships,
``isAnyOf`` some listed group is one, ``isNoneOf`` none is, ``isAllOf`` every listed
group is one, ``isPartOf`` the memberships are not empty and all listed. On ``task``:
the right operand is an id or ``{"id": ..., "hash": ...}``; it matches when the id is
the request's and, if a hash is given, the hash is too.

Right operands: typed literals ``{"@value": v, "@type": "xsd:..."}`` (integer,
decimal, double, float, boolean, dateTime, string) unwrap to ``v``; a numeric string
("50") is a number for the numeric left operands. List operators take a JSON array,
or a single value as a one-element list (JSON-LD compacts one-element arrays); an
empty list is undecided.

Structural faults that leave no rule to evaluate (the policy or a rule list is not
what ODRL says, a rule has no ``action`` string) raise :class:`PolicyError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeAlias

from connector.policy.shape import LOGICAL_OPERATORS, MAX_DEPTH, OPERATORS, PolicyError

_Truth: TypeAlias = bool | None
"""Three-valued: satisfied, not satisfied, or None where it cannot be decided."""

USE = "use"
"""The ODRL action that covers every other."""

_ORDERING = frozenset({"gt", "gteq", "lt", "lteq"})
_LIST_OPERATORS = frozenset({"isAnyOf", "isNoneOf", "isAllOf", "isPartOf"})
_CONSTRAINT_KEYS = frozenset({"leftOperand", "operator", "rightOperand", "@id"})
_XSD_PREFIXES = ("xsd:", "http://www.w3.org/2001/XMLSchema#")
_LITERAL_KEYS = frozenset({"@value", "@type", "@language"})
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class UsageRequest:
    """What a consumer asks for: the facts a policy's constraints are checked against.

    A fact left as None is one the request does not state; a constraint on it fails.
    """

    assignee: str
    """The consumer's participant id."""

    memberships: frozenset[str] = frozenset()
    """Groups the consumer belongs to, for example ``urn:hanse:group:eu-cities``."""

    purpose: str | None = None
    """What the data is used for, for example ``research``."""

    task_id: str | None = None
    """The id of the task (training plugin) that will touch the data."""

    task_hash: str | None = None
    """The task's content hash, ``sha256:<hex>``."""

    aggregator: str | None = None
    """The participant id of the aggregator that receives the results."""

    max_rounds: int | None = None
    """How many training rounds the consumer asks for."""

    epsilon: float | None = None
    """The differential-privacy epsilon the consumer asks for."""

    delta: float | None = None
    """The differential-privacy delta the consumer asks for."""

    min_participants: int | None = None
    """The fewest participants any round will aggregate."""

    jurisdiction: str | None = None
    """Where the data is processed, for example ``DE`` or ``EU``."""


@dataclass(frozen=True)
class ConstraintResult:
    """One constraint of a policy, evaluated against a request."""

    path: str
    """Where the constraint sits, for example ``permission[0].constraint[1].or[0]``."""

    left_operand: str | None
    """The left operand as written; None for a logical constraint or where it is missing."""

    operator: str | None
    """The operator (``eq``, ``isAnyOf``, ...), or the key of a logical constraint."""

    right_operand: Any
    """The right operand as written in the policy; None for a logical constraint."""

    actual: Any
    """The request's value it was checked against (``now`` for ``dateTime``).

    Memberships show as a sorted tuple, a task as ``{"id": ..., "hash": ...}``. None for
    a logical constraint or a fact the request does not state.
    """

    satisfied: bool
    """Whether the constraint holds for the request."""

    reason: str
    """A sentence saying why it holds or not."""

    undecided: bool = False
    """True when it could not be evaluated (unknown operand or operator, type mismatch,
    fact not stated, malformed); then it is not satisfied and lifts no prohibition."""


@dataclass(frozen=True)
class Decision:
    """Whether a policy permits a request, and every check that led there."""

    permitted: bool
    """True iff a matching permission is satisfied and no matching prohibition applies."""

    results: tuple[ConstraintResult, ...] = ()
    """Every constraint evaluated, logical ones before their members, in policy order."""

    obligations: tuple[Mapping[str, Any], ...] = ()
    """Duties and obligations, as written, for the caller to enforce; empty when refused."""

    action: str = USE
    """The action that was asked for."""

    granted_by: tuple[str, ...] = ()
    """Paths of the permissions that are satisfied, for example ``permission[0]``."""

    prohibited_by: tuple[str, ...] = ()
    """Paths of the prohibitions that apply, for example ``prohibition[1]``."""

    @property
    def failures(self) -> tuple[ConstraintResult, ...]:
        """The unsatisfied results that decided a refusal; empty when permitted.

        Under a prohibition that applies, these are its undecided constraints (none
        when all were satisfied); otherwise the failed constraints of the matching
        permissions. Only a rule's own constraints are listed, not logical members.
        """
        if self.permitted:
            return ()
        if self.prohibited_by:
            rules = set(self.prohibited_by)
        else:
            rules = {_rule_of(r.path) for r in self.results if r.path.startswith("permission[")}
        return tuple(
            r
            for r in self.results
            if not r.satisfied and _is_rule_constraint(r.path) and _rule_of(r.path) in rules
        )

    def reason(self) -> str:
        """One sentence: what permitted the request, or what refused it."""
        if self.permitted:
            if not self.granted_by:
                return f"{self.action!r} is permitted"
            return f"{self.granted_by[0]} permits {self.action!r} and its constraints hold"
        if self.prohibited_by:
            rule = self.prohibited_by[0]
            undecided = [f for f in self.failures if _rule_of(f.path) == rule]
            if undecided:
                first = undecided[0]
                return (
                    f"{rule} forbids {self.action!r} unless shown not to apply, and "
                    f"{first.path} cannot be decided: {first.reason}"
                )
            if any(_rule_of(r.path) == rule for r in self.results):
                return f"{rule} forbids {self.action!r} and its constraints hold"
            return f"{rule} forbids {self.action!r}"
        failures = self.failures
        if not failures:
            return f"no permission for action {self.action!r}"
        first = failures[0]
        return f"{first.path} is not satisfied: {first.reason}"


def evaluate(
    policy: Mapping[str, Any],
    request: UsageRequest,
    *,
    now: datetime,
    action: str = USE,
) -> Decision:
    """Decide whether ``policy`` permits ``request`` to perform ``action`` at ``now``.

    See the module docstring for the semantics.

    Raises:
        PolicyError: the policy has no readable rules (not an object, a rule list
            that is not a list, a rule without an ``action`` string).
        ValueError: ``now`` has no timezone, or ``action`` is empty.
    """
    if not isinstance(policy, Mapping):
        raise PolicyError("", "a policy must be a JSON object")
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if not isinstance(action, str) or not action:
        raise ValueError("action must be a non-empty string such as 'use'")
    facts = _Facts(request, now)
    results: list[ConstraintResult] = []
    granted: list[str] = []
    duties: list[Mapping[str, Any]] = []
    for path, rule in _rules(policy, "permission"):
        if _covers(rule["action"], action) and _rule_truth(rule, path, facts, results):
            granted.append(path)
            duties.extend(rule.get("duty", []))
    prohibited: list[str] = []
    for path, rule in _rules(policy, "prohibition"):
        if _covers(rule["action"], action) and _rule_truth(rule, path, facts, results) is not False:
            prohibited.append(path)
    obligations = [rule for _, rule in _rules(policy, "obligation")]
    permitted = bool(granted) and not prohibited
    return Decision(
        permitted=permitted,
        results=tuple(results),
        obligations=tuple(duties + obligations) if permitted else (),
        action=action,
        granted_by=tuple(granted),
        prohibited_by=tuple(prohibited),
    )


# --- rules ------------------------------------------------------------------------------------


def _rules(policy: Mapping[str, Any], kind: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The rules of one kind with their paths; raises PolicyError on an unreadable rule."""
    rules = policy.get(kind, [])
    if not isinstance(rules, list):
        raise PolicyError(kind, "must be a list of rules")
    for index, rule in enumerate(rules):
        path = f"{kind}[{index}]"
        if not isinstance(rule, Mapping):
            raise PolicyError(path, "a rule must be an object with an 'action'")
        action = rule.get("action")
        if not isinstance(action, str) or not action:
            raise PolicyError(f"{path}.action", "a rule needs an 'action' string such as 'use'")
        if not isinstance(rule.get("constraint", []), list):
            raise PolicyError(f"{path}.constraint", "must be a list of constraints")
        duties = rule.get("duty", [])
        if not isinstance(duties, list) or not all(isinstance(d, Mapping) for d in duties):
            raise PolicyError(f"{path}.duty", "must be a list of duties")
        yield path, rule


def _covers(rule_action: str, action: str) -> bool:
    return rule_action in (action, USE)


def _rule_truth(
    rule: Mapping[str, Any], path: str, facts: _Facts, out: list[ConstraintResult]
) -> _Truth:
    truths = [
        _truth(_constraint(c, f"{path}.constraint[{i}]", 1, facts, out))
        for i, c in enumerate(rule.get("constraint", []))
    ]
    return _all(truths)


def _rule_of(path: str) -> str:
    return path.split(".", 1)[0]


def _is_rule_constraint(path: str) -> bool:
    return path.count(".") == 1


# --- constraints ------------------------------------------------------------------------------


class _UndecidedError(Exception):
    """A constraint cannot be evaluated; the message says why."""


def _truth(result: ConstraintResult) -> _Truth:
    return None if result.undecided else result.satisfied


def _all(truths: list[_Truth]) -> _Truth:
    if False in truths:
        return False
    return None if None in truths else True


def _constraint(
    node: object, path: str, depth: int, facts: _Facts, out: list[ConstraintResult]
) -> ConstraintResult:
    """Evaluate one constraint, append its result (then its members') to ``out``."""
    if not isinstance(node, Mapping):
        result = _undecided(path, None, None, None, f"a constraint must be an object, not {node!r}")
    elif any(key in LOGICAL_OPERATORS for key in node):
        return _logical(node, path, depth, facts, out)
    else:
        result = _atomic(node, path, facts)
    out.append(result)
    return result


def _logical(
    node: Mapping[str, Any], path: str, depth: int, facts: _Facts, out: list[ConstraintResult]
) -> ConstraintResult:
    key = next(k for k in node if k in LOGICAL_OPERATORS)
    members = node[key]
    problem = None
    if depth > MAX_DEPTH:
        problem = f"logical constraints nest deeper than {MAX_DEPTH}"
    elif len(node) != 1:
        problem = "a logical constraint has exactly one key: and, or, xone or andSequence"
    elif not isinstance(members, list) or not members:
        problem = f"{key} needs a non-empty list of constraints"
    if problem is not None:
        result = _undecided(path, None, key, None, problem)
        out.append(result)
        return result
    inner: list[ConstraintResult] = []
    results = [
        _constraint(m, f"{path}.{key}[{i}]", depth + 1, facts, inner) for i, m in enumerate(members)
    ]
    truth, reason = _combine(key, results)
    result = ConstraintResult(
        path=path,
        left_operand=None,
        operator=key,
        right_operand=None,
        actual=None,
        satisfied=truth is True,
        reason=reason,
        undecided=truth is None,
    )
    out.append(result)
    out.extend(inner)
    return result


def _combine(key: str, members: list[ConstraintResult]) -> tuple[_Truth, str]:
    truths = [_truth(m) for m in members]
    count = len(truths)
    held = [m for m in members if m.satisfied]
    failed = [m for m in members if not m.satisfied and not m.undecided]
    undecided = [m for m in members if m.undecided]
    if key in ("and", "andSequence"):
        truth = _all(truths)
        if truth is True:
            return True, f"all {count} constraints of {key} hold"
        if truth is False:
            return False, f"not every constraint of {key} holds: {failed[0].reason}"
    elif key == "or":
        if held:
            return True, f"a constraint of or holds: {held[0].reason}"
        if not undecided:
            reasons = "; ".join(m.reason for m in failed)
            return False, f"none of the {count} constraints of or holds: {reasons}"
    else:  # xone
        if len(held) > 1:
            return False, f"{len(held)} of the {count} constraints of xone hold, not exactly one"
        if not undecided:
            if held:
                return True, f"exactly one constraint of xone holds: {held[0].reason}"
            return False, f"none of the {count} constraints of xone holds, not exactly one"
    return None, f"{key} cannot be decided: {undecided[0].reason}"


def _undecided(
    path: str, left: str | None, operator: str | None, right: Any, reason: str, actual: Any = None
) -> ConstraintResult:
    return ConstraintResult(
        path=path,
        left_operand=left,
        operator=operator,
        right_operand=right,
        actual=actual,
        satisfied=False,
        reason=reason,
        undecided=True,
    )


def _atomic(node: Mapping[str, Any], path: str, facts: _Facts) -> ConstraintResult:
    left, operator, right = (node.get(k) for k in ("leftOperand", "operator", "rightOperand"))
    left_name = None if left is None else left if isinstance(left, str) else repr(left)
    operator_name = None if operator is None else str(operator)

    def undecided(reason: str, actual: Any = None) -> ConstraintResult:
        return _undecided(path, left_name, operator_name, right, reason, actual)

    for key in ("leftOperand", "operator", "rightOperand"):
        if node.get(key) is None:
            return undecided(f"an atomic constraint needs a '{key}'")
    extra = set(node) - _CONSTRAINT_KEYS
    if extra:
        return undecided(f"unknown constraint keys cannot be evaluated: {', '.join(sorted(extra))}")
    if not isinstance(left, str) or left not in _OPERANDS:
        known = ", ".join(sorted(_OPERANDS))
        return undecided(f"unknown left operand {left!r}; known: {known}")
    if not isinstance(operator, str) or operator not in OPERATORS:
        known = ", ".join(sorted(OPERATORS))
        return undecided(f"unknown operator {operator!r}; known: {known}")
    operand = _OPERANDS[left]
    actual = None
    try:
        rights = _right_values(operand, operator, right)
        actual = operand.fact(facts)
        if actual is None:
            raise _UndecidedError(
                f"the request states no {operand.fact_name}, so "
                f"{left} {operator} {_show_rights(operator, rights)} cannot be checked"
            )
        satisfied = operand.holds(operand, operator, actual, rights)
    except _UndecidedError as error:
        return undecided(str(error), None if actual is None else operand.show(actual))
    words = operand.words[operator][0 if satisfied else 1]
    return ConstraintResult(
        path=path,
        left_operand=left,
        operator=operator,
        right_operand=right,
        actual=operand.show(actual),
        satisfied=satisfied,
        reason=f"{operand.label} {_show(actual)} {words} {_show_rights(operator, rights)}",
    )


def _right_values(operand: _Operand, operator: str, right: Any) -> list[Any]:
    if operator in _LIST_OPERATORS:
        items = right if isinstance(right, list) else [right]
        if not items:
            raise _UndecidedError(f"'{operator}' needs at least one value, not an empty list")
    elif isinstance(right, list):
        raise _UndecidedError(f"type mismatch: '{operator}' takes a single value, not a list")
    else:
        items = [right]
    return [operand.convert(operand, item) for item in items]


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    id: str
    hash: str | None


@dataclass(frozen=True)
class _Facts:
    request: UsageRequest
    now: datetime


def _literal(raw: Any) -> Any:
    """Unwrap a JSON-LD typed literal; anything else is returned as it is."""
    if not isinstance(raw, Mapping) or "@value" not in raw:
        return raw
    extra = set(raw) - _LITERAL_KEYS
    if extra:
        raise _UndecidedError(f"a typed literal has unknown keys: {', '.join(sorted(extra))}")
    value, kind = raw["@value"], raw.get("@type")
    if kind is None:
        return value
    name = next(
        (kind[len(p) :] for p in _XSD_PREFIXES if isinstance(kind, str) and kind.startswith(p)),
        None,
    )
    if name == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            return int(value)
    elif name in ("decimal", "double", "float"):
        number = _number(value)
        if number is not None:
            return number
    elif name == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false", "1", "0"):
            return value in ("true", "1")
    elif name == "dateTime":
        if isinstance(value, str):
            return _datetime(value)
    elif name == "string":
        if isinstance(value, str):
            return value
    else:
        raise _UndecidedError(f"unknown literal type {kind!r}")
    raise _UndecidedError(f"type mismatch: {value!r} is not a valid {kind}")


def _number(value: Any) -> int | float | None:
    """A finite number from a JSON number or a decimal string; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if _INTEGER.fullmatch(value):
            return int(value)
        if not _DECIMAL.fullmatch(value):
            return None
        value = float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _datetime(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _UndecidedError(f"type mismatch: {value!r} is not an ISO 8601 datetime") from None
    if parsed.utcoffset() is None:
        raise _UndecidedError(f"the datetime {value!r} states no timezone; a policy's must")
    return parsed


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, _Task):
        return repr(value.id) if value.hash is None else f"{value.id!r} with hash {value.hash!r}"
    if isinstance(value, list | tuple | frozenset):
        items = sorted(value) if isinstance(value, frozenset) else value
        return "[" + ", ".join(_show(v) for v in items) + "]"
    return repr(value)


def _show_rights(operator: str, rights: list[Any]) -> str:
    return _show(rights) if operator in _LIST_OPERATORS else _show(rights[0])


# --- left operands ----------------------------------------------------------------------------

_Words: TypeAlias = Mapping[str, tuple[str, str]]

_SCALAR_WORDS: _Words = MappingProxyType(
    {
        "eq": ("is", "is not"),
        "neq": ("is not", "is"),
        "gt": ("is greater than", "is not greater than"),
        "gteq": ("is at least", "is less than"),
        "lt": ("is less than", "is not less than"),
        "lteq": ("is at most", "is more than"),
        "isAnyOf": ("is one of", "is not any of"),
        "isNoneOf": ("is none of", "is one of"),
        "isAllOf": ("is all of", "is not all of"),
        "isPartOf": ("is part of", "is not part of"),
    }
)
_TIME_WORDS: _Words = MappingProxyType(
    {
        **_SCALAR_WORDS,
        "gt": ("is after", "is not after"),
        "gteq": ("is at or after", "is before"),
        "lt": ("is before", "is not before"),
        "lteq": ("is at or before", "is after"),
    }
)
_GROUP_WORDS: _Words = MappingProxyType(
    {
        "eq": ("include", "do not include"),
        "neq": ("do not include", "include"),
        "isAnyOf": ("include one of", "include none of"),
        "isNoneOf": ("include none of", "include one of"),
        "isAllOf": ("include all of", "do not include all of"),
        "isPartOf": ("are all part of", "are not all part of"),
    }
)


@dataclass(frozen=True)
class _Operand:
    """How one left operand reads its fact, converts right operands and compares."""

    name: str
    """The left operand, for example ``maxRounds``."""
    kind: str
    """What its right operand is, in words, for type-mismatch reasons."""
    fact_name: str
    """The request fact it reads, for missing-fact reasons."""
    fact: Callable[[_Facts], Any]
    """The request's value; None where the request states none."""
    convert: Callable[[_Operand, Any], Any]
    """One right-operand value, checked and unwrapped."""
    holds: Callable[[_Operand, str, Any, list[Any]], bool]
    """Whether ``fact operator right values`` holds."""
    ordered: bool = False
    """Whether ``gt``, ``gteq``, ``lt`` and ``lteq`` apply."""
    words: _Words = field(default_factory=lambda: _SCALAR_WORDS)
    """How each operator reads in a reason, held and not held."""
    label: str = ""
    """How the request's value is introduced in a reason; the name where empty."""
    show: Callable[[Any], Any] = lambda value: value
    """The request's value as ``ConstraintResult.actual`` shows it."""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


def _mismatch(operand: _Operand, raw: Any) -> _UndecidedError:
    return _UndecidedError(f"type mismatch: {operand.name} takes {operand.kind}, not {raw!r}")


def _to_text(operand: _Operand, raw: Any) -> str:
    value = _literal(raw)
    if not isinstance(value, str):
        raise _mismatch(operand, raw)
    return value


def _to_number(operand: _Operand, raw: Any) -> int | float:
    value = _number(_literal(raw))
    if value is None:
        raise _mismatch(operand, raw)
    return value


def _to_datetime(operand: _Operand, raw: Any) -> datetime:
    value = _literal(raw)
    if isinstance(value, str):
        value = _datetime(value)
    if not isinstance(value, datetime):
        raise _mismatch(operand, raw)
    return value


def _to_task(operand: _Operand, raw: Any) -> _Task:
    value = _literal(raw)
    if isinstance(value, str) and value:
        return _Task(value, None)
    if isinstance(value, Mapping) and set(value) <= {"id", "hash"}:
        task_id, task_hash = value.get("id"), value.get("hash")
        if (
            isinstance(task_id, str)
            and task_id
            and (task_hash is None or isinstance(task_hash, str))
        ):
            return _Task(task_id, None if task_hash is None else task_hash.lower())
    raise _mismatch(operand, raw)


def _scalar_holds(operand: _Operand, operator: str, actual: Any, rights: list[Any]) -> bool:
    if operator in _ORDERING:
        if not operand.ordered:
            raise _UndecidedError(
                f"type mismatch: '{operator}' compares numbers or datetimes, "
                f"and {operand.name} is a string"
            )
        right = rights[0]
        if operator == "gt":
            return bool(actual > right)
        if operator == "gteq":
            return bool(actual >= right)
        if operator == "lt":
            return bool(actual < right)
        return bool(actual <= right)
    if operator == "eq":
        return bool(actual == rights[0])
    if operator == "neq":
        return bool(actual != rights[0])
    if operator in ("isAnyOf", "isPartOf"):
        return actual in rights
    if operator == "isNoneOf":
        return actual not in rights
    return all(actual == right for right in rights)  # isAllOf


def _group_holds(operand: _Operand, operator: str, actual: Any, rights: list[Any]) -> bool:
    groups: frozenset[str] = actual
    if operator in _ORDERING:
        raise _UndecidedError(f"type mismatch: '{operator}' does not apply to a set of groups")
    if operator == "eq":
        return rights[0] in groups
    if operator == "neq":
        return rights[0] not in groups
    if operator == "isAnyOf":
        return not groups.isdisjoint(rights)
    if operator == "isNoneOf":
        return groups.isdisjoint(rights)
    if operator == "isAllOf":
        return groups.issuperset(rights)
    return bool(groups) and groups.issubset(rights)  # isPartOf


def _task_holds(operand: _Operand, operator: str, actual: Any, rights: list[Any]) -> bool:
    task: _Task = actual
    if operator in _ORDERING:
        raise _UndecidedError(f"type mismatch: '{operator}' does not apply to a task")
    if task.hash is None and any(right.hash is not None for right in rights):
        raise _UndecidedError(
            f"the request states no task hash, so task {_show(rights)} cannot be checked"
        )
    matches = [task.id == right.id and right.hash in (None, task.hash) for right in rights]
    if operator == "eq":
        return matches[0]
    if operator == "neq":
        return not matches[0]
    if operator in ("isAnyOf", "isPartOf"):
        return any(matches)
    if operator == "isNoneOf":
        return not any(matches)
    return all(matches)  # isAllOf


def _text_fact(attribute: str) -> Callable[[_Facts], Any]:
    def fact(facts: _Facts) -> Any:
        value = getattr(facts.request, attribute)
        if value is not None and not isinstance(value, str):
            raise _UndecidedError(f"the request's {attribute} {value!r} is not a string")
        return value or None

    return fact


def _number_fact(attribute: str) -> Callable[[_Facts], Any]:
    def fact(facts: _Facts) -> Any:
        value = getattr(facts.request, attribute)
        if value is not None and (isinstance(value, str) or _number(value) is None):
            raise _UndecidedError(f"the request's {attribute} {value!r} is not a finite number")
        return value

    return fact


def _task_fact(facts: _Facts) -> _Task | None:
    task_id, task_hash = facts.request.task_id, facts.request.task_hash
    for name, value in (("task_id", task_id), ("task_hash", task_hash)):
        if value is not None and not isinstance(value, str):
            raise _UndecidedError(f"the request's {name} {value!r} is not a string")
    if not task_id:
        return None
    return _Task(task_id, task_hash.lower() if task_hash else None)


def _groups_fact(facts: _Facts) -> frozenset[str]:
    groups = facts.request.memberships
    if not isinstance(groups, frozenset | set) or not all(isinstance(g, str) for g in groups):
        raise _UndecidedError(f"the request's memberships {groups!r} are not a set of strings")
    return frozenset(groups)


def _text(name: str, attribute: str) -> _Operand:
    return _Operand(name, "a string", attribute, _text_fact(attribute), _to_text, _scalar_holds)


def _numeric(name: str, attribute: str) -> _Operand:
    return _Operand(
        name, "a number", attribute, _number_fact(attribute), _to_number, _scalar_holds, True
    )


_OPERANDS: Mapping[str, _Operand] = {
    operand.name: operand
    for operand in (
        _text("purpose", "purpose"),
        _text("assignee", "assignee"),
        _text("aggregator", "aggregator"),
        _text("jurisdiction", "jurisdiction"),
        _numeric("maxRounds", "max_rounds"),
        _numeric("minParticipants", "min_participants"),
        _numeric("epsilon", "epsilon"),
        _numeric("delta", "delta"),
        _Operand(
            "dateTime",
            "an ISO 8601 datetime",
            "time",
            lambda facts: facts.now,
            _to_datetime,
            _scalar_holds,
            ordered=True,
            words=_TIME_WORDS,
        ),
        _Operand(
            "membership",
            "a group id",
            "memberships",
            _groups_fact,
            _to_text,
            _group_holds,
            words=_GROUP_WORDS,
            label="memberships",
            show=lambda groups: tuple(sorted(groups)),
        ),
        _Operand(
            "task",
            "a task id or an object with 'id' and 'hash'",
            "task id",
            _task_fact,
            _to_task,
            _task_holds,
            show=lambda task: {"id": task.id, "hash": task.hash},
        ),
    )
}
"""The left operands the evaluator understands, by name."""
