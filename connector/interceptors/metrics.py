"""Prometheus metrics for every RPC: count by status code, and latency."""

from __future__ import annotations

import time
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from connector.errors import code_name
from connector.interceptors.handlers import AroundInterceptor, Behavior


class RpcMetrics:
    """The RPC metric families, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "hanse_rpc_calls",
            "RPCs handled, by API, method and status code.",
            ["api", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "hanse_rpc_duration_seconds",
            "Time to handle an RPC.",
            ["api", "method"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )


class MetricsInterceptor(AroundInterceptor):
    """Count and time each RPC of one API (``protocol`` or ``management``)."""

    def __init__(self, metrics: RpcMetrics, api: str) -> None:
        self.metrics = metrics
        self.api = api

    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, behavior: Behavior
    ) -> Any:
        """Run the behaviour, recording its status and duration."""
        start = time.perf_counter()
        code = "OK"
        try:
            return behavior(request, context)
        except Exception:
            code_of = getattr(context, "code", None)
            current = code_of() if callable(code_of) else None
            code = code_name(current) if isinstance(current, grpc.StatusCode) else "UNKNOWN"
            raise
        finally:
            self.metrics.calls.labels(self.api, method, code).inc()
            self.metrics.latency.labels(self.api, method).observe(time.perf_counter() - start)
