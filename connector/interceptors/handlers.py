"""Wrap a gRPC method handler's behaviour, for any of the four RPC kinds.

gRPC's sync ``ServerInterceptor`` sees only the method name, not the request or
the context. Each Hanse interceptor therefore wraps the handler's behaviour with an
:data:`Around` function that receives the request (or request iterator), the
``ServicerContext`` and the original behaviour, and decides whether and how to call it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]
"""A handler behaviour: ``(request_or_iterator, context) -> response_or_iterator``."""

Around = Callable[[str, Any, grpc.ServicerContext, Behavior], Any]
"""``(full_method, request, context, behavior) -> response``."""


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any] | None, method: str, around: Around
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """Return ``handler`` with its behaviour wrapped by ``around`` (``None`` stays ``None``)."""
    if handler is None:
        return None

    def wrapped(behavior: Behavior) -> Behavior:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            return around(method, request, context, behavior)

        return call

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrapped(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrapped(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            wrapped(handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            wrapped(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class AroundInterceptor(grpc.ServerInterceptor):
    """Base for interceptors expressed as one :data:`Around` method."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the next handler's behaviour with :meth:`around`."""
        method = handler_call_details.method
        return wrap_handler(continuation(handler_call_details), method, self.around)

    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, behavior: Behavior
    ) -> Any:
        """Run ``behavior``; subclasses add their concern around it."""
        return behavior(request, context)
