"""The audit log's one-pass canonicalisation gives exactly the bytes and hashes of RFC 8785.

:func:`connector.audit.canonical_json` writes most payloads with the standard
library's encoder and :func:`connector.audit.chain_entry` hashes an entry from its
payload canonicalised once; both must agree with the reference (:mod:`rfc8785` and
:func:`connector.audit.entry_hash`) on every input, or a log would fail ``hanse
audit verify``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785

from connector.audit import (
    GENESIS_HASH,
    canonical_json,
    chain_entry,
    draft_entry,
    entry_hash,
    next_entry,
    verify_entries,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)

# Text that needs escaping or sorts differently by code point and by UTF-16 unit.
AWKWARD_TEXT = [
    "",
    "plain",
    'quote " and backslash \\',
    "control \x00 \x01 \x1f \b \f \n \r \t",
    "delete \x7f",
    "Luftqualität",
    "line separator \u2028 and \u2029",
    "private use \ue000 \uffff",
    "astral \U0001f600 \U00010000",
    "</script>",
]


def _random_value(rng: random.Random, depth: int) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.choice(AWKWARD_TEXT)
    if choice == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if choice == 2:
        return rng.choice([True, False, None])
    if choice == 3:
        return rng.choice([0.0, -0.0, 1.0, 2.5, 1e21, 1e-7, 123456789.125, -3.75])
    if choice == 4:
        return rng.randint(-1000, 1000)
    if choice == 5:
        return "".join(rng.choice(AWKWARD_TEXT) for _ in range(2))
    if choice == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 7:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    keys = [rng.choice(AWKWARD_TEXT) + str(n) for n in range(rng.randrange(5))]
    return {key: _random_value(rng, depth + 1) for key in keys}


def test_canonical_json_equals_rfc8785_on_many_values() -> None:
    # Prepare
    rng = random.Random(8785)
    values = [_random_value(rng, 0) for _ in range(2000)]
    values += [{text: n for n, text in enumerate(AWKWARD_TEXT)}, AWKWARD_TEXT]

    # Execute, Assert
    for value in values:
        assert canonical_json(value) == rfc8785.dumps(value), value


@pytest.mark.parametrize(
    "value",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": 2**53},
        {"x": -(2**53)},
        {1: "key not text"},
        {"x": b"bytes"},
        {"x": "lone surrogate \ud800"},
    ],
)
def test_canonical_json_refuses_what_rfc8785_refuses(value: Any) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(value)
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json(value)


def test_chained_hashes_equal_the_reference_hash() -> None:
    # Prepare: entries whose text fields and payloads need escaping and sorting.
    rng = random.Random(42)
    head = (0, GENESIS_HASH)
    entries = []

    # Execute
    for n in range(300):
        payload = _random_value(rng, 1)
        draft = draft_entry(
            kind="negotiation.state",
            actor=rng.choice(AWKWARD_TEXT) or "node",
            peer=rng.choice(AWKWARD_TEXT),
            subject=rng.choice(AWKWARD_TEXT),
            payload={"value": payload, "n": n},
        )
        entry = chain_entry(draft, head, time=T0 + timedelta(microseconds=n))
        entries.append(entry)
        head = (entry.seq, entry.hash)

    # Assert
    for entry in entries:
        assert entry.hash == entry_hash(
            seq=entry.seq,
            time=entry.time,
            kind=entry.kind,
            actor=entry.actor,
            peer=entry.peer,
            subject=entry.subject,
            payload=entry.payload,
            prev_hash=entry.prev_hash,
        )
    assert verify_entries(entries, head).ok


def test_a_draft_holds_the_payload_read_back_canonically() -> None:
    draft = draft_entry(
        kind="agreement.signed",
        actor="node",
        payload={"epsilon": 2.0, "parties": ("hamburg", "berlin"), "nested": {"b": 1, "a": 1.5}},
    )

    assert draft.payload == {
        "epsilon": 2,
        "parties": ["hamburg", "berlin"],
        "nested": {"a": 1.5, "b": 1},
    }
    assert draft.canonical_payload == rfc8785.dumps(draft.payload)


def test_next_entry_still_refuses_a_naive_time_and_keeps_nothing() -> None:
    draft = draft_entry(kind="dataset.created", actor="node", payload={})

    with pytest.raises(ValueError, match="naive"):
        chain_entry(draft, (0, GENESIS_HASH), time=datetime(2025, 3, 1))
    assert next_entry((0, GENESIS_HASH), time=T0, kind="dataset.created", actor="node", payload={})
