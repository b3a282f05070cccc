"""Initial schema: datasets, offers and idempotency records.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[str]:
    # Binary order on PostgreSQL, as SQLite's default, whatever the database locale.
    return sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    """Create the ``dataset``, ``offer`` and ``request_record`` tables."""
    op.create_table(
        "dataset",
        sa.Column("id", _id(), primary_key=True),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("source_path", sa.String(), nullable=False),
        sa.Column("source_sql_table", sa.String(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "offer",
        sa.Column("id", _id(), primary_key=True),
        sa.Column(
            "dataset_id",
            _id(),
            sa.ForeignKey("dataset.id", name="fk_offer_dataset_id_dataset", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("auto_agree", sa.Boolean(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_offer_dataset_id", "offer", ["dataset_id"])
    op.create_table(
        "request_record",
        sa.Column("request_id", sa.String(), primary_key=True),
        sa.Column("method", sa.String(), primary_key=True),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("request_record")
    op.drop_index("ix_offer_dataset_id", table_name="offer")
    op.drop_table("offer")
    op.drop_table("dataset")
