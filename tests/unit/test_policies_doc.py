"""The policy examples in docs/policies.md, evaluated: the guide cannot drift from the code.

Each example is a fenced ``json`` or ``yaml`` block right after a marker comment::

    <!-- policy-example {"expect": "permit|refuse|invalid", "request": {...},
                         "now": "...", "reason": "...", "shape": true} -->

``request`` holds :class:`~connector.policy.UsageRequest` fields (``assignee``
defaults to ``urn:hanse:researcher``, ``memberships`` is a list); ``now`` defaults to
:data:`NOW`. ``shape`` (default true) first checks the policy as an offer is checked
(:func:`~connector.policy.normalize_offer_policy`); ``invalid`` expects that check to
refuse it. ``reason``, where given, is the exact ``Decision.reason()`` (or the
``PolicyError`` message) and must also appear in the page's visible text.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.policy import (
    LEFT_OPERANDS,
    LOGICAL_OPERATORS,
    OPERATORS,
    PolicyError,
    UsageRequest,
    evaluate,
    normalize_offer_policy,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"
NOW = "2026-11-28T08:00:00+00:00"
ASSIGNEE = "urn:hanse:researcher"
_EXAMPLE = re.compile(r"<!-- policy-example (\{.*?\}) -->\n```(json|yaml)\n(.*?)```", re.DOTALL)
_SNIPPET = re.compile(r"```python\n(.*?)```\n\nOutput:\n\n```text\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Example:
    """One marked policy example of the guide."""

    line: int
    spec: dict[str, Any]
    policy: Any


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _examples() -> list[Example]:
    text = _text()
    found = []
    for match in _EXAMPLE.finditer(text):
        body = match.group(3)
        policy = json.loads(body) if match.group(2) == "json" else yaml.safe_load(body)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Example(line, json.loads(match.group(1)), policy))
    return found


def _request(fields: dict[str, Any]) -> UsageRequest:
    values = {"assignee": ASSIGNEE, **fields}
    if "memberships" in values:
        values["memberships"] = frozenset(values["memberships"])
    return UsageRequest(**values)


def _constraints(node: Any) -> list[dict[str, Any]]:
    """Every atomic constraint in ``node``, at any depth."""
    if isinstance(node, list):
        return [c for item in node for c in _constraints(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if "leftOperand" in node else []
    return own + [c for value in node.values() for c in _constraints(value)]


def _logical_keys(node: Any) -> set[str]:
    if isinstance(node, list):
        return {k for item in node for k in _logical_keys(item)}
    if not isinstance(node, dict):
        return set()
    own = {k for k in node if k in LOGICAL_OPERATORS}
    return own | {k for value in node.values() for k in _logical_keys(value)}


EXAMPLES = _examples()


def test_the_guide_has_marked_examples() -> None:
    # Prepare / Execute: the examples parsed at import.
    # Assert: enough that a broken marker format cannot pass silently.
    assert len(EXAMPLES) >= 30
    assert {e.spec["expect"] for e in EXAMPLES} == {"permit", "refuse", "invalid"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.line}")
def test_example_has_the_stated_outcome(example: Example) -> None:
    # Prepare
    spec = example.spec
    assert set(spec) <= {"expect", "request", "now", "reason", "shape"}, spec
    request = _request(spec.get("request", {}))
    now = datetime.fromisoformat(spec.get("now", NOW))
    reason: str | None = spec.get("reason")

    # Execute
    if spec["expect"] == "invalid":
        with pytest.raises(PolicyError) as refused:
            normalize_offer_policy(example.policy, "doc-offer")
        # Assert
        if reason is not None:
            assert str(refused.value) == reason
        return
    policy = (
        normalize_offer_policy(example.policy, "doc-offer")
        if spec.get("shape", True)
        else example.policy
    )
    decision = evaluate(policy, request, now=now)

    # Assert
    assert decision.permitted is (spec["expect"] == "permit"), decision.reason()
    if reason is not None:
        assert decision.reason() == reason


def test_every_stated_reason_is_also_shown_to_the_reader() -> None:
    # Prepare
    text = _text()
    reasons = [e.spec["reason"] for e in EXAMPLES if "reason" in e.spec]

    # Execute
    hidden = [r for r in reasons if text.count(r) < 2]

    # Assert: once in the marker, at least once in the page's text.
    assert reasons
    assert hidden == []


def test_every_left_operand_operator_and_logical_key_has_an_example() -> None:
    # Prepare
    constraints = [c for e in EXAMPLES for c in _constraints(e.policy)]

    # Execute
    lefts = {c["leftOperand"] for c in constraints}
    operators = {c["operator"] for c in constraints}
    logical = {k for e in EXAMPLES for k in _logical_keys(e.policy)}

    # Assert
    assert lefts >= LEFT_OPERANDS, sorted(LEFT_OPERANDS - lefts)
    assert operators >= OPERATORS, sorted(OPERATORS - operators)
    assert {"and", "or", "xone"} <= logical


def test_python_snippet_prints_the_output_shown() -> None:
    # Prepare
    snippets = _SNIPPET.findall(_text())
    assert snippets

    for code, shown in snippets:
        # Execute
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOC), "exec"), {})

        # Assert
        assert out.getvalue() == shown
