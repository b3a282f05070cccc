"""The DSP 2025-1 contract-negotiation state machine, as pure functions.

Both parties track the same state. A message moves a negotiation only when the
counter-party acknowledges it; until then the sender holds the matching "-ING"
state (work pending, retried with backoff), and the "-ED" state once acknowledged::

    (new)      --C request-->      REQUESTED     (new)     --P offer-->    OFFERED
    REQUESTED  --P offer-->        OFFERED       REQUESTED --P agreement--> AGREED
    OFFERED    --C request-->      REQUESTED     (counter-offer)
    OFFERED    --C event ACCEPTED-> ACCEPTED
    ACCEPTED   --P agreement-->    AGREED
    AGREED     --C verification--> VERIFIED
    VERIFIED   --P event FINALIZED-> FINALIZED
    any non-terminal --C or P termination--> TERMINATED

FINALIZED and TERMINATED are terminal: nothing moves them. Any other message is an
invalid transition: :func:`next_state` raises :class:`TransitionError` and the
caller changes nothing.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Which side of a negotiation a node is on."""

    CONSUMER = "consumer"
    PROVIDER = "provider"


class NegotiationState(StrEnum):
    """DSP states, plus the local "-ING" states of a message sent but not yet acknowledged."""

    INITIAL = "INITIAL"
    REQUESTING = "REQUESTING"
    REQUESTED = "REQUESTED"
    OFFERING = "OFFERING"
    OFFERED = "OFFERED"
    ACCEPTING = "ACCEPTING"
    ACCEPTED = "ACCEPTED"
    AGREEING = "AGREEING"
    AGREED = "AGREED"
    VERIFYING = "VERIFYING"
    VERIFIED = "VERIFIED"
    FINALIZING = "FINALIZING"
    FINALIZED = "FINALIZED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"

    @property
    def is_pending(self) -> bool:
        """Whether a sent message awaits the counter-party's acknowledgement."""
        return self in PENDING_OF.values()


class Message(StrEnum):
    """DSP contract-negotiation messages (event messages split by event type)."""

    REQUEST = "ContractRequestMessage"
    OFFER = "ContractOfferMessage"
    ACCEPTED = "ContractNegotiationEventMessage:ACCEPTED"
    AGREEMENT = "ContractAgreementMessage"
    VERIFICATION = "ContractAgreementVerificationMessage"
    FINALIZED = "ContractNegotiationEventMessage:FINALIZED"
    TERMINATION = "ContractNegotiationTerminationMessage"


TERMINAL_STATES = frozenset({NegotiationState.FINALIZED, NegotiationState.TERMINATED})
"""States nothing moves out of."""

_SENDERS: dict[Message, frozenset[Role]] = {
    Message.REQUEST: frozenset({Role.CONSUMER}),
    Message.OFFER: frozenset({Role.PROVIDER}),
    Message.ACCEPTED: frozenset({Role.CONSUMER}),
    Message.AGREEMENT: frozenset({Role.PROVIDER}),
    Message.VERIFICATION: frozenset({Role.CONSUMER}),
    Message.FINALIZED: frozenset({Role.PROVIDER}),
    Message.TERMINATION: frozenset({Role.CONSUMER, Role.PROVIDER}),
}

_RESULT: dict[Message, NegotiationState] = {
    Message.REQUEST: NegotiationState.REQUESTED,
    Message.OFFER: NegotiationState.OFFERED,
    Message.ACCEPTED: NegotiationState.ACCEPTED,
    Message.AGREEMENT: NegotiationState.AGREED,
    Message.VERIFICATION: NegotiationState.VERIFIED,
    Message.FINALIZED: NegotiationState.FINALIZED,
    Message.TERMINATION: NegotiationState.TERMINATED,
}

