"""The privacy ledger: every round of DP training spent on each dataset.

Differential privacy composes: every round trained on a dataset, under whichever
agreement and run, adds to what the dataset has given away. The ledger keeps those
rounds (table ``privacy_ledger_round``: the DP-SGD parameters of each round and the
dataset's epsilon once it was spent) and, per dataset, a head (table
``privacy_ledger_head``: how many rounds, the latest epsilon). Epsilon itself is
computed by the caller (:func:`federation.privacy.epsilon_after`, which needs the
rounds' parameters from :meth:`SqlPrivacyLedger.history`); the ledger only keeps it.

Recording is optimistic, as a compare-and-set on the head: the caller says how many
rounds the history had when it computed the new epsilon, and the round is recorded
only if that is still so (:class:`StaleLedgerError` otherwise: read again, compute
again). Rounds on one dataset are therefore recorded one after the other, each on
the epsilon of all the rounds before it. On SQLite the write transaction
(``BEGIN IMMEDIATE``) serialises writers; on PostgreSQL the head row is locked
(``SELECT ... FOR UPDATE``), and two first rounds of a new dataset race on its
primary key, the loser getting :class:`StaleLedgerError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from connector.clock import Clock
from connector.store.sessions import SqlStoreBase
from connector.store.tables import ID_LENGTH, PrivacyLedgerHeadRow, PrivacyLedgerRoundRow


class LedgerError(Exception):
    """A round cannot be recorded; the message says why and what to do."""


class RoundAlreadyRecordedError(LedgerError):
    """That (agreement, run, round) is on the ledger already; it is never recorded twice."""


class StaleLedgerError(LedgerError):
    """The dataset's ledger changed since the caller read it; read it again and retry."""


@dataclass(frozen=True)
class LedgerRound:
    """One round of DP training on the ledger."""

    dataset_id: str
    """The dataset trained on."""
    seq: int
    """Position in the dataset's ledger: 1, 2, 3 ..."""
    agreement_id: str
    """The agreement the round was trained under."""
    run_id: str
    """The training run."""
    round: int
    """The round's number within the (agreement, run), from 1."""
    sample_rate: float
    """Poisson sampling rate of the round's DP-SGD."""
    noise_multiplier: float
    """Noise multiplier of the round's DP-SGD."""
    steps: int
    """Noisy optimizer steps taken."""
    delta: float
    """The delta ``epsilon_after`` is computed at."""
    epsilon_after: float
    """The dataset's epsilon once this round was spent."""
    time: datetime
    """When the round was recorded (UTC)."""


