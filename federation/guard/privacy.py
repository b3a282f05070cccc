"""The privacy budget: a round runs only if the dataset stays within its epsilon.

Before a train message reaches the app, the mod computes the epsilon the dataset
would reach with this round: the node's DP-SGD parameters (from the guard context,
never from the message) composed with every round on the dataset's ledger, under any
agreement (:func:`federation.privacy.epsilon_after`). If that exceeds the budget the
message is refused: nothing is trained and the ledger is unchanged, so training
stops *before* the budget is exceeded, not after.

After the app replies with an update, the round is put on the ledger before the
update leaves. The epsilon is computed again over the ledger as it is then (another
agreement may have trained meanwhile); if the budget no longer holds, or the round
cannot be recorded, the update is withheld and an Error sent instead. An Error reply
from further in is passed on and records nothing: nothing left the node.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from connector.store.ledger import LedgerRound, RoundAlreadyRecordedError, StaleLedgerError
from federation.guard.context import GuardContext
from federation.guard.refusal import Refusal, refuse
from federation.guard.rounds import is_train, next_round, run_id
from federation.privacy import DPStep, epsilon_after

RECORD_ATTEMPTS = 3
"""Times a round is recomputed and recorded when other rounds are recorded meanwhile."""


class PrivacyMod:
    """A Flower mod that enforces the dataset's epsilon budget and records each round."""

    def __init__(self, guard: GuardContext) -> None:
        """Enforce ``guard``'s budget on its dataset."""
        self.guard = guard

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Refuse a round over budget; after a successful one, record it on the ledger."""
        if not is_train(message):
            return call_next(message, context)
        guard = self.guard
        step = guard.round_step
        history = guard.ledger().history(guard.dataset_id)
        would_be = epsilon_after(steps_of(history), step, guard.delta)
        if would_be > guard.epsilon_budget:
            spent = epsilon_after(steps_of(history), None, guard.delta)
            return refuse(
                message,
                Refusal.PRIVACY_BUDGET_EXHAUSTED,
                f"dataset {guard.dataset_id} has spent epsilon {spent:.4f} of its budget "
                f"{guard.epsilon_budget:g} (delta {guard.delta:g}); this round would take it "
                f"to {would_be:.4f}, so nothing was trained. Ask the data holder for a new "
                "budget, or train with fewer steps or more noise",
            )
        round_number = next_round(guard, message)
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        return self._record(message, reply, step, round_number)

    def _record(self, message: Message, reply: Message, step: DPStep, round_number: int) -> Message:
        guard = self.guard
        ledger = guard.ledger()
        for _ in range(RECORD_ATTEMPTS):
            history = ledger.history(guard.dataset_id)
            epsilon = epsilon_after(steps_of(history), step, guard.delta)
            if epsilon > guard.epsilon_budget:
                return refuse(
                    message,
                    Refusal.PRIVACY_BUDGET_EXHAUSTED,
                    f"while this round trained, other rounds on dataset {guard.dataset_id} "
                    f"used the budget: with this round its epsilon would be {epsilon:.4f}, "
                    f"over {guard.epsilon_budget:g}; the update was withheld",
                )
            try:
                ledger.record_round(
                    dataset_id=guard.dataset_id,
                    agreement_id=guard.agreement_id,
                    run_id=run_id(message),
                    round=round_number,
                    sample_rate=step.sample_rate,
                    noise_multiplier=step.noise_multiplier,
                    steps=step.steps,
                    delta=guard.delta,
                    epsilon_after=epsilon,
                    expected_rounds=len(history),
                )
            except StaleLedgerError:
                continue
            except RoundAlreadyRecordedError as exc:
                return refuse(
                    message,
                    Refusal.LEDGER_CONFLICT,
                    f"{exc}: two train messages of one run arrived together; the update "
                    "was withheld",
                )
            return reply
        return refuse(
            message,
            Refusal.LEDGER_CONFLICT,
            f"the privacy ledger of dataset {guard.dataset_id} kept changing while this "
            f"round was recorded ({RECORD_ATTEMPTS} attempts); the update was withheld. "
            "Send the round again",
        )


def steps_of(history: list[LedgerRound]) -> list[DPStep]:
    """The ledger's rounds as the accountant sees them."""
    return [DPStep(item.sample_rate, item.noise_multiplier, item.steps) for item in history]
