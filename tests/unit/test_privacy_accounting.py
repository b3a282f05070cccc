"""Privacy accounting (federation.privacy) and the budget stop it gives the guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from federation.guard import PrivacyMod, Refusal
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
    migrated_url,
    reason,
)

DELTA = 1e-5
STEP = DPStep(sample_rate=0.01, noise_multiplier=1.1, steps=100)


def test_no_steps_spend_nothing() -> None:
    assert epsilon_after([], None, DELTA) == 0.0
    assert epsilon_after([DPStep(0.5, 1.0, 0)], None, DELTA) == 0.0


def test_epsilon_grows_with_every_step() -> None:
    # Execute
    epsilons = [epsilon_after([], DPStep(0.01, 1.1, steps), DELTA) for steps in (1, 10, 100, 1000)]

    # Assert
    assert epsilons == sorted(epsilons)
    assert len(set(epsilons)) == len(epsilons)
    assert epsilons[0] > 0


def test_epsilon_is_that_of_the_opacus_accountant() -> None:
    # Prepare
    accountant = RDPAccountant()
    for _ in range(100):
        accountant.step(noise_multiplier=1.1, sample_rate=0.01)
    for _ in range(50):
        accountant.step(noise_multiplier=0.8, sample_rate=0.02)

    # Execute
    computed = epsilon_after([STEP], DPStep(0.02, 0.8, 50), DELTA)

    # Assert
    assert computed == accountant.get_epsilon(delta=DELTA)


def test_rounds_of_all_agreements_compose() -> None:
    # Prepare: agreement A spent two rounds, agreement B one, on the same dataset.
    agreement_a = [STEP, STEP]
    agreement_b = [DPStep(0.05, 1.5, 40)]

    # Execute
    a_alone = epsilon_after(agreement_a, None, DELTA)
    b_alone = epsilon_after(agreement_b, None, DELTA)
    both = epsilon_after(agreement_a, agreement_b[0], DELTA)

    # Assert: more than either alone, less than their sum (RDP composes better),
    # independent of order, and two equal rounds are one round of twice the steps.
    assert max(a_alone, b_alone) < both < a_alone + b_alone
    assert epsilon_after([agreement_b[0], *agreement_a], None, DELTA) == pytest.approx(both)
    assert a_alone == epsilon_after([DPStep(0.01, 1.1, 200)], None, DELTA)


def test_epsilon_is_deterministic() -> None:
    assert epsilon_after([STEP], STEP, DELTA) == epsilon_after([STEP], STEP, DELTA)


def test_a_smaller_delta_costs_more_epsilon() -> None:
    assert epsilon_after([STEP], None, 1e-7) > epsilon_after([STEP], None, 1e-3)


@pytest.mark.parametrize(
    ("history", "new", "delta", "message"),
    [
        ([], STEP, 0.0, r"delta must be in \(0, 1\)"),
        ([], STEP, 1.0, r"delta must be in \(0, 1\)"),
        ([DPStep(0.0, 1.0, 1)], None, DELTA, r"history\[0\]: sample_rate must be in \(0, 1\]"),
        ([STEP], DPStep(1.5, 1.0, 1), DELTA, r"the new round: sample_rate must be in \(0, 1\]"),
        ([], DPStep(0.1, 0.0, 1), DELTA, "noise_multiplier must be a finite number above 0"),
        ([STEP, DPStep(0.1, 1.0, -1)], None, DELTA, r"history\[1\]: steps must be a whole number"),
    ],
)
def test_malformed_steps_are_refused(
    history: list[DPStep], new: DPStep | None, delta: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        epsilon_after(history, new, delta)


def test_the_guard_stops_before_the_budget_would_be_exceeded(tmp_path: Path) -> None:
    # Prepare: a budget between the epsilon of two rounds and that of three.
    pki, url = make_pki(tmp_path), migrated_url(tmp_path)
    probe = make_guard(pki, url)
    two = epsilon_after([probe.round_step], probe.round_step, probe.delta)
    three = epsilon_after([probe.round_step] * 2, probe.round_step, probe.delta)
    guard = make_guard(pki, url, epsilon_budget=(two + three) / 2, max_rounds=10)
    mod, app = PrivacyMod(guard), App()
    ledger = guard.ledger()

    # Execute
    replies = [mod(instruction(message_id=f"m{i}"), context(), app) for i in range(3)]

    # Assert: two rounds trained and recorded, the third refused before the app ran.
    assert [reply.has_error() for reply in replies] == [False, False, True]
    assert reason(replies[2]).startswith(Refusal.PRIVACY_BUDGET_EXHAUSTED + ":")
    assert f"would take it to {three:.4f}" in reason(replies[2])
    assert app.calls == 2
    assert ledger.total_epsilon(DATASET) == pytest.approx(two)
    assert ledger.total_epsilon(DATASET) <= guard.epsilon_budget


def test_a_refused_round_leaves_the_ledger_untouched(tmp_path: Path) -> None:
    # Prepare: one round is already more than the budget.
    pki, url = make_pki(tmp_path), migrated_url(tmp_path)
    guard = make_guard(pki, url, epsilon_budget=0.5)
    mod, app = PrivacyMod(guard), App()
    ledger = guard.ledger()

    # Execute
    reply = mod(instruction(), context(), app)

    # Assert
    assert reason(reply).startswith("PRIVACY_BUDGET_EXHAUSTED: dataset ped-counts has spent")
    assert app.calls == 0
    assert ledger.history(DATASET) == []
    assert ledger.total_epsilon(DATASET) == 0.0
    assert ledger.rounds_used(AGREEMENT) == 0


def test_another_agreements_rounds_count_against_the_budget(tmp_path: Path) -> None:
    # Prepare: agreement A spent the dataset's budget but for less than one round.
    pki, url = make_pki(tmp_path), migrated_url(tmp_path)
    first = make_guard(pki, url, agreement_id="urn:uuid:a")
    one = epsilon_after([], first.round_step, first.delta)
    two = epsilon_after([first.round_step], first.round_step, first.delta)
    first = make_guard(pki, url, agreement_id="urn:uuid:a", epsilon_budget=(one + two) / 2)
    second = make_guard(pki, url, agreement_id="urn:uuid:b", epsilon_budget=(one + two) / 2)
    assert not PrivacyMod(first)(instruction(), context(), App()).has_error()
    history = second.ledger().history(DATASET)

    # Execute: agreement B, on its first round ever, on the same dataset.
    app = App()
    reply = PrivacyMod(second)(instruction(), context(), app)

    # Assert
    assert reason(reply).startswith("PRIVACY_BUDGET_EXHAUSTED")
    assert app.calls == 0
    assert second.ledger().history(DATASET) == history
    assert epsilon_after(steps_of(history), None, second.delta) == pytest.approx(one)
