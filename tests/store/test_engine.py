"""Engines: which URLs are accepted, and what a bad or unreachable one says."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from connector.store import StoreError, create_engine, migrate, schema_revision, sqlite_url


def test_postgresql_url_uses_psycopg() -> None:
    engine = create_engine("postgresql://hanse:secret@db.example:5432/hanse")

    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.url.database == "hanse"
    assert engine.pool._pre_ping


def test_psycopg_url_is_kept() -> None:
    engine = create_engine("postgresql+psycopg://hanse@db.example/hanse")

    assert engine.url.drivername == "postgresql+psycopg"


def test_sqlite_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    url = sqlite_url(Path("state/node.db"))

    assert url == f"sqlite:///{tmp_path}/state/node.db"
    assert create_engine(url).url.database == f"{tmp_path}/state/node.db"


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("mysql://hanse:secret@db.example/hanse", "use sqlite:///PATH"),
        ("postgresql+psycopg2://hanse:secret@db.example/hanse", "use postgresql://"),
        ("sqlite://", "use sqlite:///PATH"),
        ("sqlite:///:memory:", "use sqlite:///PATH"),
        ("not a url", "use sqlite:///PATH"),
    ],
)
def test_unsupported_urls_are_refused(url: str, advice: str) -> None:
    with pytest.raises(StoreError) as error:
        create_engine(url)

    assert "secret" not in str(error.value)
    assert advice in str(error.value)


def test_unwritable_sqlite_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(StoreError, match="writable path"):
        create_engine(sqlite_url(blocker / "node.db"))


def test_unreachable_postgresql_names_the_url_without_password() -> None:
    # Prepare: a port nothing listens on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_engine(f"postgresql://hanse:secret@127.0.0.1:{port}/hanse?connect_timeout=2")

    # Execute
    with pytest.raises(StoreError) as migrating:
        migrate(engine)
    with pytest.raises(StoreError) as reading:
        schema_revision(engine)

    # Assert
    for error in (migrating, reading):
        message = str(error.value)
        assert f"postgresql+psycopg://hanse:***@127.0.0.1:{port}/hanse" in message
        assert "secret" not in message
        assert "check that the server is running" in message
