"""The tables the node's stores keep, as SQLModel classes.

The schema itself is made by the migrations in ``migrations/versions``; a test
compares these classes with a migrated database so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

ID_LENGTH = 128
"""Longest dataset or offer id (see :data:`connector.datasets.ID_PATTERN`)."""


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps ``timestamp with time zone``; SQLite keeps text without a
    zone. Values are converted to UTC before they are written and come back
    timezone-aware in UTC from both.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Convert an aware datetime to UTC; refuse a naive one."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Mark a naive (SQLite) value as UTC; convert an aware one to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _id_type() -> sa.types.TypeEngine[str]:
    # Binary ("C") order on PostgreSQL, as SQLite's default BINARY collation, so ids
    # sort (and paginate) the same on both, whatever the database's locale.
    return sa.String(ID_LENGTH).with_variant(sa.String(ID_LENGTH, collation="C"), "postgresql")


def _time_column() -> Any:
    return Field(sa_column=sa.Column(UtcDateTime(), nullable=False))


class DatasetRow(SQLModel, table=True):
    """One dataset's metadata (table ``dataset``)."""

    __tablename__ = "dataset"

    id: str = Field(sa_column=sa.Column(_id_type(), primary_key=True))
    """Dataset id."""
    title: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """Short title."""
    description: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """Longer description."""
    keywords: list[str] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """Search keywords, a JSON array of strings."""
    format: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    """Storage format: ``csv``, ``parquet`` or ``sql``."""
    columns: list[dict[str, str]] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """Column schema, a JSON array of ``{name, type, description, unit}``."""
    source_path: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """CSV or Parquet file on the node, or empty."""
    source_sql_table: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """SQL table on the node, or empty."""
    create_time: datetime = _time_column()
    """When the dataset was created."""
    update_time: datetime = _time_column()
    """When its metadata last changed."""


class OfferRow(SQLModel, table=True):
    """One offer: an ODRL policy for a dataset (table ``offer``)."""

    __tablename__ = "offer"

    id: str = Field(sa_column=sa.Column(_id_type(), primary_key=True))
    """Offer id, unique on the node."""
    dataset_id: str = Field(
        sa_column=sa.Column(
            _id_type(),
            sa.ForeignKey("dataset.id", name="fk_offer_dataset_id_dataset", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    """The dataset the offer is for; deleting the dataset deletes its offers."""
    policy: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """The ODRL policy (DSP compact JSON-LD)."""
    auto_agree: bool = Field(sa_column=sa.Column(sa.Boolean(), nullable=False))
    """Agree requests that satisfy the policy without the operator."""
    create_time: datetime = _time_column()
    """When the offer was created."""


class RequestRow(SQLModel, table=True):
    """The answer to one mutating request, kept for idempotency (table ``request_record``)."""

    __tablename__ = "request_record"

    request_id: str = Field(sa_column=sa.Column(sa.String(), primary_key=True))
    """The caller's request id (AIP-155)."""
    method: str = Field(sa_column=sa.Column(sa.String(), primary_key=True))
    """The full RPC method name."""
    response: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    """The serialised response sent the first time."""
    create_time: datetime = _time_column()
    """When the response was recorded."""


HASH_LENGTH = 64
"""Length of an audit hash: SHA-256 in lowercase hex."""


class AuditEntryRow(SQLModel, table=True):
    """One entry of the audit log (table ``audit_entry``); see :mod:`connector.audit`.

    Rows are only ever inserted, never updated or deleted.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        sa.UniqueConstraint("hash", name="uq_audit_entry_hash"),
        sa.Index("ix_audit_entry_subject_seq", "subject", "seq"),
    )

    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    """Position in the log: 1, 2, 3 ... without gaps."""
    time: datetime = _time_column()
    """When the entry was appended."""
    kind: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """What happened, e.g. ``negotiation.state``."""
    actor: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """Who did it: a participant id, ``operator`` or ``node``."""
    peer: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The participant on the other side, or empty."""
    subject: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """What it concerns (a negotiation or dataset id), or empty."""
    payload: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    """The details, a JSON object in canonical form."""
    prev_hash: str = Field(sa_column=sa.Column(sa.CHAR(HASH_LENGTH), nullable=False))
    """The hash of the entry before (64 zeros for entry 1)."""
    hash: str = Field(sa_column=sa.Column(sa.CHAR(HASH_LENGTH), nullable=False))
    """This entry's hash over all its other fields."""


class AuditHeadRow(SQLModel, table=True):
    """The newest audit entry's number and hash (table ``audit_head``, one row, id 1).

    Moved in the same transaction as each append, so a log cut short no longer
    reaches its head. The migration creates the row as ``(0, 64 zeros)``.
    """

    __tablename__ = "audit_head"
    __table_args__ = (sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),)

    id: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True, autoincrement=False))
    """Always 1."""
    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    """The newest entry's number; 0 while the log is empty."""
    hash: str = Field(sa_column=sa.Column(sa.CHAR(HASH_LENGTH), nullable=False))
    """The newest entry's hash; 64 zeros while the log is empty."""


class PrivacyLedgerHeadRow(SQLModel, table=True):
    """How many rounds a dataset's privacy ledger holds (table ``privacy_ledger_head``).

    One row per dataset that was ever trained on; moved in the same transaction as
    each round recorded, and locked by it, so rounds on one dataset are recorded one
    after the other. See :mod:`connector.store.ledger`.
    """

    __tablename__ = "privacy_ledger_head"

    dataset_id: str = Field(sa_column=sa.Column(_id_type(), primary_key=True))
    """The dataset."""
    rounds: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    """Rounds recorded for it, over every agreement."""
    epsilon: float = Field(sa_column=sa.Column(sa.Float(), nullable=False))
    """Epsilon after the newest round (at that round's delta)."""
    update_time: datetime = _time_column()
    """When the newest round was recorded."""


class PrivacyLedgerRoundRow(SQLModel, table=True):
    """One round of DP training spent on a dataset (table ``privacy_ledger_round``).

    Rows are only ever inserted. ``seq`` numbers a dataset's rounds 1, 2, 3 ...;
    an (agreement, run, round) is recorded at most once.
    """

    __tablename__ = "privacy_ledger_round"
    __table_args__ = (
        sa.UniqueConstraint(
            "agreement_id", "run_id", "round", name="uq_privacy_ledger_round_agreement_run_round"
        ),
    )

    dataset_id: str = Field(sa_column=sa.Column(_id_type(), primary_key=True))
    """The dataset trained on."""
    seq: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True, autoincrement=False))
    """Position in the dataset's ledger: 1, 2, 3 ... without gaps."""
    agreement_id: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The agreement the round was trained under."""
    run_id: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    """The training run (Flower's run id, as text)."""
    round: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    """The round's number within the (agreement, run), from 1."""
    sample_rate: float = Field(sa_column=sa.Column(sa.Float(), nullable=False))
    """Poisson sampling rate of the round's DP-SGD."""
    noise_multiplier: float = Field(sa_column=sa.Column(sa.Float(), nullable=False))
    """Noise multiplier of the round's DP-SGD."""
    steps: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    """Noisy optimizer steps taken."""
    delta: float = Field(sa_column=sa.Column(sa.Float(), nullable=False))
    """The delta ``epsilon_after`` is computed at."""
    epsilon_after: float = Field(sa_column=sa.Column(sa.Float(), nullable=False))
    """The dataset's epsilon once this round is spent, over every round before it."""
    time: datetime = _time_column()
    """When the round was recorded."""
