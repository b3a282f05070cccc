"""Turn exceptions from service code into rich gRPC statuses.

A :class:`~connector.errors.ConnectorError` becomes its status with ``ErrorInfo``;
anything else is logged with its traceback and answered ``INTERNAL`` without
leaking internals to the caller.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from connector.errors import ConnectorError, to_rpc_status
from connector.interceptors.handlers import AroundInterceptor, Behavior

_log = logging.getLogger("hanse.rpc")


class ErrorInterceptor(AroundInterceptor):
    """Abort with the rich status of any :class:`ConnectorError` the behaviour raises."""

    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, behavior: Behavior
    ) -> Any:
        """Run the behaviour and convert its errors."""
        try:
            return behavior(request, context)
        except ConnectorError as error:
            context.abort_with_status(to_rpc_status(error))
        except Exception as exc:
            if _already_aborted(context):
                raise
            _log.exception("rpc failed", extra={"method": method})
            internal = ConnectorError(
                grpc.StatusCode.INTERNAL,
                "INTERNAL",
                f"the node failed while handling {method}; its log has details",
            )
            context.abort_with_status(to_rpc_status(internal))
            raise AssertionError("abort_with_status returned") from exc
        raise AssertionError("abort_with_status returned")


def _already_aborted(context: grpc.ServicerContext) -> bool:
    code = getattr(context, "code", None)
    return callable(code) and code() not in (None, grpc.StatusCode.OK)
