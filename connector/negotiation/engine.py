"""The negotiation engine: both roles of the DSP contract negotiation, persisted.

Every change is one store transaction together with its audit entries. A message
this node sends is first saved as the record's pending message ("-ING" state);
:meth:`NegotiationEngine.dispatch_due` delivers pending messages, retrying with
backoff until the counter-party acknowledges ("-ED" state) or the attempts run out
(TERMINATED, with the reason). State survives a restart: the dispatcher simply
finds the pending messages again.

A message received while this node still waits for the acknowledgement of its own
message, and that is valid after that message, counts as the acknowledgement: the
counter-party evidently received it.

With an ``ack_grace`` (the node uses :data:`ACK_GRACE_SECONDS`), saving an
acknowledgement is put off for that long when the counter-party is expected to answer:
its answer usually arrives first and records the acknowledgement in its own
transaction (one write instead of two, and no second writer racing the answer). A
deferred acknowledgement is saved when the grace ends, before an operator action on
the negotiation, and when the dispatcher stops; until then the message is not
delivered again. Should the node die in between, the message is delivered again after
the restart and the counter-party answers the duplicate as before (a message id gets
one answer), as it does when an acknowledgement is lost on the way.

A received message and this node's answer to it (agreeing to a request, verifying
an agreement, finalizing a verified one) are saved in one transaction, with the
audit entries of both state changes in their order. A message that becomes due is
handed to :attr:`NegotiationEngine.on_pending` (the dispatcher) at once, and every
saved change is published to :attr:`NegotiationEngine.changes` for watchers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import grpc

from connector.clock import Clock, SystemClock
from connector.datasets import Offer
from connector.errors import ConnectorError, invalid_argument, not_found
from connector.negotiation.changes import NegotiationChanges
from connector.negotiation.messages import (
    DspMessage,
    accepted_event,
    agreement_message,
    build_agreement,
    finalized_event,
    merged_constraints,
    negotiation_ack,
    new_pid,
    offer_message,
    request_message,
    termination_message,
    verification_message,
)
from connector.negotiation.model import (
    AnswerSlot,
    AuditNote,
    NegotiationRecord,
    NegotiationStore,
    PendingMessage,
    RequestAnswer,
    StaleNegotiationError,
)
from connector.negotiation.states import (
    TERMINAL_STATES,
    Message,
    NegotiationState,
    Role,
    TransitionError,
    acknowledged,
    next_state,
    pending,
)
from connector.negotiation.usage import (
    check_usage,
    usage_constraints,
    usage_from_constraints,
    usage_request,
    with_memberships,
)
from connector.policy import evaluate, normalize_offer_policy
from connector.policy.shape import PolicyError
from connector.signing import (
    Signature,
    SignedAgreement,
    SigningError,
    sign_agreement,
    verify_signed_agreement,
)
from connector.store import DatasetStore

_log = logging.getLogger("hanse.negotiation")

S = NegotiationState


class Transport(Protocol):
    """Delivers a pending message to the counter-party; returns its ACK (DSP JSON)."""

    def deliver(self, record: NegotiationRecord, message: PendingMessage) -> Mapping[str, Any]:
        """Send ``message``; raise :class:`ConnectorError` when refused or unreachable."""
        ...


@dataclass(frozen=True)
class Party:
    """This node as a negotiating party."""

    participant_id: str
    """Its participant id (certificate URI SAN)."""
    callback_address: str
    """Its protocol endpoint, sent to providers (``grpcs://host:port``)."""
    cert_pem: bytes
    """Its certificate, for signing agreements."""
    key_pem: bytes
    """Its private key."""
    trust_pem: bytes
    """The federation trust bundle, for verifying the counter-party's signature."""


@dataclass(frozen=True)
class Backoff:
    """Retry schedule for undelivered messages."""

    first: float = 0.2
    """Seconds before the first retry."""
    factor: float = 2.0
    """Growth per retry."""
    cap: float = 30.0
    """Longest wait between tries."""
    attempts: int = 8
    """Deliveries tried before the negotiation is terminated."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after ``attempt`` failed tries (full jitter)."""
        base = min(self.cap, self.first * self.factor ** max(0, attempt - 1))
        return base / 2 + rng.random() * base / 2


RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Step = tuple[NegotiationRecord, AuditNote]
"""A change this node makes, not yet saved: the new record and its state entry."""

ACK_GRACE_SECONDS: Final = 0.5
"""How long the node defers saving an acknowledgement the counter-party's answer
usually records anyway (see the module documentation)."""


@dataclass(frozen=True)
class _Unsettled:
    """A delivered message whose acknowledgement is not saved yet."""

    record: NegotiationRecord
    message: PendingMessage
    ack: Mapping[str, Any]
    due: float
    """``time.monotonic()`` at which the acknowledgement is saved at the latest."""


class NegotiationEngine:
    """Runs negotiations for one node, as consumer and as provider."""

    def __init__(
        self,
        *,
        party: Party,
        store: NegotiationStore,
        datasets: DatasetStore,
        transport: Transport,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        known_addresses: Mapping[str, str] | None = None,
        memberships: Mapping[str, Iterable[str]] | None = None,
        ack_grace: float = 0.0,
    ) -> None:
        if ack_grace < 0:
            raise ValueError(f"ack_grace must not be negative, not {ack_grace}")
        self.party = party
        self.store = store
        self.datasets = datasets
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.known_addresses = dict(known_addresses or {})
        """Participant id to protocol address of configured peers: used instead of a
        consumer's callback address, so a configured peer is reached where the operator
        said it is."""
        self.memberships = {peer: frozenset(groups) for peer, groups in (memberships or {}).items()}
        """Participant id to the groups this node's operator placed each configured peer in
        (peer config ``memberships``). As provider, a request is checked, and its usage
        recorded, with the groups of the authenticated sender; a peer not listed belongs to
        no group. What a consumer says about its own groups never counts."""
        self.ack_grace = ack_grace
        """Seconds to defer saving an acknowledgement that the counter-party's answer
        is expected to record (0: save it at once)."""
        self._unsettled: dict[str, _Unsettled] = {}
        self._unsettled_lock = threading.Lock()
        self.wake = threading.Event()
        """Set whenever a message becomes due (with no :attr:`on_pending`) or a retry
        is scheduled; the dispatcher thread waits on it."""
        self.on_pending: Callable[[NegotiationRecord], None] | None = None
        """Takes a negotiation whose pending message was just saved, due now (the
        dispatcher delivers it at once); ``None``: :attr:`wake` is set instead."""
        self.changes = NegotiationChanges()
        """Every negotiation this engine saves is published here (see ``watch``)."""

    # --- consumer, on the operator's word ---------------------------------------------------

    def start(
        self,
        *,
        provider_id: str,
        provider_address: str,
        dataset_id: str,
        offer_id: str,
        offer_policy: Mapping[str, Any],
        usage: Mapping[str, Any],
    ) -> NegotiationRecord:
        """Ask a provider for a contract on one of its offers."""
        stated = check_usage(usage)
        consumer_pid = new_pid()
        offer = _with_target(offer_policy, offer_id, dataset_id)
        offer["permission"] = _with_usage(offer.get("permission", []), stated)
        message = request_message(
            consumer_pid=consumer_pid, offer=offer, callback_address=self.party.callback_address
        )
        record = NegotiationRecord(
            id=consumer_pid,
            role=Role.CONSUMER,
            state=pending(S.INITIAL, Message.REQUEST, Role.CONSUMER),
            consumer_pid=consumer_pid,
            provider_pid="",
            counterparty_id=provider_id,
            counterparty_address=provider_address,
            dataset_id=dataset_id,
            offer_id=offer_id,
            offer=offer,
            usage=stated,
            pending=PendingMessage(Message.REQUEST, new_pid(), message.to_json()),
            next_attempt_at=self.clock.now(),
        )
        created = self._create(record, [self._state_note(record, S.INITIAL, "operator")])
        self._announce(created)
        return created

    def accept(self, negotiation_id: str) -> NegotiationRecord:
        """Accept the provider's latest offer (consumer, OFFERED)."""
        record = self._mine(negotiation_id, Role.CONSUMER)
        decision = evaluate(
            record.offer,
            usage_request(record.usage, assignee=self.party.participant_id),
            now=self.clock.now(),
        )
        if not decision.permitted:
            raise ConnectorError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "POLICY_REFUSED",
                f"the offer does not permit the use this node stated: {decision.reason()}; "
                "counter with your own terms or terminate",
            )
        message = accepted_event(consumer_pid=record.consumer_pid, provider_pid=record.provider_pid)
        return self._send(record, Message.ACCEPTED, message, actor="operator")

    def counter(self, negotiation_id: str, policy: Mapping[str, Any]) -> NegotiationRecord:
        """Answer with another policy: a counter-request (consumer) or an offer (provider)."""
        self._settle_now(negotiation_id)
        record = self.store.get(negotiation_id)
        try:
            offer = normalize_offer_policy(policy, record.offer_id)
        except PolicyError as exc:
            raise invalid_argument(f"policy: {exc}", "policy_json", "POLICY_INVALID") from exc
        offer = _with_target(offer, record.offer_id, record.dataset_id)
        if record.role is Role.CONSUMER:
            offer["permission"] = _with_usage(offer.get("permission", []), record.usage)
            message = request_message(
                consumer_pid=record.consumer_pid,
                provider_pid=record.provider_pid,
                offer=offer,
                callback_address=self.party.callback_address,
            )
            kind = Message.REQUEST
        else:
            message = offer_message(
                provider_pid=record.provider_pid, consumer_pid=record.consumer_pid, offer=offer
            )
            kind = Message.OFFER
        return self._send(replace(record, offer=offer), kind, message, actor="operator")

    def approve(self, negotiation_id: str) -> NegotiationRecord:
        """Agree to a request that waits for the operator (provider, REQUESTED or ACCEPTED)."""
        record = self._mine(negotiation_id, Role.PROVIDER)
        return self._commit(self._agree(record, actor="operator"))

    def terminate(self, negotiation_id: str, reason: str) -> NegotiationRecord:
        """End a negotiation from any non-terminal state (either role)."""
        self._settle_now(negotiation_id)
        record = self.store.get(negotiation_id)
        message = termination_message(
            consumer_pid=record.consumer_pid,
            provider_pid=record.provider_pid,
            code="TERMINATED_BY_OPERATOR",
            reasons=(reason or "terminated by the operator",),
        )
        return self._send(
            replace(record, reason=reason or "terminated by the operator"),
            Message.TERMINATION,
            message,
            actor="operator",
        )

    # --- messages from the counter-party -----------------------------------------------------

    def receive(
        self,
        kind: Message,
        payload: Mapping[str, Any],
        *,
        sender_id: str,
        signature: Mapping[str, Any] | None = None,
        answer: AnswerSlot | None = None,
    ) -> dict[str, Any]:
        """Apply a message a peer sent; return the DSP ContractNegotiation ACK.

        Args:
            kind: Which message.
            payload: The message (DSP JSON-LD).
            sender_id: The sender's participant id (from its certificate).
            signature: The sender's signature over the agreement, where one comes.
            answer: Where to record the answer to this message, in the transaction
                of the change it causes (see :class:`AnswerSlot`).

        Raises:
            ConnectorError: MESSAGE_INVALID, NEGOTIATION_NOT_FOUND, TRANSITION_INVALID,
                OFFER_NOT_FOUND, POLICY_REFUSED, AGREEMENT_INVALID. Nothing changed then.
            AnsweredBeforeError: ``answer``'s message was answered meanwhile (a
                duplicate); nothing changed.
        """
        message = DspMessage.from_json(payload, expected=kind)
        for _ in range(3):
            try:
                return self._receive_once(message, sender_id, signature, answer)
            except StaleNegotiationError:
                continue
        raise ConnectorError(
            grpc.StatusCode.ABORTED,
            "TRANSITION_INVALID",
            "the negotiation changed concurrently; send the message again",
            retryable=True,
        )

    def _receive_once(
        self,
        message: DspMessage,
        sender_id: str,
        signature: Mapping[str, Any] | None,
        answer: AnswerSlot | None,
    ) -> dict[str, Any]:
        if message.kind is Message.REQUEST and not message.provider_pid:
            return self._initial_request(message, sender_id, answer)
        record = self._addressed(message, sender_id)
        sender = Role.PROVIDER if record.role is Role.CONSUMER else Role.CONSUMER
        state, implicit_ack = self._state_for(record, message.kind, sender)
        notes = []
        acked_message = record.pending
        if implicit_ack is not None:
            if acked_message is not None:
                notes.append(_sent_note(record, acked_message))
            notes.append(self._state_note(implicit_ack, record.state, "node"))
            record = implicit_ack
        notes.append(_message_note("negotiation.message.received", record, message))
        updated = replace(
            record, state=state, provider_pid=record.provider_pid or message.provider_pid
        )
        follow: Callable[[NegotiationRecord], Step] | None = None
        if message.kind is Message.TERMINATION:
            updated = replace(
                updated,
                pending=None,
                next_attempt_at=None,
                reason="; ".join(message.reasons) or f"terminated by {sender_id}",
            )
        elif message.kind is Message.OFFER:
            updated = replace(
                updated,
                offer=dict(message.offer or {}),
                reason="offer to accept, counter or terminate",
            )
        elif message.kind is Message.REQUEST:
            updated = self._counter_request(updated, message, sender_id)
            if updated.reason == "":
                follow = self._auto_agree
        elif message.kind is Message.ACCEPTED:
            follow = self._agree_to_accepted
        elif message.kind is Message.AGREEMENT:
            updated = self._check_agreement(updated, message, signature)
            follow = self._verify
        elif message.kind is Message.VERIFICATION:
            updated = self._check_verification(updated, signature)
            follow = self._finalize
        notes.append(self._state_note(updated, record.state, sender_id))
        if updated.state is S.FINALIZED:
            notes.append(self._agreement_note(updated))
        # This node's answer goes into the same transaction; should it fail, the
        # message is still taken (the operator or a retry takes it from there).
        final = self._follow_up(updated, follow, notes)
        ack = negotiation_ack(
            consumer_pid=final.consumer_pid, provider_pid=final.provider_pid, state=updated.state
        )
        recorded = None if answer is None else answer.answer(ack)
        saved = self._save(final, notes, answer=recorded)
        if implicit_ack is not None and acked_message is not None:
            self._forget_unsettled(saved.id, acked_message.message_id)
        if answer is not None and recorded is not None:
            answer.recorded = recorded.response
        self._announce(saved)
        return ack

    def _follow_up(
        self,
        record: NegotiationRecord,
        follow: Callable[[NegotiationRecord], Step] | None,
        notes: list[AuditNote],
    ) -> NegotiationRecord:
        """``record`` after this node's next step (its note added to ``notes``), if any."""
        if follow is None:
            return record
        try:
            after, note = follow(record)
        except ConnectorError as exc:
            _log.warning(
                "follow-up step failed", extra={"negotiation": record.id, "error": str(exc)}
            )
            return record
        notes.append(note)
        return after

    def _initial_request(
        self, message: DspMessage, sender_id: str, answer: AnswerSlot | None
    ) -> dict[str, Any]:
        existing = self.store.find(Role.PROVIDER, consumer_pid=message.consumer_pid)
        if existing is not None and existing.counterparty_id == sender_id:
            # A repeat of a request already taken: the same answer, no second negotiation.
            return negotiation_ack(
                consumer_pid=existing.consumer_pid,
                provider_pid=existing.provider_pid,
                state=visible_state(existing),
            )
        offer_in = dict(message.offer or {})
        dataset_id = str(offer_in.get("target", ""))
        offer = _offer_record(self.datasets, str(offer_in.get("@id", "")), dataset_id)
        usage = self._with_groups(usage_from_constraints(_constraints(offer_in)), sender_id)
        decision = evaluate(
            offer.policy, usage_request(usage, assignee=sender_id), now=self.clock.now()
        )
        provider_pid = new_pid()
        base = NegotiationRecord(
            id=provider_pid,
            role=Role.PROVIDER,
            state=S.INITIAL,
            consumer_pid=message.consumer_pid,
            provider_pid=provider_pid,
            counterparty_id=sender_id,
            counterparty_address=self.known_addresses.get(sender_id)
            or _address(message.callback_address),
            dataset_id=dataset_id,
            offer_id=offer.id,
            offer=_with_target(offer.policy, offer.id, dataset_id),
            usage=usage,
        )
        if not decision.permitted:
            # Refused at the door: no negotiation is created; the refusal is on the record.
            self.store.append_audit(
                [
                    _message_note("negotiation.message.received", base, message),
                    AuditNote(
                        "negotiation.refused",
                        {
                            "consumerPid": message.consumer_pid,
                            "offer": offer.id,
                            "reason": decision.reason(),
                        },
                        peer=sender_id,
                    ),
                ]
            )
            raise ConnectorError(
                grpc.StatusCode.PERMISSION_DENIED,
                "POLICY_REFUSED",
                f"offer {offer.id} does not permit this use: {decision.reason()}",
                metadata={"offer": offer.id},
            )
        record = replace(
            base,
            state=S.REQUESTED,
            reason="" if offer.auto_agree else "waiting for the operator to approve",
        )
        notes = [
            _message_note("negotiation.message.received", record, message),
            self._state_note(record, S.INITIAL, sender_id),
        ]
        # Taken and (auto-agree) agreed in one transaction.
        final = self._follow_up(record, self._auto_agree if offer.auto_agree else None, notes)
        ack = negotiation_ack(
            consumer_pid=final.consumer_pid, provider_pid=final.provider_pid, state=S.REQUESTED
        )
        recorded = None if answer is None else answer.answer(ack)
        saved = self._create(final, notes, answer=recorded)
        if answer is not None and recorded is not None:
            answer.recorded = recorded.response
        self._announce(saved)
        return ack

    def _counter_request(
        self, record: NegotiationRecord, message: DspMessage, sender_id: str
    ) -> NegotiationRecord:
        offer_in = dict(message.offer or {})
        usage = self._with_groups(usage_from_constraints(_constraints(offer_in)), sender_id)
        stored = _offer_record(self.datasets, record.offer_id, record.dataset_id)
        decision = evaluate(
            stored.policy, usage_request(usage, assignee=sender_id), now=self.clock.now()
        )
        if not decision.permitted:
            reason = f"counter-request outside the offer: {decision.reason()}"
        elif stored.auto_agree:
            reason = ""
        else:
            reason = "waiting for the operator to approve"
        return replace(record, offer=offer_in, usage=usage, reason=reason)

    def _check_agreement(
        self, record: NegotiationRecord, message: DspMessage, signature: Mapping[str, Any] | None
    ) -> NegotiationRecord:
        agreement = dict(message.agreement or {})
        problems = []
        if agreement.get("target") != record.dataset_id:
            problems.append(f"target is {agreement.get('target')!r}, not {record.dataset_id!r}")
        if agreement.get("assigner") != record.counterparty_id:
            problems.append("assigner is not the provider")
        if agreement.get("assignee") != self.party.participant_id:
            problems.append("assignee is not this node")
        problems.extend(self._terms_differ(record, agreement))
        if signature is None:
            problems.append("the provider's signature is missing")
        if problems or signature is None:
            raise _agreement_invalid("; ".join(problems))
        provider_sig = _signature(signature)
        own = self._sign(agreement, role="consumer")
        report = verify_signed_agreement(
            SignedAgreement(agreement, (provider_sig, own)),
            self.party.trust_pem,
            at=self.clock.now(),
        )
        if not report.ok:
            raise _agreement_invalid(report.problem or "the signatures do not verify")
        return replace(
            record,
            agreement=agreement,
            signatures=(provider_sig.to_json(), own.to_json()),
            reason="",
        )

    def _terms_differ(self, record: NegotiationRecord, agreement: Mapping[str, Any]) -> list[str]:
        """What in ``agreement`` is not the offer on the table plus the stated usage."""
        try:
            expected = build_agreement(
                agreement_id=str(agreement.get("@id", "")),
                offer=record.offer,
                assigner=record.counterparty_id,
                assignee=self.party.participant_id,
                target=record.dataset_id,
                timestamp=datetime.fromisoformat(str(agreement.get("timestamp", ""))),
                extra_constraints=usage_constraints(record.usage),
            )
        except ValueError as exc:
            return [f"the agreement cannot be compared with the offer: {exc}"]
        differ = [
            key
            for key in ("permission", "prohibition", "obligation", "profile")
            if agreement.get(key) != expected.get(key)
        ]
        if not differ:
            return []
        return [f"its {', '.join(differ)} differ from the offer on the table and the usage stated"]

    def _check_verification(
        self, record: NegotiationRecord, signature: Mapping[str, Any] | None
    ) -> NegotiationRecord:
        if record.agreement is None or signature is None:
            raise _agreement_invalid("verification without the consumer's signature")
        consumer_sig = _signature(signature)
        provider_sig = _signature(record.signatures[0])
        report = verify_signed_agreement(
            SignedAgreement(dict(record.agreement), (provider_sig, consumer_sig)),
            self.party.trust_pem,
            at=self.clock.now(),
        )
        if not report.ok:
            raise _agreement_invalid(report.problem or "the signatures do not verify")
        return replace(record, signatures=(provider_sig.to_json(), consumer_sig.to_json()))

    # --- this node's next steps ------------------------------------------------------------------

    def _auto_agree(self, record: NegotiationRecord) -> Step:
        return self._agree(record, actor="node")

    def _agree_to_accepted(self, record: NegotiationRecord) -> Step:
        # The consumer accepted this node's offer: agree, unless the offer does not
        # permit the use the consumer stated (then an agreement would contradict itself).
        # The consumer's groups are read afresh from this node's peer config.
        record = replace(record, usage=self._with_groups(record.usage, record.counterparty_id))
        decision = evaluate(
            record.offer,
            usage_request(record.usage, assignee=record.counterparty_id),
            now=self.clock.now(),
        )
        if decision.permitted:
            return self._agree(record, actor="node")
        why = f"the accepted offer does not permit the stated use: {decision.reason()}"
        message = termination_message(
            consumer_pid=record.consumer_pid,
            provider_pid=record.provider_pid,
            code="POLICY_REFUSED",
            reasons=(why,),
        )
        return self._step(replace(record, reason=why), Message.TERMINATION, message, actor="node")

    def _with_groups(self, usage: Mapping[str, Any], consumer_id: str) -> dict[str, Any]:
        """``usage`` with the groups this node's peer config gives ``consumer_id``."""
        return with_memberships(usage, self.memberships.get(consumer_id, frozenset()))

    def _agree(self, record: NegotiationRecord, *, actor: str) -> Step:
        agreement = build_agreement(
            agreement_id=new_pid(),
            offer=record.offer,
            assigner=self.party.participant_id,
            assignee=record.counterparty_id,
            target=record.dataset_id,
            timestamp=self.clock.now(),
            extra_constraints=usage_constraints(record.usage),
        )
        own = self._sign(agreement, role="provider")
        message = agreement_message(
            provider_pid=record.provider_pid, consumer_pid=record.consumer_pid, agreement=agreement
        )
        updated = replace(record, agreement=agreement, signatures=(own.to_json(),), reason="")
        return self._step(updated, Message.AGREEMENT, message, actor=actor, signature=own.to_json())

    def _verify(self, record: NegotiationRecord) -> Step:
        message = verification_message(
            consumer_pid=record.consumer_pid, provider_pid=record.provider_pid
        )
        return self._step(
            record, Message.VERIFICATION, message, actor="node", signature=record.signatures[1]
        )

    def _finalize(self, record: NegotiationRecord) -> Step:
        message = finalized_event(
            consumer_pid=record.consumer_pid, provider_pid=record.provider_pid
        )
        return self._step(record, Message.FINALIZED, message, actor="node")

    def _send(
        self,
        record: NegotiationRecord,
        kind: Message,
        message: DspMessage,
        *,
        actor: str,
        signature: Mapping[str, Any] | None = None,
    ) -> NegotiationRecord:
        """Save ``message`` as ``record``'s pending message and hand it to delivery."""
        return self._commit(self._step(record, kind, message, actor=actor, signature=signature))

    def _commit(self, step: Step) -> NegotiationRecord:
        record, note = step
        saved = self._save(record, [note])
        self._announce(saved)
        return saved

    def _step(
        self,
        record: NegotiationRecord,
        kind: Message,
        message: DspMessage,
        *,
        actor: str,
        signature: Mapping[str, Any] | None = None,
    ) -> Step:
        """``record`` with ``message`` pending ("-ING"), and the entry of that change."""
        try:
            state = pending(record.state, kind, record.role)
        except TransitionError as exc:
            raise _transition_invalid(exc) from exc
        updated = replace(
            record,
            state=state,
            pending=PendingMessage(
                kind, new_pid(), message.to_json(), signature, from_state=visible_state(record)
            ),
            attempts=0,
            next_attempt_at=self.clock.now(),
        )
        return updated, self._state_note(updated, record.state, actor)

    def _create(
        self,
        record: NegotiationRecord,
        notes: Sequence[AuditNote],
        *,
        answer: RequestAnswer | None = None,
    ) -> NegotiationRecord:
        created = self.store.create(record, notes, answer=answer)
        self.changes.publish(created)
        return created

    def _save(
        self,
        record: NegotiationRecord,
        notes: Sequence[AuditNote] = (),
        *,
        answer: RequestAnswer | None = None,
    ) -> NegotiationRecord:
        saved = self.store.save(record, notes, answer=answer)
        self.changes.publish(saved)
        return saved

    def _announce(self, record: NegotiationRecord) -> None:
        """Hand a negotiation whose message just became due to delivery."""
        if record.pending is None:
            return
        listener = self.on_pending
        if listener is None:
            self.wake.set()
        else:
            listener(record)

    # --- delivery -----------------------------------------------------------------------------

    def dispatch_due(self, limit: int = 32) -> int:
        """Deliver every pending message that is due; return how many were tried."""
        due = [r for r in self.store.due(self.clock.now(), limit) if not self.is_unsettled(r)]
        for record in due:
            self._deliver(record)
        return len(due)

    def next_due_in(self) -> float | None:
        """Seconds until the next pending message is due (None: nothing pending)."""
        due = self.store.due(self.clock.now() + timedelta(days=3650), 1)
        if not due or due[0].next_attempt_at is None:
            return None
        return max(0.0, (due[0].next_attempt_at - self.clock.now()).total_seconds())

    def deliver(self, record: NegotiationRecord) -> None:
        """Deliver ``record``'s pending message now and save the outcome.

        On the acknowledgement the negotiation moves to the "-ED" state; on a
        failure a retry is scheduled (with backoff) or the negotiation terminated.
        A record that changed meanwhile (acknowledged implicitly, say) is left as
        it is.
        """
        self._deliver(record)

    def _deliver(self, record: NegotiationRecord) -> None:
        message = record.pending
        if message is None:
            return
        try:
            ack = self.transport.deliver(record, message)
        except ConnectorError as error:
            self._delivery_failed(record, error)
            return
        if self.ack_grace > 0 and _answer_expected(record.state):
            due = time.monotonic() + self.ack_grace
            with self._unsettled_lock:
                self._unsettled[record.id] = _Unsettled(record, message, ack, due)
            return  # the dispatcher's next look (within a second) settles it once due
        self._settle(record, message, ack)

    def settle_due(self, *, everything: bool = False) -> float | None:
        """Save the deferred acknowledgements whose grace has ended (all with ``everything``).

        Returns:
            Seconds until the next deferred acknowledgement is due, or None if none waits.
        """
        now = time.monotonic()
        with self._unsettled_lock:
            due = [u for u in self._unsettled.values() if everything or u.due <= now]
            for unsettled in due:
                del self._unsettled[unsettled.record.id]
            later = min((u.due for u in self._unsettled.values()), default=None)
        for unsettled in due:
            self._settle_deferred(unsettled)
        return None if later is None else max(0.0, later - now)

    def is_unsettled(self, record: NegotiationRecord) -> bool:
        """Whether ``record``'s pending message was delivered and its acknowledgement deferred."""
        with self._unsettled_lock:
            unsettled = self._unsettled.get(record.id)
        return (
            unsettled is not None
            and record.pending is not None
            and record.pending.message_id == unsettled.message.message_id
        )

    def dsp_state(self, record: NegotiationRecord) -> NegotiationState:
        """The DSP state of ``record`` for its counter-party (see :func:`visible_state`).

        A message the counter-party acknowledged whose acknowledgement is deferred
        counts as acknowledged: the counter-party is past it.
        """
        if self.is_unsettled(record):
            return acknowledged(record.state)
        return visible_state(record)

    def _settle_now(self, negotiation_id: str) -> None:
        """Save ``negotiation_id``'s deferred acknowledgement, if it has one."""
        with self._unsettled_lock:
            unsettled = self._unsettled.pop(negotiation_id, None)
        if unsettled is not None:
            self._settle_deferred(unsettled)

    def _forget_unsettled(self, negotiation_id: str, message_id: str) -> None:
        """Drop a deferred acknowledgement that a received answer recorded."""
        with self._unsettled_lock:
            unsettled = self._unsettled.get(negotiation_id)
            if unsettled is not None and unsettled.message.message_id == message_id:
                del self._unsettled[negotiation_id]

    def _settle_deferred(self, unsettled: _Unsettled) -> None:
        try:
            current = self.store.get(unsettled.record.id)
        except ConnectorError:
            return
        try:
            self._settle(current, unsettled.message, unsettled.ack)
        except Exception:  # the next delivery attempt settles it
            _log.exception("saving an acknowledgement failed", extra={"negotiation": current.id})

    def _settle(
        self, record: NegotiationRecord, message: PendingMessage, ack: Mapping[str, Any]
    ) -> None:
        """Save the counter-party's acknowledgement of ``message`` (the "-ED" state)."""
        current = record
        for _ in range(3):
            if current.pending is None or current.pending.message_id != message.message_id:
                return  # acknowledged implicitly meanwhile
            done = acknowledged(current.state)
            provider_pid = current.provider_pid or str(ack.get("providerPid", ""))
            updated = replace(
                current,
                state=done,
                provider_pid=provider_pid,
                pending=None,
                attempts=current.attempts + 1,
                next_attempt_at=None,
            )
            notes = [
                _sent_note(current, message),
                self._state_note(updated, current.state, current.counterparty_id),
            ]
            if done is S.FINALIZED:
                notes.append(self._agreement_note(updated))
            try:
                self._save(updated, notes)
                return
            except StaleNegotiationError:
                # Changed since it was read: look again.
                try:
                    current = self.store.get(record.id)
                except ConnectorError:
                    return

    def _delivery_failed(self, record: NegotiationRecord, error: ConnectorError) -> None:
        attempts = record.attempts + 1
        retry = error.retryable or error.code in RETRYABLE
        if retry and attempts < self.backoff.attempts:
            wait = self.backoff.delay(attempts, self.rng)
            updated = replace(
                record,
                attempts=attempts,
                next_attempt_at=self.clock.now() + timedelta(seconds=wait),
            )
            with _ignore_stale():
                self._save(updated)
            self.wake.set()  # the dispatcher reschedules
            return
        peer = record.counterparty_id
        sent = record.pending.kind.value if record.pending else "the message"
        if retry:
            why = f"{peer} did not acknowledge after {attempts} attempts: {error.message}"
        else:
            why = f"{peer} refused {sent}: {error.message} [{error.reason}]"
        updated = replace(
            record,
            state=S.TERMINATED,
            pending=None,
            attempts=attempts,
            next_attempt_at=None,
            reason=why,
        )
        with _ignore_stale():
            self._save(updated, [self._state_note(updated, record.state, "node")])

    # --- helpers --------------------------------------------------------------------------------

    def _sign(self, agreement: Mapping[str, Any], *, role: str) -> Signature:
        """This node's signature, or a clear refusal when it cannot sign (expired certificate)."""
        try:
            return sign_agreement(
                agreement,
                role=role,
                cert_pem=self.party.cert_pem,
                key_pem=self.party.key_pem,
                clock=self.clock,
            )
        except SigningError as exc:
            raise ConnectorError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "AGREEMENT_INVALID",
                f"this node cannot sign the agreement: {exc}",
            ) from exc

    def _mine(self, negotiation_id: str, role: Role) -> NegotiationRecord:
        self._settle_now(negotiation_id)
        record = self.store.get(negotiation_id)
        if record.role is not role:
            raise ConnectorError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "TRANSITION_INVALID",
                f"negotiation {negotiation_id} is this node's {record.role.value} side; "
                f"only the {role.value} does that",
            )
        return record

    def _addressed(self, message: DspMessage, sender_id: str) -> NegotiationRecord:
        # A message names both pids; this node looks up its own.
        record = (
            self.store.find(Role.PROVIDER, provider_pid=message.provider_pid)
            if message.provider_pid
            else None
        )
        if record is None or record.consumer_pid != message.consumer_pid:
            record = self.store.find(Role.CONSUMER, consumer_pid=message.consumer_pid)
            if (
                record is not None
                and record.provider_pid
                and message.provider_pid != record.provider_pid
            ):
                record = None
        if record is None or record.counterparty_id != sender_id:
            raise not_found(
                "NEGOTIATION_NOT_FOUND",
                "no negotiation with these process ids is shared with you",
                consumer_pid=message.consumer_pid,
                provider_pid=message.provider_pid,
            )
        return record

    def _state_for(
        self, record: NegotiationRecord, kind: Message, sender: Role
    ) -> tuple[NegotiationState, NegotiationRecord | None]:
        try:
            return next_state(record.state, kind, sender), None
        except TransitionError as first:
            if record.state.is_pending and record.state is not S.TERMINATING:
                acked = replace(
                    record, state=acknowledged(record.state), pending=None, next_attempt_at=None
                )
                try:
                    return next_state(acked.state, kind, sender), acked
                except TransitionError:
                    pass
            raise _transition_invalid(first) from first

    def _state_note(
        self, record: NegotiationRecord, before: NegotiationState, actor: str
    ) -> AuditNote:
        return AuditNote(
            "negotiation.state",
            {
                "negotiation": record.id,
                "role": record.role.value,
                "from": before.value,
                "to": record.state.value,
                "consumerPid": record.consumer_pid,
                "providerPid": record.provider_pid,
                "dataset": record.dataset_id,
                "reason": record.reason,
            },
            peer=record.counterparty_id,
            actor=actor,
        )

    def _agreement_note(self, record: NegotiationRecord) -> AuditNote:
        return AuditNote(
            "agreement.finalized",
            {"agreement": dict(record.agreement or {}), "signatures": list(record.signatures)},
            peer=record.counterparty_id,
        )


