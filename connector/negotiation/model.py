"""A negotiation as a node keeps it, and the store that keeps it.

A :class:`NegotiationRecord` is immutable; every change is a new record written
with :meth:`NegotiationStore.save`, which checks the version it replaces
(optimistic concurrency) and appends the change's audit entries in the same
transaction, so the audit log and the negotiation can never disagree. A change
caused by a peer's message also records the answer to that message there
(:class:`RequestAnswer`), so a repeated message id gets the first answer and never
a second effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.negotiation.states import Message, NegotiationState, Role


@dataclass(frozen=True)
class PendingMessage:
    """A message sent (or about to be) and not yet acknowledged by the counter-party."""

    kind: Message
    """Which DSP message."""
    message_id: str
    """Delivery id: every retry of this message carries the same one."""
    payload: Mapping[str, Any]
    """The DSP JSON-LD message."""
    signature: Mapping[str, Any] | None = None
    """This node's signature over the agreement, with agreement and verification messages."""
    from_state: NegotiationState | None = None
    """The acknowledged state before this message: what the counter-party sees until the ACK."""


@dataclass(frozen=True)
class AuditNote:
    """An audit entry to append together with a negotiation change."""

    kind: str
    """For example ``negotiation.message.received``."""
    payload: Mapping[str, Any]
    """What happened (messages in their DSP form)."""
    peer: str = ""
    """The counter-party's participant id, where one is involved."""
    actor: str = "node"
    """Who caused it: ``node``, ``operator`` or a participant id."""


@dataclass(frozen=True)
class RequestAnswer:
    """The answer to a request (a peer's message), recorded with the change it causes."""

    method: str
    """The request log's method key (the RPC, and for peers the sender)."""
    request_id: str
    """The request's id (a DSP message id)."""
    response: bytes
    """The serialised response."""


class AnswerSlot:
    """Where :meth:`NegotiationEngine.receive` records the answer to the message it takes.

    The protocol API hands one in per message: the engine encodes its ACK with
    :attr:`encode` and has the store record it in the transaction of the change
    the message causes; :attr:`recorded` then holds what was recorded. It stays
    ``None`` when the message changed nothing that could carry it (a repeated
    request answered from the negotiation it made): the caller records it then.
    """

    def __init__(
        self, method: str, request_id: str, encode: Callable[[Mapping[str, Any]], bytes]
    ) -> None:
        self.method = method
        """The request log's method key."""
        self.request_id = request_id
        """The message id."""
        self.encode = encode
        """The ACK (DSP JSON) as the serialised response."""
        self.recorded: bytes | None = None
        """The response recorded with the change, once it is."""

    def answer(self, ack: Mapping[str, Any]) -> RequestAnswer:
        """The answer to record for ``ack``."""
        return RequestAnswer(self.method, self.request_id, self.encode(ack))


@dataclass(frozen=True)
class NegotiationRecord:
    """One negotiation on this node."""

    id: str
    """This node's process id (its consumerPid or providerPid)."""
    role: Role
    """This node's side."""
    state: NegotiationState
    """Current state ("-ING" while :attr:`pending` awaits its acknowledgement)."""
    consumer_pid: str
    """The consumer's process id."""
    provider_pid: str
    """The provider's process id ("" until known)."""
    counterparty_id: str
    """The other side's participant id."""
    counterparty_address: str
    """The other side's protocol API, host:port."""
    dataset_id: str
    """The dataset at the provider."""
    offer_id: str
    """The provider's offer the negotiation started from."""
    offer: Mapping[str, Any]
    """The latest offer on the table (ODRL, with ``target``)."""
    usage: Mapping[str, Any]
    """What the consumer stated it will do (purpose, task, rounds, budget...); at the
    provider also the groups it placed the consumer in (``memberships``, from its peer
    config; see :func:`connector.negotiation.usage.with_memberships`)."""
    agreement: Mapping[str, Any] | None = None
    """The DSP Agreement, once the provider sent one."""
    signatures: tuple[Mapping[str, Any], ...] = ()
    """Signatures over the agreement (see :mod:`connector.signing`)."""
    reason: str = ""
    """Why it is terminated, or what it waits for."""
    pending: PendingMessage | None = None
    """The message awaiting acknowledgement, if any."""
    attempts: int = 0
    """Deliveries of :attr:`pending` tried so far."""
    next_attempt_at: datetime | None = None
    """When :attr:`pending` is due (again)."""
    version: int = 0
    """Bumped by every save; a save must name the version it replaces."""
    create_time: datetime | None = None
    """Set by the store."""
    update_time: datetime | None = None
    """Set by the store."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Room for facts later work adds (kept as JSON)."""


class NegotiationStore(Protocol):
    """Negotiations of this node, with their audit trail."""

    def create(
        self,
        record: NegotiationRecord,
        audit: Sequence[AuditNote] = (),
        *,
        answer: RequestAnswer | None = None,
    ) -> NegotiationRecord:
        """Insert a new negotiation (version 1) and its audit entries in one transaction.

        With ``answer``, the answer to the request that caused it is recorded in the
        same transaction.

        Raises:
            ConnectorError: ``ALREADY_EXISTS`` if the id is taken.
            AnsweredBeforeError: The request was answered before; nothing changed.
        """
        ...

    def get(self, negotiation_id: str) -> NegotiationRecord:
        """The negotiation with this id.

        Raises:
            ConnectorError: ``NEGOTIATION_NOT_FOUND``.
        """
        ...

    def find(
        self, role: Role, *, consumer_pid: str = "", provider_pid: str = ""
    ) -> NegotiationRecord | None:
        """This node's negotiation in ``role`` with those process ids, if any."""
        ...

    def save(
        self,
        record: NegotiationRecord,
        audit: Sequence[AuditNote] = (),
        *,
        answer: RequestAnswer | None = None,
    ) -> NegotiationRecord:
        """Replace the stored version ``record.version`` with ``record`` (version + 1).

        With ``answer``, as :meth:`create`.

        Raises:
            StaleNegotiationError: someone else saved a newer version first; nothing changed.
            AnsweredBeforeError: The request was answered before; nothing changed.
        """
        ...

    def list_negotiations(
        self, *, limit: int = 50, before: str = "", state: str = ""
    ) -> list[NegotiationRecord]:
        """Negotiations, newest first (keyset pagination on create time and id)."""
        ...

    def append_audit(self, audit: Sequence[AuditNote]) -> None:
        """Append audit entries that change no negotiation (a refused request, say)."""
        ...

    def due(self, now: datetime, limit: int = 32) -> list[NegotiationRecord]:
        """Negotiations whose pending message is due at ``now``, earliest first."""
        ...


class StaleNegotiationError(Exception):
    """A save lost a race: the negotiation changed since it was read."""


class AnsweredBeforeError(Exception):
    """The request was answered before (a duplicate raced this one): nothing was changed."""

    def __init__(self, response: bytes) -> None:
        super().__init__("the request was answered before; its first answer stands")
        self.response = response
        """The answer recorded first."""
