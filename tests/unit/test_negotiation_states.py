"""The DSP contract-negotiation state machine, checked against the spec's diagram."""

from __future__ import annotations

import itertools

import pytest

from connector.negotiation import (
    PENDING_OF,
    TERMINAL_STATES,
    Message,
    NegotiationState,
    Role,
    TransitionError,
    acknowledged,
    next_state,
    pending,
)

S = NegotiationState
C, P = Role.CONSUMER, Role.PROVIDER
SETTLED = [s for s in S if not s.is_pending]

# Written out from the DSP 2025-1 state machine diagram, independently of the code.
VALID = {
    (S.INITIAL, Message.REQUEST, C): S.REQUESTED,
    (S.INITIAL, Message.OFFER, P): S.OFFERED,
    (S.REQUESTED, Message.OFFER, P): S.OFFERED,
    (S.REQUESTED, Message.AGREEMENT, P): S.AGREED,
    (S.OFFERED, Message.REQUEST, C): S.REQUESTED,
    (S.OFFERED, Message.ACCEPTED, C): S.ACCEPTED,
    (S.ACCEPTED, Message.AGREEMENT, P): S.AGREED,
    (S.AGREED, Message.VERIFICATION, C): S.VERIFIED,
    (S.VERIFIED, Message.FINALIZED, P): S.FINALIZED,
}
for _state in (S.INITIAL, S.REQUESTED, S.OFFERED, S.ACCEPTED, S.AGREED, S.VERIFIED):
    for _role in (C, P):
        VALID[(_state, Message.TERMINATION, _role)] = S.TERMINATED


@pytest.mark.parametrize(
    ("state", "message", "sender"),
    list(itertools.product(SETTLED, list(Message), list(Role))),
    ids=lambda value: getattr(value, "value", str(value)),
)
def test_every_settled_transition_matches_the_spec(state, message, sender) -> None:
    # Prepare
    expected = VALID.get((state, message, sender))

    # Execute / Assert
    if expected is None:
        with pytest.raises(TransitionError) as caught:
            next_state(state, message, sender)
        assert caught.value.state is state
        assert message.value in str(caught.value)
    else:
        assert next_state(state, message, sender) is expected


@pytest.mark.parametrize(
    ("label", "state", "message", "sender", "detail"),
    [
        (
            "termination after FINALIZED",
            S.FINALIZED,
            Message.TERMINATION,
            P,
            "FINALIZED is terminal",
        ),
        (
            "termination after TERMINATED",
            S.TERMINATED,
            Message.TERMINATION,
            C,
            "TERMINATED is terminal",
        ),
        (
            "verification while OFFERED",
            S.OFFERED,
            Message.VERIFICATION,
            C,
            "allowed only in AGREED",
        ),
        (
            "verification after ACCEPTED",
            S.ACCEPTED,
            Message.VERIFICATION,
            C,
            "allowed only in AGREED",
        ),
        (
            "agreement while OFFERED",
            S.OFFERED,
            Message.AGREEMENT,
            P,
            "allowed only in ACCEPTED, REQUESTED",
        ),
        (
            "FINALIZED before verification",
            S.AGREED,
            Message.FINALIZED,
            P,
            "allowed only in VERIFIED",
        ),
        (
            "offer after ACCEPTED",
            S.ACCEPTED,
            Message.OFFER,
            P,
            "allowed only in INITIAL, REQUESTED",
        ),
        (
            "consumer sends an agreement",
            S.REQUESTED,
            Message.AGREEMENT,
            C,
            "only the provider sends it",
        ),
        ("provider sends ACCEPTED", S.OFFERED, Message.ACCEPTED, P, "only the consumer sends it"),
        (
            "consumer sends FINALIZED",
            S.VERIFIED,
            Message.FINALIZED,
            C,
            "only the provider sends it",
        ),
    ],
)
def test_the_issue_s_invalid_transitions_are_refused_with_a_reason(
    label, state, message, sender, detail
) -> None:
    # Execute
    with pytest.raises(TransitionError) as caught:
        next_state(state, message, sender)

    # Assert
    assert detail in str(caught.value), label


def test_terminal_states_are_final() -> None:
    for state, message, sender in itertools.product(TERMINAL_STATES, Message, Role):
        with pytest.raises(TransitionError):
            next_state(state, message, sender)


def test_a_pending_message_blocks_all_but_termination() -> None:
    for state in (s for s in S if s.is_pending):
        for message, sender in itertools.product(Message, Role):
            if message is Message.TERMINATION and state is not S.TERMINATING:
                assert next_state(state, message, sender) is S.TERMINATED
            else:
                with pytest.raises(TransitionError):
                    next_state(state, message, sender)


def test_pending_and_acknowledged_pair_up() -> None:
    # Execute
    sending = pending(S.REQUESTED, Message.AGREEMENT, P)

    # Assert
    assert sending is S.AGREEING
    assert sending.is_pending
    assert acknowledged(sending) is S.AGREED
    assert {acknowledged(p) for p in PENDING_OF.values()} == set(PENDING_OF)
    with pytest.raises(ValueError, match="awaits no acknowledgement"):
        acknowledged(S.AGREED)


def test_happy_paths_of_the_tck() -> None:
    # request -> agreement -> verification -> finalized
    state = S.INITIAL
    for message, sender in [
        (Message.REQUEST, C),
        (Message.AGREEMENT, P),
        (Message.VERIFICATION, C),
        (Message.FINALIZED, P),
    ]:
        state = acknowledged(pending(state, message, sender))
    assert state is S.FINALIZED

    # request -> offer -> accepted -> agreement -> verification -> finalized, with a counter-offer
    state = S.INITIAL
    for message, sender in [
        (Message.REQUEST, C),
        (Message.OFFER, P),
        (Message.REQUEST, C),
        (Message.OFFER, P),
        (Message.ACCEPTED, C),
        (Message.AGREEMENT, P),
        (Message.VERIFICATION, C),
        (Message.FINALIZED, P),
    ]:
        state = acknowledged(pending(state, message, sender))
    assert state is S.FINALIZED
