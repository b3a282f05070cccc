"""Whether an agreement covers a use now: the check a city runs before any data is read.

A finalized agreement fixes what the consumer may do: the task (id and content
hash), the aggregator, the rounds, the fewest cities per round and the privacy
budget it stated, under the provider's policy (which may expire). :func:`check_use`
re-checks all of it at the moment of use and returns the terms the node enforces
while training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState
from connector.negotiation.usage import usage_request
from connector.policy import PolicyError, evaluate


class UseRefusedError(Exception):
    """The agreement does not cover the use; the message says which term fails."""


@dataclass(frozen=True)
class AgreementTerms:
    """What a finalized agreement lets its consumer do with one dataset."""

    agreement_id: str
    """The DSP agreement's ``@id`` (the same on both sides)."""
    negotiation_id: str
    """This node's negotiation that produced it."""
    consumer: str
    """The consumer's participant id."""
    dataset_id: str
    """The dataset it covers."""
    task_id: str
    """The task the consumer stated."""
    task_hash: str
    """The task's content hash the consumer stated ("" if it stated none)."""
    aggregator: str
    """Who receives the updates (the consumer unless stated otherwise)."""
    max_rounds: int | None
    """Rounds the consumer stated (None: not limited by the usage)."""
    epsilon: float | None
    """The privacy budget the consumer stated."""
    delta: float | None
    """The delta the consumer stated."""
    min_participants: int | None
    """The fewest cities per round the consumer stated (None: it stated none)."""


def agreement_id_of(record: NegotiationRecord) -> str:
    """The ``@id`` of the record's agreement, or "" if it has none."""
    agreement = record.agreement or {}
    value = agreement.get("@id", "")
    return value if isinstance(value, str) else ""


def check_use(
    record: NegotiationRecord,
    *,
    consumer: str,
    task_id: str,
    task_hash: str,
    rounds: int,
    now: datetime,
) -> AgreementTerms:
    """The agreement's terms, if ``record`` covers this training use at ``now``.

    Checks: this node is the provider; the negotiation is FINALIZED; the consumer is
    the agreement's assignee; the task id and hash are the ones stated; the rounds do
    not exceed those stated; the stated ``max_rounds`` and ``min_participants`` are
    whole numbers; and the agreement's policy still permits the stated use at ``now``
    (an expired ``dateTime`` constraint fails here). The returned ``min_participants``
    is for the caller to hold the run's cities per round against.

    Raises:
        UseRefusedError: naming the first term that fails.
    """
    agreement_id = agreement_id_of(record) or record.id
    if record.role != "provider":
        raise UseRefusedError(f"agreement {agreement_id}: this node is not its provider")
    if record.state != NegotiationState.FINALIZED:
        reason = f" ({record.reason})" if record.reason else ""
        raise UseRefusedError(
            f"agreement {agreement_id} is {record.state.value}, not FINALIZED{reason}"
        )
    if record.counterparty_id != consumer:
        raise UseRefusedError(
            f"agreement {agreement_id} was made with {record.counterparty_id}, not {consumer}"
        )
    usage: Mapping[str, Any] = record.usage
    task = usage.get("task") or {}
    if not isinstance(task, Mapping):
        raise UseRefusedError(
            f"agreement {agreement_id} states its task as {task!r}, not as an id and a hash"
        )
    stated_id = str(task.get("id") or "")
    stated_hash = str(task.get("hash") or "")
    if stated_id != task_id:
        raise UseRefusedError(
            f"agreement {agreement_id} covers task {stated_id or '(none)'}, not {task_id}"
        )
    if stated_hash and stated_hash != task_hash:
        raise UseRefusedError(
            f"agreement {agreement_id} covers task {task_id} with hash {stated_hash}, "
            f"not {task_hash}"
        )
    max_rounds = _stated_number(usage, "max_rounds", agreement_id)
    if max_rounds is not None and not float(max_rounds).is_integer():
        raise UseRefusedError(
            f"agreement {agreement_id} states max_rounds {max_rounds!r}, not a whole number"
        )
    if max_rounds is not None and rounds > max_rounds:
        raise UseRefusedError(
            f"agreement {agreement_id} allows {max_rounds} rounds; the run asks for {rounds}"
        )
    min_participants = _stated_number(usage, "min_participants", agreement_id)
    if min_participants is not None and not float(min_participants).is_integer():
        raise UseRefusedError(
            f"agreement {agreement_id} states min_participants {min_participants!r}, "
            "not a whole number"
        )
    try:
        decision = evaluate(
            record.agreement or {}, usage_request(usage, assignee=consumer), now=now
        )
    except PolicyError as exc:
        raise UseRefusedError(f"agreement {agreement_id} has an unreadable policy: {exc}") from exc
    if not decision.permitted:
        raise UseRefusedError(
            f"agreement {agreement_id} no longer permits the use: {decision.reason()}"
        )
    epsilon = _stated_number(usage, "epsilon", agreement_id)
    delta = _stated_number(usage, "delta", agreement_id)
    return AgreementTerms(
        agreement_id=agreement_id,
        negotiation_id=record.id,
        consumer=consumer,
        dataset_id=record.dataset_id,
        task_id=task_id,
        task_hash=stated_hash,
        aggregator=str(usage.get("aggregator") or consumer),
        max_rounds=None if max_rounds is None else int(max_rounds),
        epsilon=None if epsilon is None else float(epsilon),
        delta=None if delta is None else float(delta),
        min_participants=None if min_participants is None else int(min_participants),
    )


def _stated_number(usage: Mapping[str, Any], key: str, agreement_id: str) -> int | float | None:
    """The number the usage states for ``key`` (None if none); refuses anything else.

    A stated limit that cannot be read as a finite number must not silently become "no
    limit", so a string, a boolean or a non-finite value is a refusal.
    """
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UseRefusedError(
            f"agreement {agreement_id} states {key} {value!r}, which is not a number"
        )
    return value
