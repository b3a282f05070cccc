"""Ask a node's gRPC health service (``grpc.health.v1``)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector.identity import LoadedTLS, channel_credentials


def check_health(
    address: str, *, tls: LoadedTLS | None = None, service: str = "", timeout: float = 5.0
) -> str:
    """The serving status name (``SERVING``, ``NOT_SERVING``...) or ``UNREACHABLE: why``."""
    channel = (
        grpc.secure_channel(address, channel_credentials(tls, with_client_cert=True))
        if tls is not None
        else grpc.insecure_channel(address)
    )
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return f"UNREACHABLE: {code.name if code else exc}"
    finally:
        channel.close()
