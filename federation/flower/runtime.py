"""One governed task: pull it from the SuperNode, run the node's ClientApp, push the reply.

This is what Flower's ``flwr-clientapp`` does, minus the part a node must never do:
install and run code from the researcher's bundle. The caller decides which
ClientApp handles the message (see :func:`serve_task`); a refusal or an error is
pushed back as a Flower ``Error`` message with its reason, so it reaches the
researcher's ServerApp.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode, SubStatus
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

_log = logging.getLogger(__name__)

AppFactory = Callable[[Message, Context, Run], ClientApp]
"""Builds the ClientApp for one message; raises :class:`RunRefusedError` to refuse it."""

REFUSED_CODE = 1001
"""Flower ``Error`` code of a refusal by the node's governance (not a crash)."""


class RunRefusedError(Exception):
    """The node refuses to run this message; the text says why (it reaches the researcher)."""


def serve_task(runtime_address: str, token: str, factory: AppFactory) -> int:
    """Pull one task with ``token``, run it with the factory's ClientApp, push the reply.

    Returns:
        0 when the ClientApp answered, 1 when it was refused or failed.
    """
    invoker = make_simple_http_retry_invoker()
    client = RuntimeHttpClient.from_server_address(
        runtime_address,
        insecure=True,
        root_certificates=None,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        ],
        retry_invoker=invoker,
    )
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    context: Context | None = None
    sub_status, details, code = SubStatus.FAILED, "task failed", 1
    reply: Message | None = None
    try:
        message, context, run, _fab = pull_task_input(client)
        try:
            app = factory(message, context, run)
            reply = app(message=message, context=context)
            sub_status, details, code = SubStatus.COMPLETED, "", 0
        except RunRefusedError as exc:
            _log.warning("refused: %s", exc)
            reply = Message(Error(code=REFUSED_CODE, reason=f"refused: {exc}"), reply_to=message)
            details = str(exc)
        except Exception as exc:
            _log.exception("the governed ClientApp failed")
            reason = f"{type(exc).__name__}: {exc}"
            reply = Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                reply_to=message,
            )
            details = reason
        if reply is not None and context is not None:
            push_message(client, reply, context)
    finally:
        invoker.max_tries = 1
        push_task_output(client, context, sub_status, details)
        if heartbeat.is_running:
            heartbeat.stop()
        client.close()
    return code
