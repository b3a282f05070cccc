"""The audit log: an append-only, hash-chained record of everything the node does.

Every negotiation message, agreement, dataset change, round and update that leaves
the node is appended as an :class:`AuditEntry`. Entries are numbered 1, 2, 3 ...
without gaps; each carries the hash of the one before it (:data:`GENESIS_HASH` for
the first) and its own hash over all its other fields (:func:`entry_hash`), so an
entry edited, removed or moved breaks the chain. A separate *head* (the number and
hash of the newest entry), moved in the same transaction as each append, makes a
cut-off tail visible too.

This module holds what needs no database: the hash, the chaining of a new entry
(:func:`next_entry`), verification (:func:`verify_entries`) and the JSON-lines
export (:func:`export_jsonl`, :func:`parse_jsonl`), so that anyone holding an
exported log can check it. The log in the node's database is
:class:`connector.store.SqlAuditLog`.

The hash is the SHA-256 (lowercase hex) of the RFC 8785 canonical JSON of the
object with the keys ``seq``, ``time``, ``kind``, ``actor``, ``peer``, ``subject``,
``payload`` and ``prev_hash``, where ``time`` is written in UTC as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import rfc8785

GENESIS_HASH: Final = "0" * 64
"""The ``prev_hash`` of entry 1, and the head's hash while the log is empty."""

KIND_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
"""What an entry kind looks like: dotted lowercase words, e.g. ``negotiation.state``."""

KIND_MAX_LENGTH: Final = 128
"""Longest entry kind."""

