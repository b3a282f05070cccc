"""Alembic environment of the node's schema.

Run through :func:`connector.store.engine.migrate`, which passes an open
connection (inside a transaction) as ``config.attributes["connection"]``; the
``alembic`` command line is not wired up. To change the schema, add
``versions/000N_what.py`` (copy the newest one, set ``revision`` and
``down_revision``) and write its operations by hand; ``render_as_batch`` makes
``op.batch_alter_table`` work on SQLite. ``tests/store/test_migrations.py``
checks that the migrated schema equals the SQLModel tables in ``tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

import connector.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    """Run the migrations on the connection :func:`migrate` passed in."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, sa.Connection):
        raise RuntimeError(
            "run migrations through connector.store.engine.migrate(engine), "
            "not the alembic command line"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; use migrate(engine)")
run_migrations_online()