_ALLOWED_FROM: dict[Message, frozenset[NegotiationState]] = {
    Message.REQUEST: frozenset({NegotiationState.INITIAL, NegotiationState.OFFERED}),
    Message.OFFER: frozenset({NegotiationState.INITIAL, NegotiationState.REQUESTED}),
    Message.ACCEPTED: frozenset({NegotiationState.OFFERED}),
    Message.AGREEMENT: frozenset({NegotiationState.REQUESTED, NegotiationState.ACCEPTED}),
    Message.VERIFICATION: frozenset({NegotiationState.AGREED}),
    Message.FINALIZED: frozenset({NegotiationState.VERIFIED}),
    Message.TERMINATION: frozenset(
        {
            NegotiationState.INITIAL,
            NegotiationState.REQUESTED,
            NegotiationState.OFFERED,
            NegotiationState.ACCEPTED,
            NegotiationState.AGREED,
            NegotiationState.VERIFIED,
        }
    ),
}

PENDING_OF: dict[NegotiationState, NegotiationState] = {
    NegotiationState.REQUESTED: NegotiationState.REQUESTING,
    NegotiationState.OFFERED: NegotiationState.OFFERING,
    NegotiationState.ACCEPTED: NegotiationState.ACCEPTING,
    NegotiationState.AGREED: NegotiationState.AGREEING,
    NegotiationState.VERIFIED: NegotiationState.VERIFYING,
    NegotiationState.FINALIZED: NegotiationState.FINALIZING,
    NegotiationState.TERMINATED: NegotiationState.TERMINATING,
}
"""For each acknowledged state, the "-ING" state its sender holds until the ACK."""

_ACKED_OF = {pending_state: done for done, pending_state in PENDING_OF.items()}


class TransitionError(ValueError):
    """A message that the state machine does not allow now; nothing changes."""

    def __init__(self, state: NegotiationState, message: Message, detail: str) -> None:
        self.state = state
        self.message = message
        super().__init__(f"{message.value} is not allowed in state {state.value}: {detail}")


def sender_of(message: Message) -> frozenset[Role]:
    """The roles that may send ``message``."""
    return _SENDERS[message]


def next_state(state: NegotiationState, message: Message, sender: Role) -> NegotiationState:
    """The acknowledged state ``message`` from ``sender`` leads to from ``state``.

    While a message awaits its acknowledgement (an "-ING" state) only a termination
    may follow: either side may terminate from any non-terminal state.

    Raises:
        TransitionError: terminal state, wrong sender, or a transition DSP does not have.
    """
    if state in TERMINAL_STATES:
        raise TransitionError(state, message, f"{state.value} is terminal")
    if state.is_pending and message is Message.TERMINATION and state is not _TERMINATING:
        if sender not in _SENDERS[message]:
            raise TransitionError(state, message, f"only the {_only(message)} sends it")
        return NegotiationState.TERMINATED
    if state.is_pending:
        raise TransitionError(
            state, message, "the previous message awaits the counter-party's acknowledgement"
        )
    if sender not in _SENDERS[message]:
        raise TransitionError(state, message, f"only the {_only(message)} sends it")
    if state not in _ALLOWED_FROM[message]:
        allowed = ", ".join(sorted(s.value for s in _ALLOWED_FROM[message]))
        raise TransitionError(state, message, f"it is allowed only in {allowed}")
    return _RESULT[message]


def pending(state: NegotiationState, message: Message, sender: Role) -> NegotiationState:
    """The "-ING" state the sender holds after sending ``message`` (checked as next_state)."""
    return PENDING_OF[next_state(state, message, sender)]


def acknowledged(state: NegotiationState) -> NegotiationState:
    """The "-ED" state once the counter-party acknowledged the pending message.

    Raises:
        ValueError: ``state`` is not a pending "-ING" state.
    """
    if state not in _ACKED_OF:
        raise ValueError(f"{state.value} awaits no acknowledgement")
    return _ACKED_OF[state]


_TERMINATING = NegotiationState.TERMINATING


def _only(message: Message) -> str:
    (role,) = _SENDERS[message]
    return role.value
