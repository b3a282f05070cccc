"""Refuse requests larger than the node accepts, with a Hanse error reason.

gRPC's own ``grpc.max_receive_message_length`` stays as a hard backstop set
above this limit; this interceptor answers first with ``REQUEST_TOO_LARGE`` and
the limit, so the caller learns what to change.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from connector.errors import ConnectorError, to_rpc_status
from connector.interceptors.handlers import AroundInterceptor, Behavior


class RequestSizeInterceptor(AroundInterceptor):
    """Refuse unary requests whose serialized size exceeds ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes

    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, behavior: Behavior
    ) -> Any:
        """Check the request's size, then run the behaviour."""
        if isinstance(request, Message):
            size = request.ByteSize()
            if size > self.max_bytes:
                error = ConnectorError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "REQUEST_TOO_LARGE",
                    f"request of {size} bytes is over this node's limit of {self.max_bytes} bytes",
                    metadata={"limit_bytes": str(self.max_bytes), "size_bytes": str(size)},
                )
                context.abort_with_status(to_rpc_status(error))
        return behavior(request, context)
