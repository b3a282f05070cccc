"""Tests for AIP-155 request ids (connector.services.idempotency)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from connector.errors import ConnectorError, already_exists
from connector.services.idempotency import MAX_REQUEST_ID, once
from connector.store import SqlRequestLog, create_engine, migrate, sqlite_url
from connector.v1 import dataset_pb2

METHOD = "/connector.v1.DatasetManagementService/CreateDataset"


class _Effect:
    """A counted effect whose answer names the call that produced it."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> dataset_pb2.Dataset:
        self.runs += 1
        return dataset_pb2.Dataset(id=f"run-{self.runs}", title="Pedestrian counts")


@pytest.fixture
def log(tmp_path: Path) -> SqlRequestLog:
    engine = create_engine(sqlite_url(tmp_path / "x.db"))
    migrate(engine)
    return SqlRequestLog(engine)


def test_without_request_id_the_effect_runs_each_time(log: SqlRequestLog) -> None:
    # Prepare
    effect = _Effect()

    # Execute
    first = once(log, METHOD, "", dataset_pb2.Dataset, effect)
    second = once(log, METHOD, "", dataset_pb2.Dataset, effect)

    # Assert
    assert effect.runs == 2
    assert [first.id, second.id] == ["run-1", "run-2"]
    assert log.recall(METHOD, "") is None


def test_same_request_id_runs_the_effect_once_and_replays_its_answer(log: SqlRequestLog) -> None:
    # Prepare
    effect = _Effect()
    first = once(log, METHOD, "req-1", dataset_pb2.Dataset, effect)

    # Execute
    second = once(log, METHOD, "req-1", dataset_pb2.Dataset, effect)

    # Assert
    assert effect.runs == 1
    assert first == second
    assert second.id == "run-1"
    assert log.recall(METHOD, "req-1") == first.SerializeToString()


def test_replayed_answer_survives_a_new_log_on_the_same_database(tmp_path: Path) -> None:
    # Prepare
    url = sqlite_url(tmp_path / "x.db")
    engine = create_engine(url)
    migrate(engine)
    effect = _Effect()
    first = once(SqlRequestLog(engine), METHOD, "req-1", dataset_pb2.Dataset, effect)
    engine.dispose()

    # Execute
    reopened = SqlRequestLog(create_engine(url))
    second = once(reopened, METHOD, "req-1", dataset_pb2.Dataset, effect)

    # Assert
    assert effect.runs == 1
    assert second == first


def test_different_request_ids_or_methods_run_again(log: SqlRequestLog) -> None:
    # Prepare
    effect = _Effect()
    once(log, METHOD, "req-1", dataset_pb2.Dataset, effect)

    # Execute
    other_id = once(log, METHOD, "req-2", dataset_pb2.Dataset, effect)
    other_method = once(log, METHOD + "Again", "req-1", dataset_pb2.Dataset, effect)

    # Assert
    assert effect.runs == 3
    assert [other_id.id, other_method.id] == ["run-2", "run-3"]


def test_failed_effect_is_not_recorded_and_a_retry_runs_again(log: SqlRequestLog) -> None:
    # Prepare
    attempts: list[str] = []

    def failing() -> dataset_pb2.Dataset:
        attempts.append("fail")
        raise already_exists("DATASET_ALREADY_EXISTS", "dataset 'counts' exists")

    def succeeding() -> dataset_pb2.Dataset:
        attempts.append("ok")
        return dataset_pb2.Dataset(id="counts")

    with pytest.raises(ConnectorError) as raised:
        once(log, METHOD, "req-1", dataset_pb2.Dataset, failing)

    # Execute
    retried = once(log, METHOD, "req-1", dataset_pb2.Dataset, succeeding)

    # Assert
    assert raised.value.reason == "DATASET_ALREADY_EXISTS"
    assert attempts == ["fail", "ok"]
    assert retried.id == "counts"
    assert log.recall(METHOD, "req-1") == retried.SerializeToString()


def test_request_id_at_the_limit_is_accepted(log: SqlRequestLog) -> None:
    # Prepare
    effect = _Effect()
    request_id = "r" * MAX_REQUEST_ID

    # Execute
    once(log, METHOD, request_id, dataset_pb2.Dataset, effect)
    once(log, METHOD, request_id, dataset_pb2.Dataset, effect)

    # Assert
    assert effect.runs == 1


def test_too_long_request_id_is_refused_without_running_the_effect(log: SqlRequestLog) -> None:
    # Prepare
    effect = _Effect()
    request_id = "r" * (MAX_REQUEST_ID + 1)

    # Execute
    with pytest.raises(ConnectorError) as raised:
        once(log, METHOD, request_id, dataset_pb2.Dataset, effect)

    # Assert
    error = raised.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert [v.field for v in error.violations] == ["request_id"]
    assert str(MAX_REQUEST_ID) in error.message
    assert effect.runs == 0
    assert log.recall(METHOD, request_id) is None
