"""The audit log's pure parts: the hash, chaining, verification and the JSON-lines export."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connector.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditVerification,
    entry_hash,
    export_jsonl,
    next_entry,
    parse_jsonl,
    verify_entries,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
FIXED: dict[str, Any] = {
    "seq": 1,
    "time": T0,
    "kind": "dataset.created",
    "actor": "operator",
    "peer": "",
    "subject": "air-quality",
    "payload": {"title": "Luftqualität", "offers": ["open-research"], "epsilon": 1.5},
    "prev_hash": GENESIS_HASH,
}
FIXED_HASH = "d33b3378882612f0f66085a49d344edca6c53d626db60f7e2f3a4815c38cbb19"


def _chain(count: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    head = (0, GENESIS_HASH)
    for n in range(1, count + 1):
        entry = next_entry(
            head,
            time=T0 + timedelta(seconds=n),
            kind="negotiation.state",
            actor="node",
            peer="did:web:berlin.example",
            subject=f"neg-{n % 2}",
            payload={"n": n, "state": "REQUESTED"},
        )
        entries.append(entry)
        head = (entry.seq, entry.hash)
    return entries


def _broken(first_bad_seq: int | None, entries: int, problem: str) -> AuditVerification:
    return AuditVerification(
        ok=False, entries=entries, first_bad_seq=first_bad_seq, problem=problem
    )


# The hash


def test_the_hash_of_a_fixed_entry_is_pinned() -> None:
    assert entry_hash(**FIXED) == FIXED_HASH


def test_the_hash_is_sha256_of_the_canonical_json() -> None:
    # The form a third party needs to check an entry without this code.
    canonical = (
        '{"actor":"operator","kind":"dataset.created",'
        '"payload":{"epsilon":1.5,"offers":["open-research"],"title":"Luftqualität"},'
        f'"peer":"","prev_hash":"{GENESIS_HASH}","seq":1,"subject":"air-quality",'
        '"time":"2025-03-01T12:00:00.250000Z"}'
    )

    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == FIXED_HASH


def test_the_hash_ignores_time_zone_key_order_and_json_equivalent_forms() -> None:
    # Prepare
    berlin = T0.astimezone(timezone(timedelta(hours=1)))
    reordered = {"epsilon": 1.5, "offers": ("open-research",), "title": "Luftqualität"}

    # Execute
    again = entry_hash(**{**FIXED, "time": berlin, "payload": reordered})

    # Assert
    assert again == FIXED_HASH


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 2),
        ("time", T0 + timedelta(microseconds=1)),
        ("kind", "dataset.deleted"),
        ("actor", "node"),
        ("peer", "did:web:berlin.example"),
        ("subject", "air"),
        ("payload", {**FIXED["payload"], "epsilon": 1.25}),
        ("prev_hash", "1" * 64),
    ],
)
def test_the_hash_covers_every_field(field: str, value: object) -> None:
    assert entry_hash(**{**FIXED, field: value}) != FIXED_HASH


def test_the_hash_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        entry_hash(**{**FIXED, "time": datetime(2025, 3, 1, 12, 0)})


# Chaining a new entry


def test_next_entry_follows_the_head() -> None:
    # Execute
    entry = next_entry(
        (41, "ab" * 32),
        time=T0.astimezone(timezone(timedelta(hours=2))),
        kind="agreement.signed",
        actor="did:web:hamburg.example",
        peer="did:web:berlin.example",
        subject="agr-1",
        payload={"rounds": 10, "epsilon": 2.0, "parties": ("hamburg", "berlin")},
    )

    # Assert
    assert entry.seq == 42
    assert entry.prev_hash == "ab" * 32
    assert entry.time == T0
    assert entry.time.utcoffset() == timedelta(0)
    assert entry.payload == {"rounds": 10, "epsilon": 2, "parties": ["hamburg", "berlin"]}
    fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry) if f.name != "hash"}
    assert entry.hash == entry_hash(**fields)


@pytest.mark.parametrize(
    ("kind", "actor", "payload", "message"),
    [
        ("Negotiation.State", "node", {}, "malformed"),
        ("negotiation..state", "node", {}, "malformed"),
        ("negotiation.state.", "node", {}, "malformed"),
        ("a" * 129, "node", {}, "malformed"),
        ("negotiation.state", "", {}, "needs an actor"),
        ("negotiation.state", "node", {"x": float("inf")}, "must be JSON"),
        ("negotiation.state", "node", {"x": -(2**54)}, "must be JSON"),
        ("negotiation.state", "node", {"x": b"bytes"}, "must be JSON"),
        ("negotiation.state", "node", ["not", "an", "object"], "JSON object"),
    ],
)
def test_next_entry_refuses_a_malformed_entry(
    kind: str, actor: str, payload: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        next_entry((0, GENESIS_HASH), time=T0, kind=kind, actor=actor, payload=payload)


def test_next_entry_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_entry(
            (0, GENESIS_HASH),
            time=datetime(2025, 3, 1),
            kind="dataset.created",
            actor="node",
            payload={},
        )


# JSON lines


def test_export_writes_one_canonical_line_per_entry() -> None:
    entries = _chain(3)

    text = export_jsonl(entries)

    lines = text.splitlines()
    assert len(lines) == 3
    assert text.endswith("\n")
    first = json.loads(lines[0])
    assert list(first) == sorted(first)
    assert first["time"] == "2025-03-01T12:00:01.250000Z"
    assert first["hash"] == entries[0].hash
    assert lines[0] == json.dumps(first, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def test_export_then_parse_gives_the_entries_back() -> None:
    entries = _chain(5)

    parsed = parse_jsonl(export_jsonl(entries))

    assert parsed == entries
    assert export_jsonl(parsed) == export_jsonl(entries)
    assert verify_entries(parsed, head=(5, entries[-1].hash)).ok


def test_parse_skips_blank_lines_and_reads_nothing_from_nothing() -> None:
    entries = _chain(2)
    first, second = export_jsonl(entries).splitlines()

    assert parse_jsonl(f"\n{first}\n   \n{second}") == entries
    assert parse_jsonl("") == []


def _line(**changes: Any) -> str:
    record = json.loads(export_jsonl(_chain(1)))
    record.update(changes)
    return json.dumps({key: value for key, value in record.items() if value is not ...})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "Expecting value"),
        ("[1, 2]", "not a JSON object"),
        (_line(hash=...), "fields must be exactly"),
        (_line(extra=1), "fields must be exactly"),
        (_line(seq="1"), "seq must be an integer"),
        (_line(seq=True), "seq must be an integer"),
        (_line(kind=7), "kind must be a string"),
        (_line(payload=[1]), "payload must be a JSON object"),
        (_line(prev_hash="ABC"), "prev_hash must be 64 lowercase hex digits"),
        (_line(time="2025-03-01T12:00:00"), "must carry a zone"),
        (_line(time="yesterday"), "Invalid isoformat"),
        ('{"payload": NaN}', "NaN is not JSON"),
    ],
)
def test_parse_names_the_line_that_is_not_an_entry(line: str, message: str) -> None:
    good = export_jsonl(_chain(1))

    with pytest.raises(ValueError, match="line 2 is not an audit entry") as error:
        parse_jsonl(good + line + "\n")

    assert message in str(error.value)


# Verification


def test_verify_passes_an_intact_chain_with_or_without_its_head() -> None:
    entries = _chain(6)

    assert verify_entries(entries, head=(6, entries[-1].hash)) == AuditVerification(
        ok=True, entries=6, first_bad_seq=None, problem=""
    )
    assert verify_entries(entries).ok
    assert verify_entries([], head=(0, GENESIS_HASH)) == AuditVerification(
        ok=True, entries=0, first_bad_seq=None, problem=""
    )


def test_verify_finds_an_edited_entry() -> None:
    entries = _chain(6)
    entries[3] = dataclasses.replace(entries[3], payload={"n": 4, "state": "AGREED"})

    assert verify_entries(entries) == _broken(
        4, 3, "entry 4 was edited: its hash does not match its content"
    )


def test_verify_finds_an_entry_that_cannot_be_hashed() -> None:
    entries = _chain(2)
    entries[1] = dataclasses.replace(entries[1], payload={"n": 2**60})

    assert verify_entries(entries) == _broken(
        2, 1, "entry 2 was edited: its hash does not match its content"
    )


def test_verify_finds_missing_entries() -> None:
    entries = _chain(8)

    assert verify_entries(entries[:4] + entries[5:]) == _broken(
        5, 4, "entry 5 is missing (sequence jumps from 4 to 6)"
    )
    assert verify_entries(entries[:2] + entries[5:]) == _broken(
        3, 2, "entries 3 to 5 are missing (sequence jumps from 2 to 6)"
    )
    assert verify_entries(entries[1:]) == _broken(
        1, 0, "entry 1 is missing (the log starts at entry 2)"
    )


def test_verify_finds_lines_out_of_order() -> None:
    entries = _chain(5)
    entries[2], entries[3] = entries[3], entries[2]

    assert verify_entries(entries) == _broken(
        3, 2, "entries 3 and 4 are out of order: entry 4 comes before entry 3"
    )


def test_verify_finds_entries_renumbered_into_each_others_places() -> None:
    entries = _chain(5)
    third, fourth = entries[2], entries[3]
    entries[2] = dataclasses.replace(fourth, seq=3)
    entries[3] = dataclasses.replace(third, seq=4)

    assert verify_entries(entries) == _broken(
        3, 2, "entries 3 and 4 are out of order: entry 3 chains to entry 4, not to entry 2"
    )


def test_verify_finds_an_entry_given_twice_or_out_of_place() -> None:
    entries = _chain(4)

    assert verify_entries([*entries[:3], entries[2], entries[3]]) == _broken(
        3, 3, "entry 3 appears twice"
    )
    assert verify_entries([*entries[:3], entries[0]]) == _broken(
        1, 3, "entry 1 is out of place: it comes after entry 3"
    )
    assert verify_entries([dataclasses.replace(entries[0], seq=0)]) == _broken(
        0, 0, "entry 0 is out of place: numbering starts at 1"
    )


def test_verify_finds_a_chain_not_from_genesis_and_a_replaced_entry() -> None:
    entries = _chain(4)
    moved_start = next_entry(
        (0, "e" * 64), time=T0, kind="dataset.created", actor="node", payload={}
    )
    moved_start = dataclasses.replace(moved_start, seq=1)
    replaced = next_entry(
        (1, entries[0].hash), time=T0, kind="dataset.created", actor="node", payload={}
    )

    assert verify_entries([moved_start, *entries[1:]]) == _broken(
        1, 0, "entry 1 does not start from the genesis hash"
    )
    assert verify_entries([entries[0], replaced, *entries[2:]]) == _broken(
        3,
        2,
        "entry 3 does not chain to entry 2: its prev_hash is not the hash of entry 2, "
        "so one of the two was replaced",
    )


def test_verify_checks_the_head() -> None:
    entries = _chain(6)
    last = entries[-1].hash

    assert verify_entries(entries[:4], head=(6, last)) == _broken(
        5, 4, "the log was truncated: the head records 6 entries, the log ends at entry 4"
    )
    assert verify_entries([], head=(6, last)) == _broken(
        1, 0, "the log was truncated: the head records 6 entries, the log is empty"
    )
    assert verify_entries(entries, head=(5, entries[4].hash)) == _broken(
        6,
        6,
        "entry 6 is beyond the head: the head records 5 entries, "
        "so the head was set back or entries were added behind its back",
    )
    assert verify_entries(entries, head=(6, "f" * 64)) == _broken(
        6,
        6,
        "the head does not match entry 6: its hash differs, "
        "so the head was edited or entry 6 was replaced",
    )
    assert verify_entries([], head=(0, "f" * 64)) == _broken(
        None, 0, "the head was edited: an empty log's head must hold the genesis hash"
    )


def test_an_export_edited_as_text_fails_verification() -> None:
    # Prepare
    entries = _chain(4)
    text = export_jsonl(entries).replace('"state":"REQUESTED"', '"state":"AGREED"', 1)

    # Execute
    found = verify_entries(parse_jsonl(text), head=(4, entries[-1].hash))

    # Assert
    assert found == _broken(1, 0, "entry 1 was edited: its hash does not match its content")
