"""Tests for Hanse errors on the wire (connector.errors, connector.interceptors.errors)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from connector.errors import (
    DOMAIN,
    REASONS,
    ConnectorError,
    FieldViolation,
    already_exists,
    code_name,
    from_rpc_error,
    invalid_argument,
    not_found,
    to_rpc_status,
    unauthenticated,
    unavailable,
)
from connector.interceptors.errors import ErrorInterceptor

SERVICE = "hanse.test.v1.Errors"
TIMEOUT = 5
SECRET = "password=hunter2 at /srv/secret/db"

ERRORS: dict[str, ConnectorError] = {
    "rich": ConnectorError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "PEER_IDENTITY_MISMATCH",
        "peer city-b at b:7443 is 'urn:x', expected 'urn:hanse:city-b'",
        retryable=True,
        metadata={"peer": "city-b", "presented": "urn:x"},
        violations=(
            FieldViolation("dataset.id", "must be lower case"),
            FieldViolation("dataset.offers[0].policy_json", "not JSON"),
        ),
    ),
    "invalid": invalid_argument("a dataset needs a title", "dataset.title"),
    "not_found": not_found("DATASET_NOT_FOUND", "no dataset 'x'", dataset_id="x"),
    "exists": already_exists("DATASET_ALREADY_EXISTS", "dataset 'x' exists", dataset_id="x"),
    "unauthenticated": unauthenticated("CREDENTIAL_MISSING", "no credential"),
    "unavailable": unavailable("PEER_UNAVAILABLE", "peer down", peer="city-b"),
    "unicode": invalid_argument("Straße «München» is not an id", "dataset.id"),
}


def _raise(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise ERRORS[request.decode()]


def _boom(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RuntimeError(SECRET)


def _plain(request: bytes, context: grpc.ServicerContext) -> bytes:
    code = grpc.StatusCode[request.decode()]
    context.abort(code, f"plain {code.name.lower()}")
    raise AssertionError("abort returned")


def _ok(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"ok:" + request


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorInterceptor()]
    )
    handlers = {
        "Raise": grpc.unary_unary_rpc_method_handler(_raise),
        "Boom": grpc.unary_unary_rpc_method_handler(_boom),
        "Plain": grpc.unary_unary_rpc_method_handler(_plain),
        "Ok": grpc.unary_unary_rpc_method_handler(_ok),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as open_channel:
            yield open_channel
    finally:
        server.stop(grace=None).wait(TIMEOUT)


def _failed(channel: grpc.Channel, method: str, request: bytes) -> grpc.RpcError:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/{method}")
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=TIMEOUT)
    return raised.value


# --- round trip through a real server ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_survives_the_round_trip(channel: grpc.Channel, name: str) -> None:
    # Prepare
    sent = ERRORS[name]

    # Execute
    received = from_rpc_error(_failed(channel, "Raise", name.encode()))

    # Assert
    assert received.code == sent.code
    assert received.reason == sent.reason
    assert received.message == sent.message
    assert received.retryable is sent.retryable
    assert dict(received.metadata) == dict(sent.metadata)
    assert list(received.violations) == list(sent.violations)
    assert str(received) == str(sent)


def test_wire_status_carries_error_info_in_the_hanse_domain(channel: grpc.Channel) -> None:
    # Prepare
    exc = _failed(channel, "Raise", b"rich")

    # Execute
    status = rpc_status.from_call(exc)

    # Assert
    assert status is not None
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == DOMAIN
    assert info.reason == "PEER_IDENTITY_MISMATCH"
    assert dict(info.metadata) == {"peer": "city-b", "presented": "urn:x", "retryable": "true"}
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [v.field for v in bad.field_violations] == [
        "dataset.id",
        "dataset.offers[0].policy_json",
    ]


def test_unexpected_exception_becomes_internal_without_leaking(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    caplog.set_level(logging.ERROR, logger="hanse.rpc")

    # Execute
    exc = _failed(channel, "Boom", b"")

    # Assert
    received = from_rpc_error(exc)
    assert received.code == grpc.StatusCode.INTERNAL
    assert received.reason == "INTERNAL"
    assert received.retryable is False
    assert f"/{SERVICE}/Boom" in received.message
    assert "hunter2" not in received.message
    assert "RuntimeError" not in received.message
    assert "hunter2" not in (exc.details() or "")
    records = [r for r in caplog.records if r.name == "hanse.rpc"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == SECRET


def test_successful_call_passes_through(channel: grpc.Channel) -> None:
    # Prepare
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/Ok")

    # Execute
    response = call(b"hi", timeout=TIMEOUT)

    # Assert
    assert response == b"ok:hi"


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("NOT_FOUND", False),
        ("PERMISSION_DENIED", False),
        ("UNAVAILABLE", True),
    ],
)
def test_failure_without_details_has_reason_unknown(
    channel: grpc.Channel, code: str, retryable: bool
) -> None:
    # Prepare
    exc = _failed(channel, "Plain", code.encode())

    # Execute
    received = from_rpc_error(exc)

    # Assert
    assert received.code == grpc.StatusCode[code]
    assert received.reason == "UNKNOWN"
    assert received.message == f"plain {code.lower()}"
    assert received.retryable is retryable
    assert dict(received.metadata) == {}
    assert list(received.violations) == []


def test_unimplemented_method_has_reason_unknown(channel: grpc.Channel) -> None:
    # Prepare
    exc = _failed(channel, "Missing", b"")

    # Execute
    received = from_rpc_error(exc)

    # Assert
    assert received.code == grpc.StatusCode.UNIMPLEMENTED
    assert received.reason == "UNKNOWN"


def test_deadline_is_retryable_with_reason_unknown() -> None:
    # Prepare
    with grpc.insecure_channel("127.0.0.1:1") as unreachable:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = unreachable.unary_unary("/x.Y/Z")
        with pytest.raises(grpc.RpcError) as raised:
            call(b"", timeout=0.05, wait_for_ready=True)

    # Execute
    received = from_rpc_error(raised.value)

    # Assert
    assert received.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert received.reason == "UNKNOWN"
    assert received.retryable is True


def test_rpc_error_that_is_not_a_call_is_unknown() -> None:
    # Prepare
    exc = grpc.RpcError("transport broke")

    # Execute
    received = from_rpc_error(exc)

    # Assert
    assert received.code == grpc.StatusCode.UNKNOWN
    assert received.reason == "UNKNOWN"
    assert received.message == "transport broke"


# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason", ["NOT_A_REASON", "dataset_not_found", "", "ERROR_REASON_INTERNAL"]
)
def test_undeclared_reason_is_refused_at_construction(reason: str) -> None:
    # Prepare
    code = grpc.StatusCode.NOT_FOUND

    # Execute
    with pytest.raises(ValueError, match="undeclared error reason") as raised:
        ConnectorError(code, reason, "message")

    # Assert
    assert repr(reason) in str(raised.value)


def test_declared_reasons_come_from_common_proto() -> None:
    # Prepare
    expected = {"INVALID_ARGUMENT", "REQUEST_TOO_LARGE", "POLICY_INVALID", "PAGE_TOKEN_INVALID"}

    # Execute
    declared = set(REASONS)

    # Assert
    assert expected <= declared
    assert "UNSPECIFIED" not in declared
    assert not any(r.startswith("ERROR_REASON_") for r in declared)


def test_error_text_names_message_and_reason() -> None:
    # Prepare
    error = not_found("DATASET_NOT_FOUND", "no dataset 'x'", dataset_id="x")

    # Execute
    text = str(error)

    # Assert
    assert text == "no dataset 'x' [DATASET_NOT_FOUND]"
    assert error.args == ("no dataset 'x'",)


def test_helpers_set_code_and_retryability() -> None:
    # Prepare
    made = [
        invalid_argument("bad", "f"),
        invalid_argument("bad"),
        not_found("DATASET_NOT_FOUND", "m"),
        already_exists("OFFER_ALREADY_EXISTS", "m"),
        unauthenticated("CREDENTIAL_INVALID", "m"),
        unavailable("PEER_UNAVAILABLE", "m"),
    ]

    # Execute
    summary = [(e.code, e.retryable, len(e.violations)) for e in made]

    # Assert
    assert summary == [
        (grpc.StatusCode.INVALID_ARGUMENT, False, 1),
        (grpc.StatusCode.INVALID_ARGUMENT, False, 0),
        (grpc.StatusCode.NOT_FOUND, False, 0),
        (grpc.StatusCode.ALREADY_EXISTS, False, 0),
        (grpc.StatusCode.UNAUTHENTICATED, False, 0),
        (grpc.StatusCode.UNAVAILABLE, True, 0),
    ]


def test_to_rpc_status_without_violations_has_only_error_info() -> None:
    # Prepare
    error = not_found("DATASET_NOT_FOUND", "no dataset")

    # Execute
    status = to_rpc_status(error)

    # Assert
    assert status.code == grpc.StatusCode.NOT_FOUND
    assert status.details == "no dataset"
    keys = [key for key, _ in status.trailing_metadata]
    assert keys == ["grpc-status-details-bin"]


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (grpc.StatusCode.OK, "OK"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
        (grpc.StatusCode.INTERNAL, "INTERNAL"),
    ],
)
def test_code_name(code: grpc.StatusCode, name: str) -> None:
    # Prepare
    given = code

    # Execute
    result = code_name(given)

    # Assert
    assert result == name
