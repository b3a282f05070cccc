"""Governed training: the privacy ledger of each dataset.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[str]:
    # Binary order on PostgreSQL, as SQLite's default, whatever the database locale.
    return sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    """Create ``privacy_ledger_head`` and ``privacy_ledger_round``."""
    op.create_table(
        "privacy_ledger_head",
        sa.Column("dataset_id", _id(), primary_key=True),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "privacy_ledger_round",
        sa.Column("dataset_id", _id(), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("agreement_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("noise_multiplier", sa.Float(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("epsilon_after", sa.Float(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "agreement_id", "run_id", "round", name="uq_privacy_ledger_round_agreement_run_round"
        ),
    )


def downgrade() -> None:
    """Drop both tables (and with them every dataset's privacy ledger)."""
    op.drop_table("privacy_ledger_round")
    op.drop_table("privacy_ledger_head")
