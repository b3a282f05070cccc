"""The guard's record: one audit entry for every reply that leaves and every refusal.

:class:`AuditMod` is the outermost mod, so it sees the reply exactly as it leaves:

- ``training.update.sent`` for a train reply: agreement, dataset, run, the node's
  round number, the bytes of the update, the L2 norm of the update (the reply's
  arrays minus the received ones), the dataset's epsilon after the round and its
  budget, and the update's digest;
- ``training.metrics.sent`` for an evaluate reply: the metrics and their digest;
- ``training.refused`` for an Error reply: the refusal code, the reason sent, and
  the local detail that was not sent (:func:`federation.guard.refusal.local_detail`).

An exception from further in (the app, a task, another mod) becomes a
``TRAINING_FAILED`` refusal here: the aggregator learns the exception's type, the
audit log its message. A reply that cannot be put on the audit log is not sent.
Entries name the agreement as subject and the aggregator as peer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode

from federation.guard.context import ACTOR, GuardContext
from federation.guard.refusal import Refusal, local_detail, refusal_of, refuse
from federation.guard.rounds import category, is_train, run_id
from federation.guard.signing import update_digest

UPDATE_SENT = "training.update.sent"
"""Audit kind of a train reply that left the node."""
METRICS_SENT = "training.metrics.sent"
"""Audit kind of an evaluate reply that left the node."""
REFUSED = "training.refused"
"""Audit kind of a refusal."""

_LOG = logging.getLogger(__name__)


class AuditMod:
    """A Flower mod that puts every reply and every refusal on the audit log."""

    def __init__(self, guard: GuardContext) -> None:
        """Audit to ``guard``'s audit log."""
        self.guard = guard

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Pass ``message`` on; record what comes back, or turn an exception into a refusal."""
        received = _arrays(message) if is_train(message) else {}
        try:
            reply = call_next(message, context)
        except Exception as exc:  # any failure inside becomes a refusal, on the record
            _LOG.exception("the governed ClientApp failed on a %s message", category(message))
            reply = refuse(
                message,
                Refusal.TRAINING_FAILED,
                f"the node could not complete this {category(message)} message "
                f"({type(exc).__name__}); nothing was sent, and the node's operator finds "
                "the details in its audit log",
                local=f"{type(exc).__name__}: {exc}",
                code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
            )
        try:
            self._record(message, reply, received)
        except Exception as exc:  # an unrecorded update must not leave
            _LOG.exception("could not append to the audit log")
            if reply.has_error():
                return reply
            return refuse(
                message,
                Refusal.AUDIT_FAILED,
                "the reply could not be put on the node's audit log, so it was not sent",
                local=f"{type(exc).__name__}: {exc}",
            )
        return reply

    def _record(self, message: Message, reply: Message, received: Mapping[str, Any]) -> None:
        guard = self.guard
        base: dict[str, Any] = {
            "agreement": guard.agreement_id,
            "dataset": guard.dataset_id,
            "run": run_id(message),
            "messageType": message.metadata.message_type,
        }
        refused = refusal_of(reply)
        if refused is not None:
            code, reason = refused
            kind, payload = REFUSED, {**base, "refusal": code, "reason": reason}
            detail = local_detail(reply)
            if detail:
                payload["detail"] = detail
        elif category(message) == MessageType.TRAIN:
            ledger = guard.ledger()
            kind = UPDATE_SENT
            payload = {
                **base,
                "round": ledger.rounds_used(guard.agreement_id, run_id(message)),
                "bytes": _bytes(reply),
                "l2Norm": _update_norm(_arrays(reply), received),
                "epsilon": ledger.total_epsilon(guard.dataset_id),
                "epsilonBudget": guard.epsilon_budget,
                "delta": guard.delta,
                "digest": update_digest(reply.content),
            }
        else:
            kind = METRICS_SENT
            metrics = {
                key: value
                for record in reply.content.metric_records.values()
                for key, value in record.items()
            }
            payload = {
                **base,
                "bytes": _bytes(reply),
                "metrics": metrics,
                "digest": update_digest(reply.content),
            }
        guard.audit_log().append(
            kind, actor=ACTOR, peer=guard.aggregator, subject=guard.agreement_id, payload=payload
        )


def _arrays(message: Message) -> dict[str, dict[str, np.ndarray]]:
    if not message.has_content():
        return {}
    return {
        name: {key: array.numpy() for key, array in record.items()}
        for name, record in message.content.array_records.items()
    }


def _update_norm(
    sent: Mapping[str, Mapping[str, np.ndarray]], received: Mapping[str, Any]
) -> float:
    total = 0.0
    for name, arrays in sent.items():
        for key, values in arrays.items():
            before = received.get(name, {}).get(key)
            base = np.zeros_like(values) if before is None else before
            difference = values.astype(np.float64) - np.asarray(base, dtype=np.float64)
            total += float(np.square(difference).sum())
    norm = math.sqrt(total)
    return norm if math.isfinite(norm) else -1.0


def _bytes(reply: Message) -> int:
    content = reply.content
    return sum(record.count_bytes() for record in content.array_records.values()) + sum(
        record.count_bytes() for record in content.metric_records.values()
    )
