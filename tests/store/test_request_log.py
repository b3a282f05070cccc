"""The request log suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from connector.clock import FixedClock
from connector.store import SqlRequestLog

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
METHOD = "/connector.v1.DatasetManagementService/CreateDataset"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def log(engine: sa.Engine, clock: FixedClock) -> SqlRequestLog:
    return SqlRequestLog(engine, clock)


def test_recall_of_an_unknown_request_is_none(log: SqlRequestLog) -> None:
    assert log.recall(METHOD, "r1") is None


def test_remember_then_recall(log: SqlRequestLog) -> None:
    # Prepare
    response = bytes(range(256)) * 1024

    # Execute
    remembered = log.remember(METHOD, "r1", response)

    # Assert
    assert remembered == response
    assert log.recall(METHOD, "r1") == response


def test_duplicate_remember_returns_the_first_response(log: SqlRequestLog) -> None:
    log.remember(METHOD, "r1", b"first")

    again = log.remember(METHOD, "r1", b"second")

    assert again == b"first"
    assert log.recall(METHOD, "r1") == b"first"


def test_the_key_is_method_and_request_id(log: SqlRequestLog) -> None:
    log.remember(METHOD, "r1", b"create")
    log.remember("/connector.v1.DatasetManagementService/DeleteDataset", "r1", b"delete")
    log.remember(METHOD, "r2", b"other")

    assert log.recall(METHOD, "r1") == b"create"
    assert log.recall("/connector.v1.DatasetManagementService/DeleteDataset", "r1") == b"delete"
    assert log.recall(METHOD, "r2") == b"other"


def test_empty_response_is_remembered(log: SqlRequestLog) -> None:
    log.remember(METHOD, "r1", b"")

    assert log.recall(METHOD, "r1") == b""


def test_concurrent_duplicates_all_get_one_response(log: SqlRequestLog) -> None:
    # Execute
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda n: log.remember(METHOD, "r1", f"{n}".encode()), range(8)))

    # Assert
    assert len(set(answers)) == 1
    assert log.recall(METHOD, "r1") == answers[0]


def test_purge_forgets_only_older_records(log: SqlRequestLog, clock: FixedClock) -> None:
    # Prepare
    log.remember(METHOD, "old-1", b"a")
    log.remember(METHOD, "old-2", b"b")
    clock.advance(timedelta(hours=2))
    log.remember(METHOD, "new", b"c")

    # Execute
    purged = log.purge_older_than(T0 + timedelta(hours=1))

    # Assert
    assert purged == 2
    assert log.recall(METHOD, "old-1") is None
    assert log.recall(METHOD, "old-2") is None
    assert log.recall(METHOD, "new") == b"c"
    assert log.purge_older_than(T0 + timedelta(hours=1)) == 0


def test_purge_cutoff_is_an_instant_in_any_zone(log: SqlRequestLog) -> None:
    log.remember(METHOD, "r1", b"a")
    just_after = (T0 + timedelta(seconds=1)).astimezone(datetime.now().astimezone().tzinfo or UTC)

    assert log.purge_older_than(just_after) == 1


def test_purge_refuses_a_naive_cutoff(log: SqlRequestLog) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        log.purge_older_than(datetime(2025, 1, 1))
