"""What a refusal by the guard looks like on the wire: a Flower ``Error`` reply.

A refused message is answered with ``Message(Error(code, reason), reply_to=...)``
and nothing else: no arrays, no metrics. The reason starts with an UPPER_SNAKE
code naming the kind of refusal, then a sentence saying what is wrong and what to
do, e.g. ``ROUNDS_EXHAUSTED: agreement urn:uuid:... allows 3 training rounds per
run and run 42 has used them; negotiate a new agreement for more``. The aggregator
(and the audit log) read the code with :func:`refusal_of`.

The reason leaves the node, so it never repeats what a task produced (a metric's
name, an array's shape): that would be a way out for the very data the guard holds
back. Such details go with the refusal as a *local detail* (:func:`local_detail`),
which the audit mod writes to the node's audit log and nothing sends anywhere.
"""

from __future__ import annotations

import weakref
from enum import StrEnum

from flwr.app import Error, Message
from flwr.common.constant import ErrorCode

_DETAILS: weakref.WeakKeyDictionary[Message, str] = weakref.WeakKeyDictionary()


class Refusal(StrEnum):
    """Why the guard refused a message; the code at the start of the Error reason."""

    ROUNDS_EXHAUSTED = "ROUNDS_EXHAUSTED"
    """The agreement's rounds for this run are used up."""
    PRIVACY_BUDGET_EXHAUSTED = "PRIVACY_BUDGET_EXHAUSTED"
    """The round would take the dataset's epsilon over its budget."""
    LEDGER_CONFLICT = "LEDGER_CONFLICT"
    """The round could not be put on the privacy ledger (recorded twice, or raced)."""
    MESSAGE_TYPE_REFUSED = "MESSAGE_TYPE_REFUSED"
    """The node answers only train and evaluate messages."""
    INSTRUCTION_INVALID = "INSTRUCTION_INVALID"
    """The message does not carry what the node needs (one ArrayRecord fitting the model)."""
    EGRESS_REFUSED = "EGRESS_REFUSED"
    """The reply would carry something that may not leave the node."""
    SIGNING_FAILED = "SIGNING_FAILED"
    """The reply could not be signed."""
    TRAINING_FAILED = "TRAINING_FAILED"
    """Training or evaluation failed on the node; its audit log holds the details."""
    DATASET_CHANGED = "DATASET_CHANGED"
    """The dataset no longer has the size the run's privacy cost was computed for."""
    AUDIT_FAILED = "AUDIT_FAILED"
    """The reply could not be put on the audit log, so it was not sent."""


def refuse(
    message: Message,
    refusal: Refusal,
    detail: str,
    *,
    local: str = "",
    code: int = ErrorCode.MOD_FAILED_PRECONDITION,
) -> Message:
    """The Error reply that refuses ``message``.

    Args:
        message: The message refused.
        refusal: Why, as a code.
        detail: One or two sentences: what is wrong and what to do. Sent to the
            aggregator: only the node's own facts, nothing a task produced.
        local: What only the node's audit log may know (names and values a task
            produced, an exception's message), or empty.
        code: The Flower error code (a precondition failed, by default).
    """
    reply = Message(Error(code=code, reason=f"{refusal.value}: {detail}"), reply_to=message)
    if local:
        _DETAILS[reply] = local
    return reply


def local_detail(reply: Message) -> str:
    """The local detail :func:`refuse` kept with ``reply`` (in this process), or empty."""
    return _DETAILS.get(reply, "")


def refusal_of(reply: Message) -> tuple[str, str] | None:
    """``(code, reason)`` of an Error reply, or ``None`` for a reply with content.

    The code is the reason's UPPER_SNAKE prefix when it is a :class:`Refusal`, else
    ``ERROR`` (an error the guard did not make, e.g. Flower's own).
    """
    if not reply.has_error():
        return None
    reason = reply.error.reason or ""
    prefix = reason.split(":", 1)[0]
    code = prefix if prefix in Refusal.__members__ else "ERROR"
    return code, reason
