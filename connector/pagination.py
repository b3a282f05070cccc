"""Opaque page tokens (AIP-158): keyset pagination bound to the query that made it."""

from __future__ import annotations

import base64
import hashlib
import json

from connector.errors import invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    """The page size to use for a requested one (0 = default)."""
    if requested < 0:
        raise invalid_argument("page_size must not be negative", "page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _query_digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def encode_token(after_id: str, query: str) -> str:
    """A token that resumes after ``after_id`` for the same ``query``."""
    raw = json.dumps({"a": after_id, "q": _query_digest(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, query: str) -> str:
    """The id to resume after, from a token made for ``query`` ("" for no token)."""
    if not token:
        return ""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = data["a"]
        digest = data["q"]
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid_argument(
            "page_token is malformed; pass the next_page_token of a previous response",
            "page_token",
            "PAGE_TOKEN_INVALID",
        ) from exc
    if not isinstance(after, str) or digest != _query_digest(query):
        raise invalid_argument(
            "page_token belongs to another query; start again without a token",
            "page_token",
            "PAGE_TOKEN_INVALID",
        )
    return after
