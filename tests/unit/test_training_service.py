"""Tests for the training management API (node.training.service) over a real aggregator.

The servicer runs in a real gRPC server with the management API's error interceptor,
over the lead's Aggregator, a migrated SQLite store and agreements signed with real
certificates. Refused runs must say why and leave nothing behind: no SuperLink, no
run folder, nothing on the record. No Flower process is ever started here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from connector.errors import ConnectorError, from_rpc_error
from connector.negotiation.states import NegotiationState
from connector.v1 import training_management_pb2 as pb
from connector.v1 import training_management_pb2_grpc
from node.training.service import city_progress, run_request
from tests.unit.training_support import (
    CITY1,
    CITY2,
    TASK,
    Researcher,
    make_researcher,
    management_server,
    names,
    ok,
    refused,
    request_id,
    round_event,
    task_hash,
    write_completed_run,
)

TIMEOUT = 10


@pytest.fixture
def researcher(tmp_path: Path) -> Researcher:
    return make_researcher(tmp_path)


@pytest.fixture
def stub(
    researcher: Researcher,
) -> Iterator[training_management_pb2_grpc.TrainingManagementServiceStub]:
    with management_server(researcher) as served, grpc.insecure_channel(served.address) as channel:
        yield training_management_pb2_grpc.TrainingManagementServiceStub(channel)


Stub = training_management_pb2_grpc.TrainingManagementServiceStub


def refusal(call: Any, request: Any, timeout: float = TIMEOUT) -> ConnectorError:
    """The error a unary call fails with."""
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=timeout)
    return from_rpc_error(raised.value)


def start_request(*agreements: str, rounds: int = 2, **fields: Any) -> pb.StartTrainingRequest:
    return pb.StartTrainingRequest(
        task_id=fields.pop("task_id", TASK),
        agreement_ids=list(agreements),
        rounds=rounds,
        request_id=request_id(),
        **fields,
    )


def watch(
    stub: Stub, run_id: str, offset: int = 0, timeout: float = TIMEOUT
) -> list[pb.WatchTrainingResponse]:
    return list(
        stub.WatchTraining(pb.WatchTrainingRequest(run_id=run_id, offset=offset), timeout=timeout)
    )


# StartTraining refusals: a clear error, and nothing registered, started or recorded.


def test_an_unknown_agreement_is_not_found_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Execute
    error = refusal(stub.StartTraining, start_request("urn:uuid:nowhere"))

    # Assert
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "AGREEMENT_NOT_FOUND"
    assert "no agreement urn:uuid:nowhere as consumer" in error.message
    assert "hanse contract list" in error.message
    assert researcher.nothing_started()


def test_an_agreement_not_finalized_is_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    agreement = researcher.agreement("pending", state=NegotiationState.REQUESTED)

    # Execute
    error = refusal(stub.StartTraining, start_request(agreement))

    # Assert
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TRAINING_REFUSED"
    assert error.message == f"agreement {agreement} is REQUESTED, not FINALIZED"
    assert researcher.nothing_started()


def test_an_agreement_for_another_task_is_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    agreement = researcher.agreement(
        "other-task", usage={"purpose": "forecasting", "task": {"id": "air-quality"}}
    )

    # Execute
    error = refusal(stub.StartTraining, start_request(agreement))

    # Assert
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TRAINING_REFUSED"
    assert error.message == f"agreement {agreement} covers task air-quality, not {TASK}"
    assert researcher.nothing_started()


def test_an_agreement_for_another_task_hash_is_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    agreement = researcher.agreement(
        "old-hash", usage={"purpose": "x", "task": {"id": TASK, "hash": "sha256:" + "0" * 64}}
    )

    # Execute
    error = refusal(stub.StartTraining, start_request(agreement))

    # Assert
    assert error.reason == "TRAINING_REFUSED"
    assert f"this node's task has {task_hash()}" in error.message
    assert researcher.nothing_started()


def test_more_rounds_than_the_agreement_allows_are_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    agreement = researcher.agreement(
        "three-rounds",
        usage={"purpose": "x", "task": {"id": TASK, "hash": task_hash()}, "max_rounds": 3},
    )

    # Execute
    error = refusal(stub.StartTraining, start_request(agreement, rounds=4))

    # Assert
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TRAINING_REFUSED"
    assert error.message == f"agreement {agreement} allows 3 rounds, not 4"
    assert researcher.nothing_started()


@pytest.mark.parametrize(
    ("cities", "min_nodes", "expected"),
    [
        (1, 0, "and the run names 1; name the agreements of at least 2 cities"),
        (2, 1, "and the run asks for at least 1; start it with --min-nodes 2 or more"),
    ],
)
def test_fewer_cities_per_round_than_the_agreement_allows_are_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub, cities: int, min_nodes: int, expected: str
) -> None:
    # Prepare: the first city agreed to rounds of at least 2 cities.
    usage = {"purpose": "x", "task": {"id": TASK, "hash": task_hash()}, "min_participants": 2}
    first = researcher.agreement("two-per-round", usage=usage)
    others = [researcher.agreement("other", CITY2)] if cities == 2 else []

    # Execute
    error = refusal(stub.StartTraining, start_request(first, *others, min_nodes=min_nodes))

    # Assert
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TRAINING_REFUSED"
    assert error.message == (
        f"agreement {first} allows training only in rounds of at least 2 cities {expected}"
    )
    assert researcher.nothing_started()


def test_an_agreement_without_valid_signatures_is_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare: the agreement was never signed.
    agreement = researcher.agreement("unsigned", signed=False)

    # Execute
    error = refusal(stub.StartTraining, start_request(agreement))

    # Assert
    assert error.reason == "TRAINING_REFUSED"
    assert error.message.startswith(f"agreement {agreement} fails verification: ")
    assert "no provider signature" in error.message
    assert researcher.nothing_started()


def test_two_agreements_with_one_city_are_refused_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    first = researcher.agreement("first")
    second = researcher.agreement("second")

    # Execute
    error = refusal(stub.StartTraining, start_request(first, second))

    # Assert
    assert error.reason == "TRAINING_REFUSED"
    assert f"are both with {CITY1}; name one agreement per city" in error.message
    assert researcher.nothing_started()


def test_settings_the_run_spec_refuses_are_invalid_after_verified_agreements(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare: two valid, signed agreements pass every check, but 3 > 2 cities.
    agreements = [researcher.agreement("a", CITY1), researcher.agreement("b", CITY2)]

    # Execute
    error = refusal(stub.StartTraining, start_request(*agreements, min_nodes=3))

    # Assert
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert "min nodes must be between 1 and the number of agreements (2), not 3" in error.message
    assert researcher.nothing_started()


def test_an_unknown_optimizer_is_invalid_even_with_verified_agreements(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare: two valid, signed agreements that would pass every check.
    agreements = [researcher.agreement("a", CITY1), researcher.agreement("b", CITY2)]

    # Execute
    error = refusal(stub.StartTraining, start_request(*agreements, optimizer="lion"))

    # Assert
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "unknown optimizer 'lion'; choose one of sgd, adam"
    assert [v.field for v in error.violations] == ["optimizer"]
    assert researcher.nothing_started()


@pytest.mark.parametrize(("asked", "chosen"), [("", "sgd"), ("sgd", "sgd"), ("adam", "adam")])
def test_the_requested_optimizer_is_what_the_aggregator_is_asked_for(
    asked: str, chosen: str
) -> None:
    # Execute
    request = run_request(start_request("urn:uuid:a", optimizer=asked))

    # Assert
    assert request.optimizer == chosen


def test_a_task_not_installed_is_not_found_and_nothing_starts(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    agreement = researcher.agreement("a")

    # Execute
    error = refusal(stub.StartTraining, start_request(agreement, task_id="no-such-task"))

    # Assert
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "TASK_NOT_FOUND"
    assert "no-such-task" in error.message
    assert researcher.nothing_started()


def test_a_node_that_is_not_an_aggregator_refuses_and_starts_nothing(tmp_path: Path) -> None:
    # Prepare: a valid, signed agreement, but aggregator.enabled is false.
    researcher = make_researcher(tmp_path, enabled=False)
    agreement = researcher.agreement("a")

    # Execute
    with management_server(researcher) as served, grpc.insecure_channel(served.address) as channel:
        error = refusal(
            training_management_pb2_grpc.TrainingManagementServiceStub(channel).StartTraining,
            start_request(agreement),
        )

    # Assert
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TRAINING_REFUSED"
    assert "not an aggregator; set aggregator.enabled: true in its config" in error.message
    assert researcher.nothing_started()


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"task_id": ""}, "task_id", "name the task"),
        ({"agreements": ()}, "agreement_ids", "name at least one agreement"),
        ({"rounds": 0}, "rounds", "rounds must be 1 or more, not 0"),
        ({"strategy": "median"}, "strategy", "unknown strategy 'median'; choose one of fedavg"),
        ({"optimizer": "rmsprop"}, "optimizer", "unknown optimizer 'rmsprop'; choose one of sgd"),
        ({"optimizer": "ADAM"}, "optimizer", "unknown optimizer 'ADAM'; choose one of sgd, adam"),
        ({"epsilon": -1.0}, "epsilon", "epsilon must be 0 (no cap) or positive, not -1.0"),
        ({"epsilon": float("nan")}, "epsilon", "epsilon must be 0 (no cap) or positive"),
        ({"min_nodes": -1}, "min_nodes", "min_nodes must be 0 (all cities) or positive"),
        ({"batch_size": -8}, "batch_size", "batch_size must be 0 (default 64) or positive"),
        ({"learning_rate": float("inf")}, "learning_rate", "learning_rate must be"),
    ],
    ids=[
        "no-task",
        "no-agreement",
        "no-rounds",
        "unknown-strategy",
        "unknown-optimizer",
        "optimizer-in-capitals",
        "negative-epsilon",
        "nan-epsilon",
        "negative-min-nodes",
        "negative-batch-size",
        "infinite-learning-rate",
    ],
)
def test_malformed_start_requests_name_the_field_and_start_nothing(
    researcher: Researcher, stub: Stub, fields: dict[str, Any], field: str, text: str
) -> None:
    # Prepare
    settings = dict(fields)
    agreements = settings.pop("agreements", ("urn:uuid:any",))
    request = start_request(*agreements, **settings)

    # Execute
    error = refusal(stub.StartTraining, request)

    # Assert
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert text in error.message
    assert [v.field for v in error.violations] == [field]
    assert researcher.nothing_started()


# GetTraining and ListTrainings


def test_get_shows_a_completed_run_with_each_citys_last_outcome(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    cities = {CITY1: "urn:uuid:agreement-a", CITY2: "urn:uuid:agreement-b"}
    writer = researcher.record_run("17", cities, min_aggregate=2)
    write_completed_run(writer, CITY1, CITY2)

    # Execute
    training = stub.GetTraining(pb.GetTrainingRequest(run_id="17"), timeout=TIMEOUT).training

    # Assert
    assert training.run_id == "17"
    assert training.state == pb.TRAINING_STATE_COMPLETED
    assert (training.task_id, training.task_hash) == (TASK, task_hash())
    assert (training.rounds, training.rounds_done) == (2, 2)
    assert (training.strategy, training.min_nodes, training.min_aggregate) == ("fedprox", 2, 2)
    assert training.event_count == 6
    assert training.create_time.ToJsonString() == "2026-03-01T12:00:00Z"
    folder = Path(training.folder)
    assert training.model_path == str(folder / "model.pt")
    assert training.metrics_path == str(folder / "metrics.json")
    first, second = training.cities
    assert (first.participant_id, first.agreement_id) == (CITY1, "urn:uuid:agreement-a")
    assert first.state == pb.TRAINING_CITY_STATE_OK
    assert (first.last_round, first.last_phase) == (2, "evaluate")
    assert dict(first.metrics) == {"train_loss": 0.25, "evaluate_mae": 0.125}
    assert first.update_bytes == 2048
    assert second.state == pb.TRAINING_CITY_STATE_FAILED
    assert (second.last_round, second.last_phase) == (2, "train")
    assert second.error == "the agreement has expired"
    assert dict(second.metrics) == {}


@pytest.mark.parametrize(("recorded", "shown"), [("adam", "adam"), ("sgd", "sgd"), (None, "sgd")])
def test_get_shows_the_runs_optimizer(
    researcher: Researcher, stub: Stub, recorded: str | None, shown: str
) -> None:
    # Prepare: a run whose spec.json names an optimizer, or none (recorded before the
    # optimizer was a setting, so its cities trained with SGD).
    writer = researcher.record_run("21", {CITY1: "urn:uuid:agreement-a"})
    spec_file = writer.path.parent / "spec.json"
    saved = json.loads(spec_file.read_text())
    saved["spec"].pop("hanse-optimizer")
    if recorded is not None:
        saved["spec"]["hanse-optimizer"] = recorded
    spec_file.write_text(json.dumps(saved))

    # Execute
    training = stub.GetTraining(pb.GetTrainingRequest(run_id="21"), timeout=TIMEOUT).training

    # Assert
    assert training.optimizer == shown


def test_get_shows_a_failed_run_with_its_reason(researcher: Researcher, stub: Stub) -> None:
    # Prepare
    writer = researcher.record_run("5", {CITY1: "urn:uuid:a"})
    writer.write("start", spec={})
    writer.write("end", status="failed", reason="RuntimeError: no city replied")

    # Execute
    training = stub.GetTraining(pb.GetTrainingRequest(run_id="5"), timeout=TIMEOUT).training

    # Assert
    assert training.state == pb.TRAINING_STATE_FAILED
    assert training.reason == "RuntimeError: no city replied"
    assert (training.model_path, training.metrics_path) == ("", "")
    assert training.cities[0].state == pb.TRAINING_CITY_STATE_WAITING


def test_get_of_an_unknown_run_is_not_found(researcher: Researcher, stub: Stub) -> None:
    # Execute
    error = refusal(stub.GetTraining, pb.GetTrainingRequest(run_id="404"))

    # Assert
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "TRAINING_NOT_FOUND"
    assert error.message == "this node has no training run 404; see `hanse train list`"


def test_get_without_a_run_id_names_the_field(stub: Stub) -> None:
    error = refusal(stub.GetTraining, pb.GetTrainingRequest())

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == ["run_id"]


def test_list_is_newest_first_and_pages(researcher: Researcher, stub: Stub) -> None:
    # Prepare
    for run_id, day in (("1", "01"), ("2", "03"), ("3", "02")):
        researcher.record_run(run_id, {CITY1: "urn:uuid:a"}, created=f"2026-03-{day}T00:00:00Z")

    # Execute
    everything = stub.ListTrainings(pb.ListTrainingsRequest(), timeout=TIMEOUT)
    first = stub.ListTrainings(pb.ListTrainingsRequest(page_size=2), timeout=TIMEOUT)
    rest = stub.ListTrainings(
        pb.ListTrainingsRequest(page_size=2, page_token=first.next_page_token), timeout=TIMEOUT
    )

    # Assert
    assert names(everything.trainings) == ["2", "3", "1"]
    assert everything.next_page_token == ""
    assert names(first.trainings) == ["2", "3"]
    assert names(rest.trainings) == ["1"]
    assert rest.next_page_token == ""
    assert all(t.state == pb.TRAINING_STATE_RUNNING for t in everything.trainings)


def test_list_of_a_node_without_runs_is_empty(stub: Stub) -> None:
    listed = stub.ListTrainings(pb.ListTrainingsRequest(), timeout=TIMEOUT)

    assert list(listed.trainings) == []


def test_list_refuses_a_foreign_page_token(stub: Stub) -> None:
    error = refusal(stub.ListTrainings, pb.ListTrainingsRequest(page_token="bm90LWEtdG9rZW4"))

    assert error.reason == "PAGE_TOKEN_INVALID"


# WatchTraining


def test_watch_streams_every_event_of_an_ended_run_then_closes(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    write_completed_run(researcher.record_run("8", {CITY1: "a", CITY2: "b"}), CITY1, CITY2)

    # Execute
    responses = watch(stub, "8")

    # Assert
    events = [json.loads(r.event_json) for r in responses]
    assert [r.index for r in responses] == [0, 1, 2, 3, 4, 5]
    assert [e["event"] for e in events] == ["start", "round", "round", "round", "round", "end"]
    assert events[1]["cities"][CITY2] == {"ok": False, "error": "the agreement has expired"}
    assert responses[-1].training.state == pb.TRAINING_STATE_COMPLETED


def test_watch_resumes_from_an_offset(researcher: Researcher, stub: Stub) -> None:
    write_completed_run(researcher.record_run("8", {CITY1: "a", CITY2: "b"}), CITY1, CITY2)

    responses = watch(stub, "8", offset=4)

    assert [r.index for r in responses] == [4, 5]
    assert json.loads(responses[-1].event_json)["event"] == "end"


def test_watch_past_the_end_tells_how_the_run_ended(researcher: Researcher, stub: Stub) -> None:
    write_completed_run(researcher.record_run("8", {CITY1: "a", CITY2: "b"}), CITY1, CITY2)

    responses = watch(stub, "8", offset=6)

    assert len(responses) == 1
    assert (responses[0].index, responses[0].event_json) == (6, "")
    assert responses[0].training.state == pb.TRAINING_STATE_COMPLETED


def test_watch_follows_a_run_as_its_progress_file_grows(researcher: Researcher, stub: Stub) -> None:
    # Prepare: the run has started; the rest is written while the client watches.
    writer = researcher.record_run("9", {CITY1: "a"}, rounds=2)
    writer.write("start", spec={})

    def run() -> None:
        time.sleep(0.2)
        round_event(writer, 1, {CITY1: ok(0.4)})
        time.sleep(0.2)
        round_event(writer, 2, {CITY1: ok(0.3)})
        time.sleep(0.2)
        writer.write("end", status="completed", rounds=2)

    writer_thread = threading.Thread(target=run)

    # Execute
    writer_thread.start()
    try:
        responses = watch(stub, "9")
    finally:
        writer_thread.join()

    # Assert
    events = [json.loads(r.event_json) for r in responses]
    assert [e["event"] for e in events] == ["start", "round", "round", "end"]
    assert [r.training.rounds_done for r in responses][-1] == 2
    assert responses[0].training.state == pb.TRAINING_STATE_RUNNING
    assert responses[-1].training.state == pb.TRAINING_STATE_COMPLETED


def test_watch_of_a_run_that_goes_on_ends_at_the_clients_deadline(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    writer = researcher.record_run("10", {CITY1: "a"})
    writer.write("start", spec={})
    received: list[pb.WatchTrainingResponse] = []

    def follow() -> None:
        received.extend(stub.WatchTraining(pb.WatchTrainingRequest(run_id="10"), timeout=0.5))

    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        follow()

    # Assert
    assert from_rpc_error(raised.value).code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [r.index for r in received] == [0]


def test_one_watch_stream_is_bounded_and_the_client_resumes_from_its_offset(
    researcher: Researcher,
) -> None:
    # Prepare: a run that goes on; streams last at most 0.3 s.
    writer = researcher.record_run("11", {CITY1: "a"})
    writer.write("start", spec={})
    with (
        management_server(researcher, watch_max_seconds=0.3) as served,
        grpc.insecure_channel(served.address) as channel,
    ):
        stub = training_management_pb2_grpc.TrainingManagementServiceStub(channel)

        # Execute
        first = watch(stub, "11")
        round_event(writer, 1, {CITY1: ok(0.4)})
        second = watch(stub, "11", offset=first[-1].index + 1)

    # Assert: each stream ended by itself, the run still running, nothing repeated.
    assert [r.index for r in first] == [0]
    assert [r.index for r in second] == [1]
    assert second[-1].training.state == pb.TRAINING_STATE_RUNNING


def test_closing_the_service_ends_open_watches(researcher: Researcher) -> None:
    # Prepare
    writer = researcher.record_run("12", {CITY1: "a"})
    writer.write("start", spec={})
    received: list[pb.WatchTrainingResponse] = []
    with (
        management_server(researcher) as served,
        grpc.insecure_channel(served.address) as channel,
    ):
        stub = training_management_pb2_grpc.TrainingManagementServiceStub(channel)
        watcher = threading.Thread(target=lambda: received.extend(watch(stub, "12")))
        watcher.start()

        # Execute
        time.sleep(0.3)
        served.servicer.close()
        watcher.join(timeout=TIMEOUT)

        # Assert
        assert not watcher.is_alive()
    assert [r.index for r in received] == [0]


def test_watch_of_an_unknown_run_is_refused_before_the_stream_opens(stub: Stub) -> None:
    # Execute
    with pytest.raises(grpc.RpcError) as raised:
        watch(stub, "404")

    # Assert
    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "TRAINING_NOT_FOUND"


def test_watch_refuses_a_negative_offset(researcher: Researcher, stub: Stub) -> None:
    researcher.record_run("8", {CITY1: "a"})

    with pytest.raises(grpc.RpcError) as raised:
        watch(stub, "8", offset=-1)

    error = from_rpc_error(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == ["offset"]


# StopTraining


def test_stopping_an_ended_run_is_refused_and_changes_nothing(
    researcher: Researcher, stub: Stub
) -> None:
    # Prepare
    write_completed_run(researcher.record_run("8", {CITY1: "a", CITY2: "b"}), CITY1, CITY2)
    before = (researcher.aggregator.root / "run-8" / "progress.jsonl").read_text()

    # Execute
    error = refusal(stub.StopTraining, pb.StopTrainingRequest(run_id="8", request_id=request_id()))

    # Assert
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TRAINING_FINISHED"
    assert error.message == "training run 8 has ended already (COMPLETED); nothing to stop"
    assert researcher.aggregator._link is None
    assert (researcher.aggregator.root / "run-8" / "progress.jsonl").read_text() == before


def test_stopping_an_unknown_run_is_not_found(researcher: Researcher, stub: Stub) -> None:
    error = refusal(stub.StopTraining, pb.StopTrainingRequest(run_id="404"))

    assert error.reason == "TRAINING_NOT_FOUND"
    assert researcher.nothing_started()


# Progress per city


def test_city_progress_keeps_each_citys_last_metrics_per_phase() -> None:
    # Prepare
    events: list[dict[str, Any]] = [
        {"event": "start"},
        {"event": "round", "phase": "train", "round": 1, "cities": {CITY1: ok(0.9, 10)}},
        {"event": "round", "phase": "evaluate", "round": 1, "cities": {CITY1: ok(0.8, 0)}},
        {"event": "round", "phase": "train", "round": 2, "cities": {CITY1: refused("budget")}},
        {"event": "round", "phase": "train", "round": 2, "cities": {"node 7": ok(0.1)}},
    ]

    # Execute
    cities = city_progress({CITY1: "agreement-1", CITY2: "agreement-2"}, events)

    # Assert
    assert [c.participant_id for c in cities] == [CITY1, CITY2, "node 7"]
    first, second, stranger = cities
    assert first.state == pb.TRAINING_CITY_STATE_FAILED
    assert (first.last_round, first.error) == (2, "budget")
    assert dict(first.metrics) == {"train_loss": 0.9, "evaluate_loss": 0.8}
    assert first.update_bytes == 10
    assert second.state == pb.TRAINING_CITY_STATE_WAITING
    assert second.last_round == 0
    assert (stranger.agreement_id, stranger.state) == ("", pb.TRAINING_CITY_STATE_OK)
