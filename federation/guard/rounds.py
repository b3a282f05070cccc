"""Round counting: a run gets no more training rounds than its agreement allows.

The rounds a run has used are the rounds on the node's privacy ledger for its
(agreement, run), so the count survives restarts and is the same in every process
of the node. A train message past ``max_rounds`` is refused before anything runs;
nothing is trained and nothing recorded. Other messages pass through.
"""

from __future__ import annotations

from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from federation.guard.context import GuardContext
from federation.guard.refusal import Refusal, refuse


class RoundsMod:
    """A Flower mod that refuses the ``max_rounds + 1``-th train message of a run."""

    def __init__(self, guard: GuardContext) -> None:
        """Count rounds for ``guard``'s agreement."""
        self.guard = guard

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Refuse a train message once the run's rounds are used up, else pass it on."""
        if not is_train(message):
            return call_next(message, context)
        run = run_id(message)
        used = self.guard.ledger().rounds_used(self.guard.agreement_id, run)
        if used >= self.guard.max_rounds:
            return refuse(
                message,
                Refusal.ROUNDS_EXHAUSTED,
                f"agreement {self.guard.agreement_id} allows {self.guard.max_rounds} training "
                f"round(s) per run and run {run} has used {used}; nothing was trained. "
                "Negotiate a new agreement for more rounds",
            )
        return call_next(message, context)


def is_train(message: Message) -> bool:
    """Whether ``message`` asks for training (``train`` or ``train.<action>``)."""
    return category(message) == MessageType.TRAIN


def category(message: Message) -> str:
    """The category of the message type: ``train``, ``evaluate``, ``query`` ..."""
    return message.metadata.message_type.split(".", 1)[0]


def run_id(message: Message) -> str:
    """The message's Flower run id, as the ledger keeps it (text)."""
    return str(message.metadata.run_id)


def next_round(guard: GuardContext, message: Message) -> int:
    """The number the next training round of ``message``'s run gets: rounds used + 1."""
    return guard.ledger().rounds_used(guard.agreement_id, run_id(message)) + 1