def _answer_expected(state: NegotiationState) -> bool:
    """Whether the counter-party answers a message acknowledged in ``state`` by itself.

    Not after the last message of a negotiation (FINALIZED, TERMINATED): nothing
    would come to record the acknowledgement.
    """
    return acknowledged(state) not in TERMINAL_STATES


def _sent_note(record: NegotiationRecord, message: PendingMessage) -> AuditNote:
    """The audit entry of ``message`` delivered to ``record``'s counter-party."""
    return AuditNote(
        "negotiation.message.sent", {"message": dict(message.payload)}, peer=record.counterparty_id
    )


def _with_target(policy: Mapping[str, Any], offer_id: str, dataset_id: str) -> dict[str, Any]:
    offer = {k: v for k, v in policy.items() if k != "@context"}
    offer["@id"] = offer_id
    offer["@type"] = "Offer"
    offer["target"] = dataset_id
    return offer


def _with_usage(
    permissions: Sequence[Mapping[str, Any]], usage: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``permissions`` each with the usage's ``eq`` constraints (see ``merged_constraints``)."""
    stated = usage_constraints(usage)
    return [
        {**rule, "constraint": merged_constraints(rule.get("constraint", []), stated)}
        for rule in permissions
    ]


def _constraints(offer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for rule in offer.get("permission", []):
        out.extend(rule.get("constraint", []))
    return out


def _offer_record(datasets: DatasetStore, offer_id: str, dataset_id: str = "") -> Offer:
    try:
        offer = datasets.get_offer(offer_id)
    except ConnectorError as exc:
        raise not_found(
            "OFFER_NOT_FOUND", f"no offer {offer_id!r} in this catalog", offer=offer_id
        ) from exc
    if dataset_id and offer.dataset_id != dataset_id:
        raise not_found(
            "OFFER_NOT_FOUND",
            f"offer {offer_id!r} is not for dataset {dataset_id!r}",
            offer=offer_id,
        )
    return offer


def _address(callback: str) -> str:
    return callback.removeprefix("grpcs://").rstrip("/")


def visible_state(record: NegotiationRecord) -> NegotiationState:
    """The DSP state the counter-party sees: before a pending message, the state it left.

    DSP reaches a state only on the acknowledgement, so AGREEING shows as the state the
    agreement was sent from, and a provider's FINALIZING is not yet FINALIZED.
    """
    if not record.state.is_pending:
        return record.state
    if record.pending is not None and record.pending.from_state is not None:
        return record.pending.from_state
    return acknowledged(record.state)


def _signature(data: Mapping[str, Any]) -> Signature:
    try:
        return Signature.from_json(data)
    except SigningError as exc:
        raise _agreement_invalid(f"signature is malformed: {exc}") from exc


def _agreement_invalid(detail: str) -> ConnectorError:
    return ConnectorError(
        grpc.StatusCode.FAILED_PRECONDITION, "AGREEMENT_INVALID", f"agreement refused: {detail}"
    )


def _transition_invalid(error: TransitionError) -> ConnectorError:
    return ConnectorError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "TRANSITION_INVALID",
        str(error),
        metadata={"state": error.state.value, "message": error.message.value},
    )


def _message_note(kind: str, record: NegotiationRecord, message: DspMessage) -> AuditNote:
    return AuditNote(
        kind, {"negotiation": record.id, "message": message.to_json()}, peer=record.counterparty_id
    )


class _ignore_stale:  # noqa: N801 - used as a context manager
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, StaleNegotiationError)


__all__ = ["Backoff", "NegotiationEngine", "Party", "Transport", "visible_state"]
