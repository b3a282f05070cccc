"""The rounds mod: no more training rounds per run than the agreement allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.store.ledger import SqlPrivacyLedger
from federation.guard import GuardContext, Refusal, RoundsMod
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
        f"{Refusal.ROUNDS_EXHAUSTED}: agreement {AGREEMENT} allows 2 training round(s) per "
        "run and run 7 has used 2; nothing was trained. Negotiate a new agreement for more rounds"
    )
    assert app.calls == 0
    assert ledger.history(DATASET) == history


def test_each_run_has_its_own_rounds(guard: GuardContext) -> None:
    # Prepare
    use_rounds(guard.ledger(), "7", 2)
    app = App()

    # Execute
    reply = RoundsMod(guard)(instruction(run_id=8), context(run_id=8), app)

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
