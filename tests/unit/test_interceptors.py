"""Tests for the request-size and metrics interceptors (connector.interceptors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from connector.errors import from_rpc_error, not_found
from connector.interceptors.errors import ErrorInterceptor
from connector.interceptors.limits import RequestSizeInterceptor
from connector.interceptors.metrics import MetricsInterceptor, RpcMetrics
from connector.v1.dataset_management_pb2 import GetDatasetRequest

SERVICE = "hanse.test.v1.Interceptors"
GET = f"/{SERVICE}/Get"
FAIL = f"/{SERVICE}/Fail"
BOOM = f"/{SERVICE}/Boom"
TIMEOUT = 5
LIMIT = 64


class _Served:
    """What the handlers saw."""

    def __init__(self) -> None:
        self.requests: list[GetDatasetRequest] = []


def _start(
    interceptors: list[grpc.ServerInterceptor], served: _Served
) -> tuple[grpc.Server, grpc.Channel]:
    def get(request: GetDatasetRequest, context: grpc.ServicerContext) -> GetDatasetRequest:
        served.requests.append(request)
        return GetDatasetRequest(dataset_id="echo:" + request.dataset_id)

    def fail(request: GetDatasetRequest, context: grpc.ServicerContext) -> GetDatasetRequest:
        served.requests.append(request)
        raise not_found("DATASET_NOT_FOUND", f"no dataset {request.dataset_id!r}")

    def boom(request: GetDatasetRequest, context: grpc.ServicerContext) -> GetDatasetRequest:
        served.requests.append(request)
        raise RuntimeError("unexpected")

    def handler(behaviour: Callable[..., Any]) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=GetDatasetRequest.FromString,
            response_serializer=GetDatasetRequest.SerializeToString,
        )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Get": handler(get), "Fail": handler(fail), "Boom": handler(boom)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")


def _call(channel: grpc.Channel, method: str, dataset_id: str) -> GetDatasetRequest:
    stub: grpc.UnaryUnaryMultiCallable[GetDatasetRequest, GetDatasetRequest] = channel.unary_unary(
        method,
        request_serializer=GetDatasetRequest.SerializeToString,
        response_deserializer=GetDatasetRequest.FromString,
    )
    return stub(GetDatasetRequest(dataset_id=dataset_id), timeout=TIMEOUT)


def _failed(channel: grpc.Channel, method: str, dataset_id: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        _call(channel, method, dataset_id)
    return raised.value


@pytest.fixture
def served() -> _Served:
    return _Served()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def size_channel(served: _Served) -> Iterator[grpc.Channel]:
    server, channel = _start([RequestSizeInterceptor(LIMIT), ErrorInterceptor()], served)
    yield channel
    channel.close()
    server.stop(grace=None).wait(TIMEOUT)


@pytest.fixture
def metrics_channel(served: _Served, registry: CollectorRegistry) -> Iterator[grpc.Channel]:
    interceptors: list[grpc.ServerInterceptor] = [
        MetricsInterceptor(RpcMetrics(registry), "management"),
        RequestSizeInterceptor(LIMIT),
        ErrorInterceptor(),
    ]
    server, channel = _start(interceptors, served)
    yield channel
    channel.close()
    server.stop(grace=None).wait(TIMEOUT)


@pytest.fixture
def bare_metrics_channel(served: _Served, registry: CollectorRegistry) -> Iterator[grpc.Channel]:
    server, channel = _start([MetricsInterceptor(RpcMetrics(registry), "protocol")], served)
    yield channel
    channel.close()
    server.stop(grace=None).wait(TIMEOUT)


def _calls(registry: CollectorRegistry, method: str, code: str, api: str = "management") -> float:
    value = registry.get_sample_value(
        "hanse_rpc_calls_total", {"api": api, "method": method, "code": code}
    )
    return 0.0 if value is None else value


# --- RequestSizeInterceptor -------------------------------------------------------------------


def test_request_over_the_limit_is_refused_before_the_handler(
    size_channel: grpc.Channel, served: _Served
) -> None:
    # Prepare
    dataset_id = "x" * LIMIT
    size = GetDatasetRequest(dataset_id=dataset_id).ByteSize()

    # Execute
    exc = _failed(size_channel, GET, dataset_id)

    # Assert
    error = from_rpc_error(exc)
    assert size > LIMIT
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "REQUEST_TOO_LARGE"
    assert dict(error.metadata) == {"limit_bytes": str(LIMIT), "size_bytes": str(size)}
    assert error.retryable is False
    assert f"limit of {LIMIT} bytes" in error.message
    assert served.requests == []


def test_request_at_the_limit_is_served(size_channel: grpc.Channel, served: _Served) -> None:
    # Prepare
    dataset_id = "x" * (LIMIT - 2)
    assert GetDatasetRequest(dataset_id=dataset_id).ByteSize() == LIMIT

    # Execute
    response = _call(size_channel, GET, dataset_id)

    # Assert
    assert response.dataset_id == "echo:" + dataset_id
    assert [r.dataset_id for r in served.requests] == [dataset_id]


def test_small_request_is_served(size_channel: grpc.Channel, served: _Served) -> None:
    # Prepare
    dataset_id = "counts"

    # Execute
    response = _call(size_channel, GET, dataset_id)

    # Assert
    assert response.dataset_id == "echo:counts"
    assert len(served.requests) == 1


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_limit_must_be_positive(max_bytes: int) -> None:
    # Prepare
    given = max_bytes

    # Execute
    with pytest.raises(ValueError, match="must be positive"):
        RequestSizeInterceptor(given)

    # Assert
    assert RequestSizeInterceptor(1).max_bytes == 1


# --- MetricsInterceptor -----------------------------------------------------------------------


def test_metrics_count_ok_and_errors_per_method_and_code(
    metrics_channel: grpc.Channel, registry: CollectorRegistry
) -> None:
    # Prepare
    _call(metrics_channel, GET, "a")
    _call(metrics_channel, GET, "b")

    # Execute
    _failed(metrics_channel, FAIL, "c")
    _failed(metrics_channel, BOOM, "d")
    _failed(metrics_channel, GET, "x" * LIMIT)

    # Assert
    assert _calls(registry, GET, "OK") == 2
    assert _calls(registry, GET, "RESOURCE_EXHAUSTED") == 1
    assert _calls(registry, FAIL, "NOT_FOUND") == 1
    assert _calls(registry, FAIL, "OK") == 0
    assert _calls(registry, BOOM, "INTERNAL") == 1
    labels = {"api": "management", "method": GET}
    assert registry.get_sample_value("hanse_rpc_duration_seconds_count", labels) == 3
    assert registry.get_sample_value("hanse_rpc_duration_seconds_sum", labels) >= 0


def test_metrics_start_empty_in_a_fresh_registry(
    metrics_channel: grpc.Channel, registry: CollectorRegistry
) -> None:
    # Prepare
    before = _calls(registry, GET, "OK")

    # Execute
    _call(metrics_channel, GET, "a")

    # Assert
    assert before == 0
    assert _calls(registry, GET, "OK") == 1


def test_metrics_without_an_error_interceptor_count_unknown(
    bare_metrics_channel: grpc.Channel, registry: CollectorRegistry
) -> None:
    # Prepare
    _call(bare_metrics_channel, GET, "a")

    # Execute
    exc = _failed(bare_metrics_channel, BOOM, "b")

    # Assert
    assert exc.code() == grpc.StatusCode.UNKNOWN
    assert _calls(registry, GET, "OK", api="protocol") == 1
    assert _calls(registry, BOOM, "UNKNOWN", api="protocol") == 1
    assert _calls(registry, BOOM, "UNKNOWN", api="management") == 0


def test_metric_families_register_once_per_registry(registry: CollectorRegistry) -> None:
    # Prepare
    RpcMetrics(registry)

    # Execute
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        RpcMetrics(registry)

    # Assert
    other = RpcMetrics(CollectorRegistry())
    other.calls.labels("protocol", GET, "OK").inc()
    assert _calls(registry, GET, "OK", api="protocol") == 0
