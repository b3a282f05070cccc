"""Migrations: idempotent, at the head, and equal to the SQLModel tables, on both backends."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from connector.datasets import Dataset, DataSource
from connector.store import (
    SqlDatasetStore,
    create_engine,
    head_revision,
    migrate,
    schema_revision,
    sqlite_url,
)
from connector.store import tables as _tables  # noqa: F401  (registers the tables)


def test_a_new_database_has_no_revision(empty_engine: sa.Engine) -> None:
    assert schema_revision(empty_engine) is None


def test_migrate_brings_the_schema_to_the_head(empty_engine: sa.Engine) -> None:
    migrate(empty_engine)

    assert schema_revision(empty_engine) == head_revision() == "0004"
    assert {
        "dataset",
        "offer",
        "request_record",
        "audit_entry",
        "audit_head",
        "negotiation",
        "privacy_ledger_head",
        "privacy_ledger_round",
    } <= set(sa.inspect(empty_engine).get_table_names())


def test_migrate_again_changes_nothing(engine: sa.Engine) -> None:
    # Prepare
    store = SqlDatasetStore(engine)
    created = store.create_dataset(Dataset("air", "Air", "csv", DataSource(path="/a.csv")))

    # Execute
    migrate(engine)
    migrate(engine)

    # Assert
    assert schema_revision(engine) == head_revision()
    assert store.get_dataset("air") == created


def test_migrated_schema_equals_the_tables(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)

    assert differences == []


def test_migrated_collations_equal_the_tables(engine: sa.Engine) -> None:
    # Alembic's comparison ignores collations; ids must sort the same on every backend.
    inspector = sa.inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue  # another store's table, checked by the comparison above
        reflected = {column["name"]: column["type"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            wanted = getattr(column.type.dialect_impl(engine.dialect), "collation", None)
            found = getattr(reflected[column.name], "collation", None)
            assert (table.name, column.name, found) == (table.name, column.name, wanted)


def test_concurrent_migrations_do_not_collide(database_url: str) -> None:
    # Prepare: two nodes sharing one database start at the same moment.
    engines = [create_engine(database_url) for _ in range(3)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            migrate(engine)
        except BaseException as error:  # reported below
            errors.append(error)

    # Execute
    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Assert
    try:
        assert errors == []
        assert all(schema_revision(engine) == head_revision() for engine in engines)
    finally:
        for engine in engines:
            engine.dispose()


def test_sqlite_uses_the_write_ahead_log(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "deep" / "dir" / "node.db"
    engine = create_engine(sqlite_url(path))

    # Execute
    try:
        migrate(engine)
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()

    # Assert
    assert path.is_file()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 5000,
        "synchronous": 1,
    }
