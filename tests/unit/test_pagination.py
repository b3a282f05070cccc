"""Tests for page sizes and opaque page tokens (connector.pagination)."""

from __future__ import annotations

import base64
import json

import grpc
import pytest

from connector.errors import ConnectorError
from connector.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_token,
    encode_token,
    page_size,
)

QUERY = "catalog?keyword=mobility"


def _assert_token_refused(error: ConnectorError, needle: str) -> None:
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "PAGE_TOKEN_INVALID"
    assert [v.field for v in error.violations] == ["page_token"]
    assert needle in error.message


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (0, DEFAULT_PAGE_SIZE),
        (1, 1),
        (37, 37),
        (MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE),
        (2**31 - 1, MAX_PAGE_SIZE),
    ],
)
def test_page_size_defaults_and_caps(requested: int, expected: int) -> None:
    # Prepare
    given = requested

    # Execute
    size = page_size(given)

    # Assert
    assert size == expected


def test_documented_default_and_cap() -> None:
    # Prepare
    documented = (50, 500)

    # Execute
    actual = (DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)

    # Assert
    assert actual == documented


@pytest.mark.parametrize("requested", [-1, -(2**31)])
def test_negative_page_size_is_refused(requested: int) -> None:
    # Prepare
    given = requested

    # Execute
    with pytest.raises(ConnectorError) as raised:
        page_size(given)

    # Assert
    error = raised.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert [v.field for v in error.violations] == ["page_size"]
    assert "must not be negative" in error.message


@pytest.mark.parametrize("after_id", ["counts", "a.b_c-d", "", "ünïcode/ids?&="])
def test_token_round_trips_for_the_same_query(after_id: str) -> None:
    # Prepare
    token = encode_token(after_id, QUERY)

    # Execute
    decoded = decode_token(token, QUERY)

    # Assert
    assert decoded == after_id
    assert "=" not in token


def test_token_is_opaque_and_url_safe() -> None:
    # Prepare
    after_id = "counts-2024"

    # Execute
    token = encode_token(after_id, QUERY)

    # Assert
    assert after_id not in token
    assert QUERY not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_no_token_means_from_the_start() -> None:
    # Prepare
    token = ""

    # Execute
    decoded = decode_token(token, QUERY)

    # Assert
    assert decoded == ""


def test_token_from_another_query_is_refused() -> None:
    # Prepare
    token = encode_token("counts", QUERY)

    # Execute
    with pytest.raises(ConnectorError) as raised:
        decode_token(token, "catalog?keyword=energy")

    # Assert
    _assert_token_refused(raised.value, "belongs to another query")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "a",
        "!!!!",
        _b64(b"not json"),
        _b64(b"\xff\xfe\xfd"),
        _b64(b"[1, 2]"),
        _b64(b'"just a string"'),
        _b64(b"42"),
        _b64(b"null"),
        _b64(json.dumps({"q": "0" * 16}).encode()),
        _b64(json.dumps({"a": "counts"}).encode()),
    ],
    ids=[
        "spaces",
        "one-char",
        "punctuation",
        "not-json",
        "not-utf8",
        "list",
        "string",
        "number",
        "null",
        "no-after",
        "no-query",
    ],
)
def test_garbage_token_is_refused(token: str) -> None:
    # Prepare
    given = token

    # Execute
    with pytest.raises(ConnectorError) as raised:
        decode_token(given, QUERY)

    # Assert
    assert raised.value.reason == "PAGE_TOKEN_INVALID"
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_token_with_non_string_position_is_refused() -> None:
    # Prepare
    genuine = json.loads(base64.urlsafe_b64decode(encode_token("counts", QUERY) + "=="))
    forged = _b64(json.dumps({"a": 7, "q": genuine["q"]}).encode())

    # Execute
    with pytest.raises(ConnectorError) as raised:
        decode_token(forged, QUERY)

    # Assert
    _assert_token_refused(raised.value, "page_token")


def test_malformed_token_message_says_what_to_do() -> None:
    # Prepare
    token = _b64(b"not json")

    # Execute
    with pytest.raises(ConnectorError) as raised:
        decode_token(token, QUERY)

    # Assert
    _assert_token_refused(raised.value, "pass the next_page_token of a previous response")
