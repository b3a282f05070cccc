"""AIP-155 request ids: a retried mutating call gets the first answer, not a second effect."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from connector.errors import invalid_argument
from connector.store import RequestLog

ResponseT = TypeVar("ResponseT", bound=Message)

MAX_REQUEST_ID = 128


def once(
    log: RequestLog,
    method: str,
    request_id: str,
    response_type: type[ResponseT],
    effect: Callable[[], ResponseT],
) -> ResponseT:
    """Run ``effect`` once per ``(method, request_id)``; replay the stored answer after.

    Without a request id the effect simply runs. Failed effects are not recorded:
    they changed nothing, so a retry may run them again.
    """
    if not request_id:
        return effect()
    if len(request_id) > MAX_REQUEST_ID:
        raise invalid_argument(f"request_id is longer than {MAX_REQUEST_ID}", "request_id")
    stored = log.recall(method, request_id)
    if stored is None:
        stored = log.remember(method, request_id, effect().SerializeToString())
    response = response_type()
    response.ParseFromString(stored)
    return response
