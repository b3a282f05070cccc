"""The rounds mod: no more training rounds than the agreement allows, over all its runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.store.ledger import SqlPrivacyLedger
from federation.guard import GuardContext, Refusal, RoundsMod
from federation.guard.audit import REFUSED
from federation.guard.rounds import next_round
from tests.unit.guard_support import (
    AGREEMENT,
    DATASET,
    App,
    context,
    guarded,
    instruction,
    make_guard,
    make_pki,
    metrics_reply,
    migrated_url,
    reason,
)


@pytest.fixture
def guard(tmp_path: Path) -> GuardContext:
    return make_guard(make_pki(tmp_path), migrated_url(tmp_path), max_rounds=2)


def use_rounds(ledger: SqlPrivacyLedger, run_id: str, rounds: int) -> None:
    """Put ``rounds`` rounds of ``run_id`` on the ledger, as the privacy mod would."""
    for number in range(1, rounds + 1):
        seq = len(ledger.history(DATASET))
        ledger.record_round(
            dataset_id=DATASET,
            agreement_id=AGREEMENT,
            run_id=run_id,
            round=number,
            sample_rate=0.25,
            noise_multiplier=1.0,
            steps=4,
            delta=1e-5,
            epsilon_after=1.0 + seq,
            expected_rounds=seq,
        )


def test_rounds_within_the_agreement_pass(guard: GuardContext) -> None:
    # Prepare
    use_rounds(guard.ledger(), "7", 1)
    app = App()

    # Execute
    reply = RoundsMod(guard)(instruction(), context(), app)

    # Assert
    assert not reply.has_error()
    assert app.calls == 1


def test_the_round_after_the_last_is_refused_and_nothing_runs(guard: GuardContext) -> None:
    # Prepare
    ledger = guard.ledger()
    use_rounds(ledger, "7", 2)
    history = ledger.history(DATASET)
    app = App()

    # Execute
    reply = RoundsMod(guard)(instruction(), context(), app)

    # Assert
    assert reason(reply) == (
        f"{Refusal.ROUNDS_EXHAUSTED}: agreement {AGREEMENT} allows 2 training round(s) in all "
        "and 2 have been used (rounds by run: 7: 2); nothing was trained. Negotiate a new "
        "agreement for more rounds"
    )
    assert app.calls == 0
    assert ledger.history(DATASET) == history


def test_a_second_run_gets_only_the_rounds_the_first_left(guard: GuardContext) -> None:
    # Prepare: run 7 used one of the agreement's two rounds.
    use_rounds(guard.ledger(), "7", 1)
    app = App()

    # Execute
    reply = RoundsMod(guard)(instruction(run_id=8), context(run_id=8), app)

    # Assert: run 8 may train, and its first round is numbered 1 within run 8.
    assert not reply.has_error()
    assert app.calls == 1
    assert next_round(guard, instruction(run_id=8)) == 1


def test_a_new_run_is_refused_once_the_agreements_rounds_are_used(guard: GuardContext) -> None:
    # Prepare: runs 7 and 8 used the agreement's two rounds between them.
    ledger = guard.ledger()
    use_rounds(ledger, "7", 1)
    use_rounds(ledger, "8", 1)
    history = ledger.history(DATASET)
    epsilon = ledger.total_epsilon(DATASET)
    app = App()

    # Execute: a third run, through the whole guard.
    reply = guarded(guard, app)(instruction(run_id=9), context(run_id=9))

    # Assert: refused with the reason; nothing trained, nothing spent, only the refusal audited.
    assert reason(reply) == (
        f"{Refusal.ROUNDS_EXHAUSTED}: agreement {AGREEMENT} allows 2 training round(s) in all "
        "and 2 have been used (rounds by run: 7: 1, 8: 1); nothing was trained. Negotiate a "
        "new agreement for more rounds"
    )
    assert app.calls == 0
    assert not reply.has_content()
    assert ledger.history(DATASET) == history
    assert ledger.total_epsilon(DATASET) == epsilon
    assert ledger.rounds_used(AGREEMENT, "9") == 0
    [entry] = guard.audit_log().entries()
    assert entry.kind == REFUSED
    assert entry.payload["refusal"] == Refusal.ROUNDS_EXHAUSTED


def test_rounds_of_another_agreement_do_not_count(guard: GuardContext) -> None:
    # Prepare: another agreement on the same dataset used two rounds.
    ledger = guard.ledger()
    for number in (1, 2):
        ledger.record_round(
            dataset_id=DATASET,
            agreement_id="urn:uuid:agreement-other",
            run_id="7",
            round=number,
            sample_rate=0.25,
            noise_multiplier=1.0,
            steps=4,
            delta=1e-5,
            epsilon_after=float(number),
            expected_rounds=number - 1,
        )
    app = App()

    # Execute
    reply = RoundsMod(guard)(instruction(), context(), app)

    # Assert
    assert not reply.has_error()
    assert app.calls == 1


def test_evaluation_is_not_a_training_round(guard: GuardContext) -> None:
    # Prepare
    use_rounds(guard.ledger(), "7", 2)
    app = App(metrics_reply)

    # Execute
    reply = RoundsMod(guard)(instruction("evaluate"), context(), app)

    # Assert
    assert not reply.has_error()
    assert app.calls == 1


def test_train_actions_count_as_training(guard: GuardContext) -> None:
    # Prepare
    use_rounds(guard.ledger(), "7", 2)
    app = App()

    # Execute
    reply = RoundsMod(guard)(instruction("train.custom"), context(), app)

    # Assert
    assert reason(reply).startswith("ROUNDS_EXHAUSTED")
    assert app.calls == 0