class SqlPrivacyLedger(SqlStoreBase):
    """The privacy ledger in SQLite or PostgreSQL."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        """Use a migrated database.

        Args:
            engine: From :func:`connector.store.create_engine`, after
                :func:`connector.store.migrate`.
            clock: Source of record times; the system clock by default.
        """
        super().__init__(engine, clock)

    def history(self, dataset_id: str) -> list[LedgerRound]:
        """Every round spent on ``dataset_id``, oldest first (empty if none)."""
        query = (
            select(PrivacyLedgerRoundRow)
            .where(col(PrivacyLedgerRoundRow.dataset_id) == dataset_id)
            .order_by(col(PrivacyLedgerRoundRow.seq))
        )
        with self._read() as session:
            return [_round(row) for row in session.exec(query).all()]

    def record_round(
        self,
        *,
        dataset_id: str,
        agreement_id: str,
        run_id: str,
        round: int,
        sample_rate: float,
        noise_multiplier: float,
        steps: int,
        delta: float,
        epsilon_after: float,
        expected_rounds: int,
    ) -> LedgerRound:
        """Record one round spent on ``dataset_id``, in one transaction.

        Args:
            dataset_id: The dataset trained on.
            agreement_id: The agreement the round was trained under.
            run_id: The training run.
            round: The round's number within the (agreement, run), from 1.
            sample_rate: Poisson sampling rate, in ``(0, 1]``.
            noise_multiplier: Noise multiplier, above 0.
            steps: Noisy optimizer steps taken, at least 1.
            delta: The delta ``epsilon_after`` is computed at, in ``(0, 1)``.
            epsilon_after: The dataset's epsilon with this round, over the
                ``expected_rounds`` rounds before it (finite, 0 or more).
            expected_rounds: How many rounds :meth:`history` returned when
                ``epsilon_after`` was computed.

        Returns:
            The round as recorded, numbered ``expected_rounds + 1``.

        Raises:
            RoundAlreadyRecordedError: The (agreement, run, round) is on the ledger.
            StaleLedgerError: The dataset's ledger no longer holds ``expected_rounds``
                rounds (another round was recorded meanwhile).
            ValueError: An argument is out of range; the message names it.

            Nothing is written when any of these is raised.
        """
        _check_id(dataset_id, "dataset_id", ID_LENGTH)
        _check_id(agreement_id, "agreement_id")
        _check_id(run_id, "run_id")
        _check_whole(round, "round", 1)
        _check_whole(steps, "steps", 1)
        _check_whole(expected_rounds, "expected_rounds", 0)
        if not (_finite(sample_rate) and 0.0 < sample_rate <= 1.0):
            raise ValueError(f"sample_rate must be in (0, 1], not {sample_rate!r}")
        if not (_finite(noise_multiplier) and noise_multiplier > 0.0):
            raise ValueError(
                f"noise_multiplier must be a finite number above 0, not {noise_multiplier!r}"
            )
        if not (_finite(delta) and 0.0 < delta < 1.0):
            raise ValueError(f"delta must be in (0, 1), not {delta!r}")
        if not (_finite(epsilon_after) and epsilon_after >= 0.0):
            raise ValueError(
                f"epsilon_after must be a finite number 0 or more, not {epsilon_after!r}"
            )
        now = self._now()
        row = PrivacyLedgerRoundRow(
            dataset_id=dataset_id,
            seq=expected_rounds + 1,
            agreement_id=agreement_id,
            run_id=run_id,
            round=round,
            sample_rate=float(sample_rate),
            noise_multiplier=float(noise_multiplier),
            steps=steps,
            delta=float(delta),
            epsilon_after=float(epsilon_after),
            time=now,
        )
        try:
            with self._write() as session:
                if self._recorded(session, agreement_id, run_id, round):
                    raise _already(agreement_id, run_id, round)
                head = session.exec(
                    select(PrivacyLedgerHeadRow)
                    .where(col(PrivacyLedgerHeadRow.dataset_id) == dataset_id)
                    .with_for_update()
                ).one_or_none()
                rounds = 0 if head is None else head.rounds
                if rounds != expected_rounds:
                    raise StaleLedgerError(
                        f"the privacy ledger of dataset {dataset_id!r} holds {rounds} rounds, "
                        f"not the {expected_rounds} the new epsilon was computed over: another "
                        "round was recorded meanwhile; read the history again and recompute"
                    )
                session.add(row)
                if head is None:
                    session.add(
                        PrivacyLedgerHeadRow(
                            dataset_id=dataset_id,
                            rounds=1,
                            epsilon=float(epsilon_after),
                            update_time=now,
                        )
                    )
                else:
                    head.rounds = rounds + 1
                    head.epsilon = float(epsilon_after)
                    head.update_time = now
                    session.add(head)
                session.flush()
                recorded = _round(row)
        except IntegrityError:
            # A concurrent writer recorded this round, or the first round of this
            # dataset, between the checks and the insert.
            with self._read() as session:
                if self._recorded(session, agreement_id, run_id, round):
                    raise _already(agreement_id, run_id, round) from None
            raise StaleLedgerError(
                f"another round of dataset {dataset_id!r} was recorded at the same time; "
                "read the history again and recompute"
            ) from None
        return recorded

    def rounds_used(self, agreement_id: str, run_id: str | None = None) -> int:
        """Rounds recorded under ``agreement_id`` (in ``run_id`` only, if given)."""
        query = select(func.count()).where(col(PrivacyLedgerRoundRow.agreement_id) == agreement_id)
        if run_id is not None:
            query = query.where(col(PrivacyLedgerRoundRow.run_id) == run_id)
        with self._read() as session:
            return int(session.exec(query).one())

    def rounds_by_run(self, agreement_id: str) -> dict[str, int]:
        """Rounds recorded under ``agreement_id`` by run, in the order the runs began."""
        query = (
            select(PrivacyLedgerRoundRow.run_id, func.count())
            .where(col(PrivacyLedgerRoundRow.agreement_id) == agreement_id)
            .group_by(col(PrivacyLedgerRoundRow.run_id))
            .order_by(func.min(col(PrivacyLedgerRoundRow.seq)))
        )
        with self._read() as session:
            return {str(run): int(count) for run, count in session.exec(query).all()}

    def last_round_time(self, agreement_id: str) -> datetime | None:
        """When the newest round under ``agreement_id`` was recorded; None if none was."""
        query = (
            select(PrivacyLedgerRoundRow.time)
            .where(col(PrivacyLedgerRoundRow.agreement_id) == agreement_id)
            .order_by(col(PrivacyLedgerRoundRow.seq).desc())
            .limit(1)
        )
        with self._read() as session:
            return session.exec(query).first()

    def total_epsilon(self, dataset_id: str) -> float:
        """The epsilon ``dataset_id`` has spent: that after its newest round, 0.0 if none."""
        query = select(PrivacyLedgerHeadRow.epsilon).where(
            col(PrivacyLedgerHeadRow.dataset_id) == dataset_id
        )
        with self._read() as session:
            found = session.exec(query).one_or_none()
        return 0.0 if found is None else float(found)

    @staticmethod
    def _recorded(session: Session, agreement_id: str, run_id: str, round: int) -> bool:
        query = select(PrivacyLedgerRoundRow.seq).where(
            col(PrivacyLedgerRoundRow.agreement_id) == agreement_id,
            col(PrivacyLedgerRoundRow.run_id) == run_id,
            col(PrivacyLedgerRoundRow.round) == round,
        )
        return session.exec(query).first() is not None


def _round(row: PrivacyLedgerRoundRow) -> LedgerRound:
    return LedgerRound(
        dataset_id=row.dataset_id,
        seq=row.seq,
        agreement_id=row.agreement_id,
        run_id=row.run_id,
        round=row.round,
        sample_rate=row.sample_rate,
        noise_multiplier=row.noise_multiplier,
        steps=row.steps,
        delta=row.delta,
        epsilon_after=row.epsilon_after,
        time=row.time,
    )


def _already(agreement_id: str, run_id: str, round: int) -> RoundAlreadyRecordedError:
    return RoundAlreadyRecordedError(
        f"round {round} of run {run_id!r} under agreement {agreement_id!r} is on the "
        "privacy ledger already; a round is recorded once"
    )


def _check_id(value: object, name: str, limit: int | None = None) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    if limit is not None and len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long; at most {limit} are allowed")


def _check_whole(value: object, name: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
