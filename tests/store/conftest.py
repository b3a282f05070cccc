"""Fixtures for the store tests: one suite, run on SQLite and on PostgreSQL.

The PostgreSQL server and the session's database come from ``tests/conftest.py``;
the database is emptied before every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.store import create_engine, migrate, sqlite_url

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database of the backend the test is parameterised with.

    SQLite: a new file. PostgreSQL: the session's database, emptied (cheaper than a
    new database per test): connections left by an earlier test are ended and the
    ``public`` schema is dropped and made again.
    """
    backend: str = request.param
    if backend == "sqlite":
        return sqlite_url(tmp_path / "state" / "node.db")
    url: str = request.getfixturevalue("postgres_database")
    admin = create_engine(url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        admin.dispose()
    return url


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on an empty, never migrated database (SQLite file or PostgreSQL)."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(empty_engine: sa.Engine) -> sa.Engine:
    """An engine on a fresh, migrated database; parameterised over both backends."""
    migrate(empty_engine)
    return empty_engine
