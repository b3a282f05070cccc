"""Contract negotiations.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[str]:
    # Binary order on PostgreSQL, as SQLite's default, whatever the database locale.
    return sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    """Create the ``negotiation`` table and its indexes."""
    op.create_table(
        "negotiation",
        sa.Column("id", _id(), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("consumer_pid", sa.String(), nullable=False),
        sa.Column("provider_pid", sa.String(), nullable=False),
        sa.Column("counterparty_id", sa.String(), nullable=False),
        sa.Column("counterparty_address", sa.String(), nullable=False),
        sa.Column("dataset_id", sa.String(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=False),
        sa.Column("offer", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.Column("agreement", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("signatures", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("pending", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
    )
    op.create_index("ix_negotiation_role_consumer_pid", "negotiation", ["role", "consumer_pid"])
    op.create_index("ix_negotiation_role_provider_pid", "negotiation", ["role", "provider_pid"])
    op.create_index("ix_negotiation_create_time_id", "negotiation", ["create_time", "id"])
    op.create_index("ix_negotiation_next_attempt_at", "negotiation", ["next_attempt_at"])


def downgrade() -> None:
    """Drop the table (and with it every negotiation)."""
    op.drop_index("ix_negotiation_next_attempt_at", table_name="negotiation")
    op.drop_index("ix_negotiation_create_time_id", table_name="negotiation")
    op.drop_index("ix_negotiation_role_provider_pid", table_name="negotiation")
    op.drop_index("ix_negotiation_role_consumer_pid", table_name="negotiation")
    op.drop_table("negotiation")