_HASH_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
_FIELDS: Final = (
    "seq",
    "time",
    "kind",
    "actor",
    "peer",
    "subject",
    "payload",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log."""

    seq: int
    """Position in the log: 1 for the first entry, then without gaps."""
    time: datetime
    """When it was appended (timezone-aware, UTC)."""
    kind: str
    """What happened, e.g. ``negotiation.message.sent`` or ``dataset.created``."""
    actor: str
    """Who did it: a participant id, ``operator`` or ``node``."""
    peer: str
    """The participant on the other side, or empty."""
    subject: str
    """What it concerns (a negotiation id, a dataset id), or empty."""
    payload: Mapping[str, Any]
    """The details, a JSON object."""
    prev_hash: str
    """The hash of the entry before (:data:`GENESIS_HASH` for entry 1)."""
    hash: str
    """This entry's hash over all its other fields (:func:`entry_hash`)."""


@dataclass(frozen=True)
class AuditVerification:
    """What checking an audit log found."""

    ok: bool
    """Whether the whole log is intact."""
    entries: int
    """How many entries were found sound, from the first on, before any problem
    (all of them when ``ok``)."""
    first_bad_seq: int | None
    """The first entry at fault (for a missing entry, its number), or ``None``
    when ``ok`` or when the fault is not an entry's (a missing head)."""
    problem: str
    """One sentence saying what is wrong and where; empty when ``ok``."""


class AuditLog(Protocol):
    """An append-only, hash-chained audit log.

    Appends are serialised: two appends never get the same number, and every entry
    chains to the one numbered before it.
    """

    def append(
        self,
        kind: str,
        *,
        actor: str,
        peer: str = "",
        subject: str = "",
        payload: Mapping[str, Any],
    ) -> AuditEntry:
        """Append an entry, timed by the log's clock.

        Args:
            kind: What happened; matches :data:`KIND_PATTERN`.
            actor: Who did it (a participant id, ``operator`` or ``node``); not empty.
            peer: The participant on the other side, if any.
            subject: What it concerns (a negotiation or dataset id), if anything.
            payload: The details: a JSON object (string keys; strings, booleans,
                ``None``, integers within ±2**53, finite floats, lists, objects).

        Returns:
            The entry as appended. Its payload is the canonical JSON form of
            ``payload`` read back (tuples become lists, ``1.0`` becomes ``1``).

        Raises:
            ValueError: A malformed kind, an empty actor, or a payload that is
                not a JSON object.
        """
        ...

    def entries(
        self,
        *,
        after_seq: int = 0,
        limit: int = 100,
        subject: str = "",
        kind_prefix: str = "",
    ) -> list[AuditEntry]:
        """Entries in order: one page of at most ``limit``.

        Args:
            after_seq: Start after this entry (the last ``seq`` of the previous page).
            limit: Page size, at least 1.
            subject: If set, only entries about exactly this subject.
            kind_prefix: If set, only entries whose kind starts with this string
                (``negotiation.`` for every negotiation entry).

        Returns:
            The page; fewer than ``limit`` means there is no next page.
        """
        ...

    def verify(self) -> AuditVerification:
        """Check every entry's hash, the chain, the numbering and the head."""
        ...

    def head(self) -> tuple[int, str]:
        """The number and hash of the newest entry: ``(0, GENESIS_HASH)`` while empty."""
        ...


def entry_hash(
    *,
    seq: int,
    time: datetime,
    kind: str,
    actor: str,
    peer: str,
    subject: str,
    payload: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The hash of an entry with these fields (see the module documentation).

    Returns:
        SHA-256 of the canonical JSON, 64 lowercase hex digits.

    Raises:
        ValueError: ``time`` is naive or ``payload`` is not a JSON object.
    """
    content: dict[str, Any] = {
        "seq": seq,
        "time": format_time(time),
        "kind": kind,
        "actor": actor,
        "peer": peer,
        "subject": subject,
        "payload": _json_object(payload),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


def format_time(time: datetime) -> str:
    """An entry time as hashed and exported: UTC, microseconds, ``Z``.

    Raises:
        ValueError: ``time`` is naive.
    """
    if time.tzinfo is None:
        raise ValueError(f"naive datetime {time.isoformat()} in an audit entry; use UTC")
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_entry(
    head: tuple[int, str],
    *,
    time: datetime,
    kind: str,
    actor: str,
    peer: str = "",
    subject: str = "",
    payload: Mapping[str, Any],
) -> AuditEntry:
    """The entry that follows ``head``: numbered after it, chained to it, hashed.

    Args:
        head: ``(seq, hash)`` of the newest entry, ``(0, GENESIS_HASH)`` for none.
        time: When it happens (timezone-aware).
        kind: What happened; matches :data:`KIND_PATTERN`.
        actor: Who did it; not empty.
        peer: The participant on the other side, if any.
        subject: What it concerns, if anything.
        payload: The details, a JSON object; the entry holds its canonical form.

    Returns:
        The new entry, in UTC.

    Raises:
        ValueError: A malformed kind, an empty actor, a naive time, or a payload
            that is not a JSON object.
    """
    draft = draft_entry(kind=kind, actor=actor, peer=peer, subject=subject, payload=payload)
    return chain_entry(draft, head, time=time)


@dataclass(frozen=True)
class AuditDraft:
    """An entry checked and canonicalised, waiting for its number, time and chain.

    :func:`draft_entry` makes one (before a database is touched, so a malformed
    entry fails early); :func:`chain_entry` numbers, times and hashes it.
    """

    kind: str
    """What happened."""
    actor: str
    """Who did it."""
    peer: str
    """The participant on the other side, or empty."""
    subject: str
    """What it concerns, or empty."""
    payload: Mapping[str, Any]
    """The payload's canonical form read back (tuples are lists, ``1.0`` is ``1``)."""
    canonical_payload: bytes
    """The payload's RFC 8785 canonical JSON, as it is hashed."""


def draft_entry(
    *, kind: str, actor: str, peer: str = "", subject: str = "", payload: Mapping[str, Any]
) -> AuditDraft:
    """Check an entry and canonicalise its payload, once.

    Raises:
        ValueError: A malformed kind, an empty actor, or a payload that is not a
            JSON object.
    """
    if len(kind) > KIND_MAX_LENGTH or not KIND_PATTERN.fullmatch(kind):
        raise ValueError(
            f"audit entry kind {kind!r} is malformed: use dotted lowercase words "
            f"such as 'negotiation.state', at most {KIND_MAX_LENGTH} characters"
        )
    if not actor:
        raise ValueError("an audit entry needs an actor: a participant id, 'operator' or 'node'")
    canonical = _canonical_object(payload)
    return AuditDraft(
        kind=kind,
        actor=actor,
        peer=peer,
        subject=subject,
        payload=json.loads(canonical),
        canonical_payload=canonical,
    )


def chain_entry(draft: AuditDraft, head: tuple[int, str], *, time: datetime) -> AuditEntry:
    """The entry ``draft`` becomes after ``head``: numbered, timed, chained and hashed.

    Gives the hash :func:`entry_hash` gives, from the canonical payload the draft
    holds (the payload is not canonicalised again).

    Raises:
        ValueError: ``time`` is naive.
    """
    if time.tzinfo is None:
        raise ValueError(f"naive datetime {time.isoformat()} in an audit entry; use UTC")
    seq, prev_hash = head[0] + 1, head[1]
    utc = time.astimezone(UTC)
    # RFC 8785 of the hashed object, its keys in their canonical order, the payload
    # spliced in as already canonicalised.
    content = b"".join(
        (
            b'{"actor":',
            _canonical_text(draft.actor),
            b',"kind":',
            _canonical_text(draft.kind),
            b',"payload":',
            draft.canonical_payload,
            b',"peer":',
            _canonical_text(draft.peer),
            b',"prev_hash":',
            _canonical_text(prev_hash),
            b',"seq":',
            _canonical_integer(seq),
            b',"subject":',
            _canonical_text(draft.subject),
            b',"time":',
            _canonical_text(format_time(utc)),
            b"}",
        )
    )
    return AuditEntry(
        seq=seq,
        time=utc,
        kind=draft.kind,
        actor=draft.actor,
        peer=draft.peer,
        subject=draft.subject,
        payload=draft.payload,
        prev_hash=prev_hash,
        hash=hashlib.sha256(content).hexdigest(),
    )


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value``: the bytes :func:`rfc8785.dumps` gives.

    Values without floats, whose object keys all sort the same by code point as by
    UTF-16 code unit (no key with a character from U+D800 up), are written by the
    standard library's C encoder, which then writes exactly what RFC 8785 asks;
    anything else goes through :mod:`rfc8785`.

    Raises:
        ValueError: ``value`` is not JSON (a float that is not finite, an integer
            beyond ±(2**53 - 1), a key that is not a string, another type, text
            that is not UTF-8).
    """
    if _plain_json(value):
        try:
            return json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 names the problem
    return rfc8785.dumps(value)


def verify_entries(
    entries: Iterable[AuditEntry], head: tuple[int, str] | None = None
) -> AuditVerification:
    """Check a log given as its entries in order, and its head if known.

    Each entry must be numbered one after the one before (from 1), chain to it
    (``prev_hash``), and hash to its ``hash``; with ``head``, the last entry must
    be the one the head names. Checking stops at the first problem.

    Args:
        entries: The entries in log order, e.g. from :func:`parse_jsonl`.
        head: ``(seq, hash)`` the head records, or ``None`` not to check it (an
            export without its head cannot show a cut-off tail).

    Returns:
        What was found.
    """
    listed = list(entries)
    positions: dict[str, int] = {}
    for entry in listed:
        positions.setdefault(entry.hash, entry.seq)
    numbers = {entry.seq for entry in listed}
    check = ChainCheck(locate=positions.get, has_seq=numbers.__contains__)
    for entry in listed:
        found = check.add(entry)
        if found is not None:
            return found
    return check.finish(head)


class ChainCheck:
    """Verification fed one entry at a time, for logs too long to hold in memory.

    Call :meth:`add` with each entry in log order until it returns a finding, then
    (if none) :meth:`finish`. :func:`verify_entries` is the simple way in.
    """

    def __init__(
        self,
        *,
        locate: Callable[[str], int | None] | None = None,
        has_seq: Callable[[int], bool] | None = None,
    ) -> None:
        """Start at the beginning of a log.

        The two look-ups only sharpen the explanation of a problem; without them a
        problem is still found.

        Args:
            locate: The ``seq`` of the entry with a given hash anywhere in the log,
                or ``None``: tells entries moved from entries replaced.
            has_seq: Whether an entry with a given number is anywhere in the log:
                tells entries out of order from entries missing (in an export;
                a database returns entries sorted by number).
        """
        self._locate = locate or (lambda _hash: None)
        self._has_seq = has_seq or (lambda _seq: False)
        self._seq = 0
        self._hash = GENESIS_HASH

    def add(self, entry: AuditEntry) -> AuditVerification | None:
        """Check the next entry.

        Returns:
            The finding if this entry shows a problem, else ``None``.
        """
        expected = self._seq + 1
        if entry.seq > expected:
            if self._has_seq(expected):
                return self._bad(
                    expected,
                    f"entries {expected} and {entry.seq} are out of order: "
                    f"entry {entry.seq} comes before entry {expected}",
                )
            return self._bad(expected, _missing(expected, entry.seq))
        if entry.seq < expected:
            if not self._seq:
                problem = f"entry {entry.seq} is out of place: numbering starts at 1"
            elif entry.seq == self._seq:
                problem = f"entry {entry.seq} appears twice"
            else:
                problem = f"entry {entry.seq} is out of place: it comes after entry {self._seq}"
            return self._bad(entry.seq, problem)
        if entry.prev_hash != self._hash:
            return self._bad(entry.seq, self._unchained(entry))
        try:
            recomputed = entry_hash(
                seq=entry.seq,
                time=entry.time,
                kind=entry.kind,
                actor=entry.actor,
                peer=entry.peer,
                subject=entry.subject,
                payload=entry.payload,
                prev_hash=entry.prev_hash,
            )
        except ValueError:
            recomputed = ""
        if recomputed != entry.hash:
            return self._bad(
                entry.seq, f"entry {entry.seq} was edited: its hash does not match its content"
            )
        self._seq, self._hash = entry.seq, entry.hash
        return None

    def finish(self, head: tuple[int, str] | None) -> AuditVerification:
        """The finding once every entry was added without a problem.

        Args:
            head: ``(seq, hash)`` the head records, or ``None`` not to check it.
        """
        if head is not None:
            head_seq, head_hash = head
            if head_seq > self._seq:
                end = f"ends at entry {self._seq}" if self._seq else "is empty"
                return self._bad(
                    self._seq + 1,
                    f"the log was truncated: the head records {head_seq} entries, the log {end}",
                )
            if head_seq < self._seq:
                return self._bad(
                    head_seq + 1,
                    f"{_span(head_seq + 1, self._seq)} beyond the head: the head records "
                    f"{head_seq} entries, so the head was set back or entries were "
                    "added behind its back",
                )
            if head_hash != self._hash:
                if self._seq == 0:
                    return self._bad(
                        None, "the head was edited: an empty log's head must hold the genesis hash"
                    )
                return self._bad(
                    self._seq,
                    f"the head does not match entry {self._seq}: its hash differs, "
                    f"so the head was edited or entry {self._seq} was replaced",
                )
        return AuditVerification(ok=True, entries=self._seq, first_bad_seq=None, problem="")

    def _bad(self, seq: int | None, problem: str) -> AuditVerification:
        return AuditVerification(ok=False, entries=self._seq, first_bad_seq=seq, problem=problem)

    def _unchained(self, entry: AuditEntry) -> str:
        before = f"entry {self._seq}" if self._seq else "the genesis hash"
        elsewhere = self._locate(entry.prev_hash)
        if elsewhere is not None and elsewhere != self._seq:
            low, high = sorted((entry.seq, elsewhere))
            return (
                f"entries {low} and {high} are out of order: entry {entry.seq} chains to "
                f"entry {elsewhere}, not to {before}"
            )
        if not self._seq:
            return f"entry {entry.seq} does not start from the genesis hash"
        return (
            f"entry {entry.seq} does not chain to entry {self._seq}: its prev_hash is not "
            f"the hash of entry {self._seq}, so one of the two was replaced"
        )


def export_jsonl(entries: Iterable[AuditEntry]) -> str:
    """The entries as JSON lines: one canonical JSON object per entry, in order.

    Each object has the entry's fields by name, ``time`` as in :func:`format_time`.
    :func:`parse_jsonl` reads it back, :func:`verify_entries` checks it.
    """
    lines = []
    for entry in entries:
        record = {name: getattr(entry, name) for name in _FIELDS}
        record["time"] = format_time(entry.time)
        record["payload"] = _json_object(entry.payload)
        lines.append(rfc8785.dumps(record).decode("utf-8") + "\n")
    return "".join(lines)


def parse_jsonl(text: str) -> list[AuditEntry]:
    """Entries from JSON lines as :func:`export_jsonl` writes them.

    Blank lines are skipped. Only the form is checked here (every field present,
    of the right type); whether the entries are intact is for :func:`verify_entries`.

    Raises:
        ValueError: A line is not such an object; the message names the line.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(_parse_entry(line))
        except ValueError as exc:
            raise ValueError(f"line {number} is not an audit entry: {exc}") from None
    return entries


def _parse_entry(line: str) -> AuditEntry:
    record = json.loads(line, parse_constant=_refuse_constant)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if set(record) != set(_FIELDS):
        raise ValueError(f"its fields must be exactly {', '.join(_FIELDS)}")
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError("seq must be an integer")
    for name in ("time", "kind", "actor", "peer", "subject", "prev_hash", "hash"):
        if not isinstance(record[name], str):
            raise ValueError(f"{name} must be a string")
    if not isinstance(record["payload"], dict):
        raise ValueError("payload must be a JSON object")
    for name in ("prev_hash", "hash"):
        if not _HASH_PATTERN.fullmatch(record[name]):
            raise ValueError(f"{name} must be 64 lowercase hex digits")
    time = datetime.fromisoformat(record["time"])
    if time.tzinfo is None:
        raise ValueError("time must carry a zone (Z for UTC)")
    return AuditEntry(**{**record, "time": time.astimezone(UTC)})


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_object(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as plain dicts and lists, ready for canonical JSON."""
    if not isinstance(payload, Mapping):
        raise ValueError(f"an audit payload must be a JSON object, not {type(payload).__name__}")
    plain = _plain(payload)
    try:
        rfc8785.dumps(plain)
    except ValueError as exc:  # rfc8785.CanonicalizationError is a ValueError
        raise ValueError(f"an audit payload must be JSON: {exc}") from None
    result: dict[str, Any] = plain
    return result


def _canonical_object(payload: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``payload``, which must be a JSON object."""
    if not isinstance(payload, Mapping):
        raise ValueError(f"an audit payload must be a JSON object, not {type(payload).__name__}")
    try:
        return canonical_json(_plain(payload))
    except ValueError as exc:  # rfc8785.CanonicalizationError is a ValueError
        raise ValueError(f"an audit payload must be JSON: {exc}") from None


def _canonical_text(text: str) -> bytes:
    if type(text) is str and _VERBATIM_TEXT.fullmatch(text):
        return b'"' + text.encode("ascii") + b'"'  # nothing to escape
    # The C encoder escapes a string exactly as RFC 8785 does (see canonical_json).
    if isinstance(text, str):
        try:
            return json.dumps(text, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass
    return rfc8785.dumps(text)


def _canonical_integer(number: int) -> bytes:
    if type(number) is int and -_SAFE_INT <= number <= _SAFE_INT:
        return str(number).encode("ascii")
    return rfc8785.dumps(number)


_VERBATIM_TEXT: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
"""Printable ASCII but the quote and the backslash: written as it is, between quotes."""


_WIDE_KEY: Final = re.compile("[\ud800-\U0010ffff]")
"""Characters whose code point order differs from their UTF-16 code unit order."""
_SAFE_INT: Final = 2**53 - 1


def _plain_json(value: Any) -> bool:
    """Whether the C encoder writes ``value`` (plain dicts and lists) as RFC 8785 does."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INT <= value <= _SAFE_INT
    if isinstance(value, list | tuple):
        return all(_plain_json(item) for item in value)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or (not key.isascii() and _WIDE_KEY.search(key)):
                return False
            if not _plain_json(item):
                return False
        return True
    return False  # floats and anything else: rfc8785 decides


def _plain(value: Any) -> Any:
    """``value`` as plain dicts and lists, ready for JSON."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value  # the common leaves, without the slower abstract-class checks
    if kind is dict or isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [_plain(item) for item in value]
    return value


def _missing(expected: int, found: int) -> str:
    jump = f"sequence jumps from {expected - 1} to {found}"
    if expected == 1:
        jump = f"the log starts at entry {found}"
    if found == expected + 1:
        return f"entry {expected} is missing ({jump})"
    return f"entries {expected} to {found - 1} are missing ({jump})"


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first} to {last} are"
