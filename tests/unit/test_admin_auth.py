"""Tests for the management API's admin token (connector.interceptors.admin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from connector.errors import from_rpc_error
from connector.interceptors.admin import (
    AdminTokenError,
    AdminTokenInterceptor,
    admin_call_credentials,
    bearer_metadata,
    generate_admin_token,
    read_token_file,
)

TOKEN = "t" * 16 + "-admin-token-for-tests-0123456789"
SERVICE = "hanse.test.v1.Management"
ECHO = f"/{SERVICE}/Echo"
TIMEOUT = 5


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"echo:" + request


def _start(add_port: Callable[[grpc.Server], int]) -> tuple[grpc.Server, str]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[AdminTokenInterceptor(TOKEN)],
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
            )
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = add_port(server)
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    server, target = _start(lambda s: s.add_insecure_port("127.0.0.1:0"))
    yield target
    server.stop(grace=None).wait(TIMEOUT)


@pytest.fixture
def channel(address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(address) as open_channel:
        yield open_channel


def _echo_call(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] | None = None) -> bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO)
    return call(b"hi", metadata=metadata, timeout=TIMEOUT)


def test_call_with_admin_token_is_served(channel: grpc.Channel) -> None:
    # Prepare
    metadata = bearer_metadata(TOKEN)

    # Execute
    response = _echo_call(channel, metadata)

    # Assert
    assert response == b"echo:hi"


def test_bearer_scheme_is_case_insensitive(channel: grpc.Channel) -> None:
    # Prepare
    metadata = (("authorization", f"bearer {TOKEN}"),)

    # Execute
    response = _echo_call(channel, metadata)

    # Assert
    assert response == b"echo:hi"


def test_call_without_token_is_credential_missing(channel: grpc.Channel) -> None:
    # Prepare
    metadata = (("x-other", "value"),)

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _echo_call(channel, metadata)

    # Assert
    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "CREDENTIAL_MISSING"
    assert error.message == (
        "management call without credential: pass the admin token "
        "(hanse reads it from the node config)"
    )


@pytest.mark.parametrize(
    "value",
    [
        "Bearer " + TOKEN[:-1] + "x",
        "Bearer " + TOKEN[:-1],
        "Bearer " + TOKEN + "x",
        "Bearer ",
        TOKEN,
        "Basic " + TOKEN,
        "Bearer  " + TOKEN + "-",
    ],
)
def test_call_with_wrong_token_is_credential_invalid(channel: grpc.Channel, value: str) -> None:
    # Prepare
    metadata = (("authorization", value),)

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _echo_call(channel, metadata)

    # Assert
    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "CREDENTIAL_INVALID"
    assert TOKEN not in error.message


def test_two_authorization_headers_are_credential_invalid(channel: grpc.Channel) -> None:
    # Prepare
    metadata = (*bearer_metadata(TOKEN), ("authorization", "Bearer wrong"))

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        _echo_call(channel, metadata)

    # Assert
    assert from_rpc_error(raised.value).reason == "CREDENTIAL_INVALID"


def test_health_check_needs_no_token(channel: grpc.Channel) -> None:
    # Prepare
    stub = health_pb2_grpc.HealthStub(channel)

    # Execute
    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)

    # Assert
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_admin_call_credentials_on_local_channel() -> None:
    # Prepare
    local = grpc.LocalConnectionType.LOCAL_TCP
    server, target = _start(
        lambda s: s.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(local))
    )
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(local), admin_call_credentials(TOKEN)
    )

    # Execute
    try:
        with grpc.secure_channel(target, credentials) as channel:
            response = _echo_call(channel)
    finally:
        server.stop(grace=None).wait(TIMEOUT)

    # Assert
    assert response == b"echo:hi"


@pytest.mark.parametrize("token", ["", "short", "x" * 31, "x" * 31 + " ", "x" * 40 + "\n"])
def test_unusable_token_is_rejected_by_constructor(token: str) -> None:
    # Prepare
    build = AdminTokenInterceptor

    # Execute
    with pytest.raises(ValueError, match="admin token") as raised:
        build(token)

    # Assert
    assert isinstance(raised.value, AdminTokenError)


def test_generated_tokens_are_long_unique_and_accepted() -> None:
    # Prepare
    count = 20

    # Execute
    tokens = {generate_admin_token() for _ in range(count)}

    # Assert
    assert len(tokens) == count
    assert all(len(t) >= 32 for t in tokens)
    assert all(AdminTokenInterceptor(t) for t in tokens)


def test_read_token_file_strips_whitespace(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "admin-token"
    path.write_text(f"  {TOKEN}\n", encoding="utf-8")

    # Execute
    token = read_token_file(path)

    # Assert
    assert token == TOKEN


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("too-short\n", "use at least 32"),
    ],
)
def test_read_token_file_errors_name_the_file(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    # Prepare
    path = tmp_path / "admin-token"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    # Execute
    with pytest.raises(AdminTokenError) as raised:
        read_token_file(path)

    # Assert
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)
