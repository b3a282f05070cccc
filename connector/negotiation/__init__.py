"""Contract negotiation per the Dataspace Protocol 2025-1: states, messages, transitions."""

from connector.negotiation.states import (
    PENDING_OF,
    TERMINAL_STATES,
    Message,
    NegotiationState,
    Role,
    TransitionError,
    acknowledged,
    next_state,
    pending,
    sender_of,
)

__all__ = [
    "PENDING_OF",
    "TERMINAL_STATES",
    "Message",
    "NegotiationState",
    "Role",
    "TransitionError",
    "acknowledged",
    "next_state",
    "pending",
    "sender_of",
]
