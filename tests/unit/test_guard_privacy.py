"""The privacy mod: the budget is checked before a round, the round recorded before it leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import Message

from federation.guard import GuardContext, PrivacyMod, Refusal, refuse
from federation.guard.privacy import steps_of
from federation.privacy import DPStep, epsilon_after
from tests.unit.guard_support import (
    AGREEMENT,
    DATASET,
    App,
    context,
    instruction,
    make_guard,
    make_pki,
    metrics_reply,
    migrated_url,
    reason,
    update_reply,
)


@pytest.fixture
def guard(tmp_path: Path) -> GuardContext:
    return make_guard(make_pki(tmp_path), migrated_url(tmp_path))


def test_a_successful_round_is_recorded_with_the_nodes_dp_parameters(guard: GuardContext) -> None:
    # Prepare: the message asks for almost no noise; the node does not listen.
    message = instruction(config={"noise-multiplier": 0.0001, "epochs": 50})
    app = App()

    # Execute
    reply = PrivacyMod(guard)(message, context(), app)

    # Assert
    assert not reply.has_error()
    [recorded] = guard.ledger().history(DATASET)
    step = guard.round_step
    assert step == DPStep(sample_rate=0.25, noise_multiplier=1.0, steps=4)
    assert (recorded.sample_rate, recorded.noise_multiplier, recorded.steps) == step
    assert (recorded.agreement_id, recorded.run_id, recorded.round) == (AGREEMENT, "7", 1)
    assert recorded.delta == guard.delta
    assert recorded.epsilon_after == epsilon_after([], step, guard.delta)


def test_rounds_are_numbered_per_run(guard: GuardContext) -> None:
    # Execute
    for message_id in ("a", "b"):
        PrivacyMod(guard)(instruction(message_id=message_id), context(), App())
    PrivacyMod(guard)(instruction(run_id=8), context(run_id=8), App())

    # Assert
    history = guard.ledger().history(DATASET)
    assert [(item.run_id, item.round) for item in history] == [("7", 1), ("7", 2), ("8", 1)]
    assert history[-1].epsilon_after == epsilon_after(
        [guard.round_step] * 2, guard.round_step, guard.delta
    )


def test_an_error_from_inside_records_nothing(guard: GuardContext) -> None:
    # Prepare
    app = App(lambda message: refuse(message, Refusal.TRAINING_FAILED, "it broke"))

    # Execute
    reply = PrivacyMod(guard)(instruction(), context(), app)

    # Assert
    assert reason(reply) == "TRAINING_FAILED: it broke"
    assert guard.ledger().history(DATASET) == []


def test_evaluation_spends_nothing(guard: GuardContext) -> None:
    reply = PrivacyMod(guard)(instruction("evaluate"), context(), App(metrics_reply))
    assert not reply.has_error()
    assert guard.ledger().history(DATASET) == []


def test_a_budget_spent_by_another_agreement_during_training_withholds_the_update(
    tmp_path: Path, guard: GuardContext
) -> None:
    # Prepare: while this round trains, another agreement spends the rest of the budget.
    one = epsilon_after([], guard.round_step, guard.delta)
    tight = make_guard(make_pki(tmp_path / "b"), guard.database_url, epsilon_budget=one * 1.1)
    ledger = tight.ledger()

    def train_while_another_agreement_spends(message: Message) -> Message:
        step = tight.round_step
        ledger.record_round(
            dataset_id=DATASET,
            agreement_id="urn:uuid:other",
            run_id="1",
            round=1,
            sample_rate=step.sample_rate,
            noise_multiplier=step.noise_multiplier,
            steps=step.steps,
            delta=tight.delta,
            epsilon_after=one,
            expected_rounds=0,
        )
        return update_reply(message)

    # Execute
    reply = PrivacyMod(tight)(instruction(), context(), App(train_while_another_agreement_spends))

    # Assert: only the other agreement's round is on the ledger; the update was withheld.
    assert reason(reply).startswith(
        "PRIVACY_BUDGET_EXHAUSTED: while this round trained, other rounds on dataset ped-counts"
    )
    assert [item.agreement_id for item in ledger.history(DATASET)] == ["urn:uuid:other"]
    assert (
        epsilon_after(steps_of(ledger.history(DATASET)), None, tight.delta) <= tight.epsilon_budget
    )


def test_a_round_recorded_twice_withholds_the_second_update(guard: GuardContext) -> None:
    # Prepare: a second train message of the same run records round 1 while this one trains.
    def train_while_a_twin_records(message: Message) -> Message:
        PrivacyMod(guard)(instruction(message_id="twin"), context(), App())
        return update_reply(message)

    # Execute
    reply = PrivacyMod(guard)(instruction(), context(), App(train_while_a_twin_records))

    # Assert
    assert reason(reply).startswith("LEDGER_CONFLICT: round 1 of run '7'")
    assert len(guard.ledger().history(DATASET)) == 1
