"""Shared fixtures: node clusters on loopback, DSP 2025-1 conformance schemas, PostgreSQL.

PostgreSQL comes from ``HANSE_TEST_POSTGRES_URL`` (CI starts one server with
``dev/postgres.sh start DIR`` and exports its URL); without it, a throw-away server
is started with the same script for the whole session. Where no PostgreSQL binaries
exist the PostgreSQL tests are skipped, unless ``CI=true``: CI tests both backends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from connector.store import create_engine
from tests.harness import Cluster

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HANSE_SHARED_DIR", REPO.parent / "shared"))
DSP_DIR = SHARED / "dsp-2025-1"
DSP_BASE = "https://w3id.org/dspace/2025/1/"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A federation PKI; every node started from it is stopped at the end."""
    created = Cluster(tmp_path)
    yield created
    for node in created.processes:
        code = node.stop()
        assert code == 0, f"node exited with {code} on SIGTERM:\n{node.log()}"


@pytest.fixture(scope="session")
def dsp_dir() -> Path:
    """The DSP 2025-1 schemas, examples and spec text from ../shared."""
    if not DSP_DIR.is_dir():
        message = f"DSP 2025-1 conformance fixtures not found at {DSP_DIR} (../shared missing)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return DSP_DIR


@pytest.fixture(scope="session")
def dsp_validate(dsp_dir: Path) -> Any:
    """``dsp_validate(document, "catalog/catalog-schema.json")`` raises on a violation.

    Every ``https://w3id.org/dspace/2025/1/...`` reference resolves to the local file.
    """
    from jsonschema import Draft201909Validator
    from referencing import Registry, Resource

    resources = []
    for path in dsp_dir.rglob("*-schema.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = DSP_BASE + path.relative_to(dsp_dir).as_posix()
        resources.append((uri, Resource.from_contents(contents)))
        if "$id" in contents and contents["$id"] != uri:
            resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)

    def validate(document: Any, schema: str) -> None:
        contents = json.loads((dsp_dir / schema).read_text(encoding="utf-8"))
        Draft201909Validator(contents, registry=registry).validate(document)

    return validate


POSTGRES_SCRIPT = REPO / "dev" / "postgres.sh"
POSTGRES_URL_ENV = "HANSE_TEST_POSTGRES_URL"


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


@pytest.fixture
def fresh_postgres_database(postgres_url: str) -> Iterator[str]:
    """URL of a new, empty database for one test (dropped afterwards)."""
    server = make_url(postgres_url)
    name = f"node_{uuid.uuid4().hex}"
    admin = create_engine(server.render_as_string(hide_password=False)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
