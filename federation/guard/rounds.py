"""Round counting: an agreement gets no more training rounds than it allows, over all runs.

An agreement's ``maxRounds`` bounds the training rounds of the agreement, all its runs
together: a city that signs "N rounds" gives N rounds, however many runs the
researcher starts. The rounds used are the rounds on the node's privacy ledger under
the agreement, so the count survives restarts and is the same in every process of the
node. A train message once ``max_rounds`` are used is refused before anything runs;
nothing is trained and nothing recorded. Other messages (evaluation) pass through.
Within a run, rounds are still numbered from 1 (:func:`next_round`).
"""

from __future__ import annotations

from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from connector.store.ledger import SqlPrivacyLedger
from federation.guard.context import GuardContext
from federation.guard.refusal import Refusal, refuse


class RoundsMod:
    """A Flower mod that refuses train messages once the agreement's rounds are all used."""

    def __init__(self, guard: GuardContext) -> None:
        """Count rounds for ``guard``'s agreement."""
        self.guard = guard

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Refuse a train message once the agreement's rounds are used up, else pass it on."""
        if not is_train(message):
            return call_next(message, context)
        guard = self.guard
        used_up = rounds_used_up(guard.ledger(), guard.agreement_id, guard.max_rounds)
        if used_up:
            return refuse(
                message,
                Refusal.ROUNDS_EXHAUSTED,
                f"{used_up}; nothing was trained. Negotiate a new agreement for more rounds",
            )
        return call_next(message, context)


def rounds_used_up(ledger: SqlPrivacyLedger, agreement_id: str, max_rounds: int) -> str:
    """Why ``agreement_id`` has no training round left, or "" while it has.

    Counts the rounds on ``ledger`` under the agreement over all its runs, and names
    the runs that used them.
    """
    used = ledger.rounds_used(agreement_id)
    if used < max_rounds:
        return ""
    runs = ", ".join(f"{run}: {count}" for run, count in ledger.rounds_by_run(agreement_id).items())
    return (
        f"agreement {agreement_id} allows {max_rounds} training round(s) in all and {used} "
        f"have been used (rounds by run: {runs})"
    )


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
    """The number the next training round of ``message``'s run gets: the run's rounds + 1.

    Rounds are numbered per run (the agreement's rounds are counted over all runs).
    """
    return guard.ledger().rounds_used(guard.agreement_id, run_id(message)) + 1
