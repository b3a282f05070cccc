"""The privacy ledger suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connector.clock import FixedClock
from connector.store import create_engine
from connector.store.ledger import (
    LedgerRound,
    RoundAlreadyRecordedError,
    SqlPrivacyLedger,
    StaleLedgerError,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def ledger(engine: sa.Engine, clock: FixedClock) -> SqlPrivacyLedger:
    return SqlPrivacyLedger(engine, clock)


def spend(ledger: SqlPrivacyLedger, **fields: Any) -> LedgerRound:
    """Record a round with defaults for what a test does not care about."""
    values: dict[str, Any] = {
        "dataset_id": "ped-counts",
        "agreement_id": "urn:uuid:a",
        "run_id": "7",
        "round": 1,
        "sample_rate": 0.25,
        "noise_multiplier": 1.1,
        "steps": 4,
        "delta": 1e-5,
        "epsilon_after": 1.5,
        "expected_rounds": 0,
    }
    values.update(fields)
    return ledger.record_round(**values)


def snapshot(ledger: SqlPrivacyLedger) -> tuple[list[LedgerRound], int, float]:
    return (
        ledger.history("ped-counts"),
        ledger.rounds_used("urn:uuid:a"),
        ledger.total_epsilon("ped-counts"),
    )


def test_an_empty_ledger_has_spent_nothing(ledger: SqlPrivacyLedger) -> None:
    assert ledger.history("ped-counts") == []
    assert ledger.rounds_used("urn:uuid:a") == 0
    assert ledger.rounds_used("urn:uuid:a", "7") == 0
    assert ledger.total_epsilon("ped-counts") == 0.0


def test_recorded_rounds_come_back_in_order_and_exactly(
    ledger: SqlPrivacyLedger, clock: FixedClock
) -> None:
    # Prepare
    first = spend(ledger, sample_rate=1 / 3, noise_multiplier=0.1 + 0.2, epsilon_after=1.0 / 7)
    clock.advance(timedelta(minutes=5))

    # Execute
    second = spend(
        ledger, agreement_id="urn:uuid:b", run_id="9", epsilon_after=2.25, expected_rounds=1
    )

    # Assert: floats round-trip bit for bit, so epsilon recomputes the same.
    assert ledger.history("ped-counts") == [first, second]
    assert first == LedgerRound(
        dataset_id="ped-counts",
        seq=1,
        agreement_id="urn:uuid:a",
        run_id="7",
        round=1,
        sample_rate=1 / 3,
        noise_multiplier=0.1 + 0.2,
        steps=4,
        delta=1e-5,
        epsilon_after=1.0 / 7,
        time=T0,
    )
    assert (second.seq, second.time) == (2, T0 + timedelta(minutes=5))
    assert ledger.total_epsilon("ped-counts") == 2.25


def test_rounds_are_counted_per_agreement_and_per_run(ledger: SqlPrivacyLedger) -> None:
    # Prepare / Execute
    spend(ledger, run_id="7", round=1, expected_rounds=0)
    spend(ledger, run_id="7", round=2, expected_rounds=1)
    spend(ledger, run_id="8", round=1, expected_rounds=2)
    spend(ledger, agreement_id="urn:uuid:b", run_id="7", round=1, expected_rounds=3)

    # Assert
    assert ledger.rounds_used("urn:uuid:a") == 3
    assert ledger.rounds_used("urn:uuid:a", "7") == 2
    assert ledger.rounds_used("urn:uuid:a", "8") == 1
    assert ledger.rounds_used("urn:uuid:b", "7") == 1
    assert ledger.rounds_used("urn:uuid:c") == 0
    assert ledger.rounds_by_run("urn:uuid:a") == {"7": 2, "8": 1}
    assert ledger.rounds_by_run("urn:uuid:b") == {"7": 1}
    assert ledger.rounds_by_run("urn:uuid:c") == {}


def test_the_last_round_time_is_that_of_the_agreements_newest_round(
    ledger: SqlPrivacyLedger, clock: FixedClock
) -> None:
    # Prepare
    assert ledger.last_round_time("urn:uuid:a") is None
    spend(ledger, run_id="7", round=1, expected_rounds=0)
    clock.advance(timedelta(minutes=5))
    spend(ledger, run_id="8", round=1, expected_rounds=1)
    clock.advance(timedelta(minutes=5))

    # Execute
    spend(ledger, agreement_id="urn:uuid:b", run_id="9", round=1, expected_rounds=2)

    # Assert
    assert ledger.last_round_time("urn:uuid:a") == T0 + timedelta(minutes=5)
    assert ledger.last_round_time("urn:uuid:b") == T0 + timedelta(minutes=10)
    assert ledger.last_round_time("urn:uuid:c") is None


def test_runs_are_listed_in_the_order_they_began(ledger: SqlPrivacyLedger) -> None:
    # Prepare / Execute: run 9 began first; in text order "10" would come first.
    spend(ledger, run_id="9", round=1, expected_rounds=0)
    spend(ledger, run_id="10", round=1, expected_rounds=1)
    spend(ledger, run_id="9", round=2, expected_rounds=2)

    # Assert
    assert list(ledger.rounds_by_run("urn:uuid:a").items()) == [("9", 2), ("10", 1)]


def test_datasets_have_separate_ledgers(ledger: SqlPrivacyLedger) -> None:
    # Execute
    spend(ledger, dataset_id="ped-counts", epsilon_after=1.0)
    spend(ledger, dataset_id="air-quality", round=2, epsilon_after=3.0)

    # Assert
    assert [item.seq for item in ledger.history("air-quality")] == [1]
    assert ledger.total_epsilon("ped-counts") == 1.0
    assert ledger.total_epsilon("air-quality") == 3.0


def test_a_round_is_never_recorded_twice(ledger: SqlPrivacyLedger) -> None:
    # Prepare
    spend(ledger)
    before = snapshot(ledger)

    # Execute
    with pytest.raises(RoundAlreadyRecordedError, match=r"round 1 of run '7' .* already"):
        spend(ledger, epsilon_after=3.0, expected_rounds=1)

    # Assert: nothing changed.
    assert snapshot(ledger) == before


def test_a_round_computed_over_a_stale_history_is_refused(ledger: SqlPrivacyLedger) -> None:
    # Prepare: the caller read an empty history, then another round was recorded.
    spend(ledger, agreement_id="urn:uuid:b")
    before = snapshot(ledger)

    # Execute
    with pytest.raises(StaleLedgerError, match=r"holds 1 rounds, not the 0"):
        spend(ledger, expected_rounds=0)

    # Assert
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dataset_id", "", "dataset_id must be a non-empty string"),
        ("dataset_id", "x" * 129, "at most 128"),
        ("agreement_id", "", "agreement_id must be a non-empty string"),
        ("run_id", "", "run_id must be a non-empty string"),
        ("round", 0, "round must be a whole number of at least 1"),
        ("steps", 0, "steps must be a whole number of at least 1"),
        ("sample_rate", 0.0, r"sample_rate must be in \(0, 1\]"),
        ("sample_rate", 1.5, r"sample_rate must be in \(0, 1\]"),
        ("noise_multiplier", 0.0, "noise_multiplier must be a finite number above 0"),
        ("noise_multiplier", float("inf"), "noise_multiplier must be a finite number above 0"),
        ("delta", 1.0, r"delta must be in \(0, 1\)"),
        ("epsilon_after", float("nan"), "epsilon_after must be a finite number"),
        ("epsilon_after", -1.0, "epsilon_after must be a finite number"),
        ("expected_rounds", -1, "expected_rounds must be a whole number of at least 0"),
    ],
)
def test_out_of_range_rounds_are_refused(
    ledger: SqlPrivacyLedger, field: str, value: object, message: str
) -> None:
    # Prepare
    before = snapshot(ledger)

    # Execute
    with pytest.raises(ValueError, match=message):
        spend(ledger, **{field: value})

    # Assert
    assert snapshot(ledger) == before


def test_concurrent_rounds_on_one_dataset_are_recorded_one_after_the_other(
    database_url: str, engine: sa.Engine
) -> None:
    # Prepare: four writers, each computed its epsilon over the same empty history.
    writers = 4
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    engines = [create_engine(database_url) for _ in range(writers)]

    def record(index: int) -> None:
        ledger = SqlPrivacyLedger(engines[index], FixedClock(T0))
        barrier.wait()
        try:
            spend(ledger, agreement_id=f"urn:uuid:{index}", epsilon_after=float(index))
        except StaleLedgerError:
            outcomes.append("stale")
        else:
            outcomes.append("recorded")

    # Execute
    threads = [threading.Thread(target=record, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for created in engines:
        created.dispose()

    # Assert: exactly one won; the ledger holds its round alone.
    assert sorted(outcomes) == ["recorded"] + ["stale"] * (writers - 1)
    history = SqlPrivacyLedger(engine).history("ped-counts")
    assert [item.seq for item in history] == [1]
    assert SqlPrivacyLedger(engine).total_epsilon("ped-counts") == history[0].epsilon_after


def test_the_ledger_survives_a_new_engine(database_url: str, engine: sa.Engine) -> None:
    # Prepare
    recorded = spend(SqlPrivacyLedger(engine, FixedClock(T0)))
    engine.dispose()

    # Execute
    reopened = create_engine(database_url)
    try:
        history = SqlPrivacyLedger(reopened).history("ped-counts")
    finally:
        reopened.dispose()

    # Assert
    assert history == [recorded]
