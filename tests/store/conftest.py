"""Fixtures for the store tests: one suite, run on SQLite and on PostgreSQL.

PostgreSQL comes from ``HANSE_TEST_POSTGRES_URL`` (CI starts one server with
``dev/postgres.sh start DIR`` and exports its URL); without it, a throw-away
server is started here with the same script for the whole session. The session
gets a database of its own on it, emptied before every test. Where no
PostgreSQL binaries exist the PostgreSQL tests are skipped, unless ``CI=true``:
CI must test both backends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from connector.store import create_engine, migrate, sqlite_url

REPO = Path(__file__).resolve().parents[2]
POSTGRES_SCRIPT = REPO / "dev" / "postgres.sh"
POSTGRES_URL_ENV = "HANSE_TEST_POSTGRES_URL"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _postgres_binaries() -> bool:
    if os.environ.get("PG_BIN"):
        return True
    if any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return True
    return shutil.which("initdb") is not None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for the session (any database on it may be used)."""
    from_env = os.environ.get(POSTGRES_URL_ENV)
    if from_env:
        yield from_env
        return
    if not _postgres_binaries():
        message = (
            f"no PostgreSQL: set {POSTGRES_URL_ENV} or install PostgreSQL "
            "(initdb, pg_ctl under /usr/lib/postgresql/*/bin, in PATH or in $PG_BIN)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must test both backends", pytrace=False)
        pytest.skip(message)
    # Not pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user, who must reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="hanse-pg-"))
    try:
        started = subprocess.run(
            [str(POSTGRES_SCRIPT), "start", str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if started.returncode != 0:
            pytest.fail(f"dev/postgres.sh start failed:\n{started.stderr}", pytrace=False)
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            [str(POSTGRES_SCRIPT), "stop", str(directory)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[str]:
    """URL of a database of this test session's own on the PostgreSQL server."""
    server = make_url(postgres_url)
    server_url = server.render_as_string(hide_password=False)
    name = f"test_{uuid.uuid4().hex}"
    admin = create_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" {_database_options(connection)}')
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def _database_options(admin: sa.Connection) -> str:
    """A natural-language collation for the test database, where the server has ICU.

    Production databases are rarely in the C locale; ids must still sort (and
    paginate) as on SQLite, so the tests use a collation where they would not.
    """
    icu = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    probe = f"test_probe_{uuid.uuid4().hex}"
    try:
        admin.exec_driver_sql(f'CREATE DATABASE "{probe}" {icu}')
    except DBAPIError:
        return ""
    admin.exec_driver_sql(f'DROP DATABASE "{probe}"')
    return icu


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
