"""Tests for the Grid wrapper that records each city's reply (federation.watched_grid) and the
run's progress file (federation.progress).

The real Grid needs a running SuperLink, so a small Grid that answers with canned reply
Messages stands in for it (tests/unit/canned_grid.py); the replies are real Flower Messages
built as a ClientApp builds them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.run import Run

from federation.progress import PROGRESS_FILE, ProgressWriter, read_progress
from federation.runspec import RunSpec
from federation.watched_grid import WatchedGrid
from tests.unit.canned_grid import (
    Answer,
    CannedGrid,
    as_serverapp,
    evaluates,
    fails,
    silent,
    trains,
)

CITY_A = "urn:hanse:city-a"
CITY_B = "urn:hanse:city-b"
CITY_C = "urn:hanse:city-c"
NODES = {11: CITY_A, 22: CITY_B, 33: CITY_C}


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    as_serverapp(monkeypatch)


def a_spec(**fields: Any) -> RunSpec:
    base: dict[str, Any] = {
        "task_id": "forecast-next-hour",
        "task_hash": "sha256:" + "aa" * 32,
        "rounds": 2,
        "agreements": {city: f"agr-{city}" for city in NODES.values()},
        "nodes": NODES,
    }
    return RunSpec(**{**base, **fields})


def model() -> ArrayRecord:
    return ArrayRecord({"weight": Array(np.zeros((2, 2), dtype=np.float32))})


def instructions(grid: Grid, phase: str, nodes: Iterable[int], round_no: int = 1) -> list[Message]:
    content = RecordDict({"arrays": model(), "config": ConfigRecord({"server-round": round_no})})
    return [grid.create_message(content, phase, node, str(round_no)) for node in nodes]


def rounds_in(out: Path) -> list[dict[str, Any]]:
    return [event for event in read_progress(out) if event["event"] == "round"]


def watched(
    tmp_path: Path, answers: dict[int, Answer], **kwargs: Any
) -> tuple[WatchedGrid, CannedGrid]:
    inner = CannedGrid(answers)
    return WatchedGrid(inner, a_spec(), ProgressWriter(tmp_path / "run"), **kwargs), inner


# --- recording each city's outcome --------------------------------------------------------------


def test_each_city_outcome_is_recorded_with_its_metrics_and_bytes(tmp_path: Path) -> None:
    # Prepare
    grid, inner = watched(tmp_path, {11: trains(0.5, 10), 22: trains(0.25, 30)})
    sent = instructions(grid, "train", [11, 22])

    # Execute
    kept = list(grid.send_and_receive(sent, timeout=30.0))

    # Assert
    assert [m.metadata.src_node_id for m in kept] == [11, 22]
    assert inner.timeouts == [30.0]
    (event,) = rounds_in(tmp_path / "run")
    size = sum(len(a.data) for a in kept[0].content.array_records["arrays"].values())
    assert size > 16  # four float32 values and their header
    assert event["phase"] == "train"
    assert event["round"] == 1
    assert event["rounds"] == 2
    assert event["cities"] == {
        CITY_A: {"ok": True, "metrics": {"loss": 0.5, "num-examples": 10.0}, "bytes": size},
        CITY_B: {"ok": True, "metrics": {"loss": 0.25, "num-examples": 30.0}, "bytes": size},
    }
    assert grid.city_metrics == {
        CITY_A: {"1": {"train_loss": 0.5, "train_num-examples": 10.0}},
        CITY_B: {"1": {"train_loss": 0.25, "train_num-examples": 30.0}},
    }


def test_an_evaluation_reply_without_arrays_has_zero_bytes(tmp_path: Path) -> None:
    # Prepare
    grid, _ = watched(tmp_path, {11: evaluates(0.9)})

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "evaluate", [11])))

    # Assert
    assert len(kept) == 1
    (event,) = rounds_in(tmp_path / "run")
    assert event["phase"] == "evaluate"
    assert event["cities"][CITY_A] == {
        "ok": True,
        "metrics": {"accuracy": 0.9, "num-examples": 10.0},
        "bytes": 0,
    }


def test_an_error_reply_is_recorded_with_its_reason_and_not_returned(tmp_path: Path) -> None:
    # Prepare
    answers = {11: trains(0.5), 22: fails("privacy budget exhausted"), 33: fails(None, code=7)}
    grid, _ = watched(tmp_path, answers)

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "train", [11, 22, 33])))

    # Assert
    assert [m.metadata.src_node_id for m in kept] == [11]
    (event,) = rounds_in(tmp_path / "run")
    assert event["cities"][CITY_B] == {"ok": False, "error": "privacy budget exhausted"}
    assert event["cities"][CITY_C] == {"ok": False, "error": "the node replied error 7"}
    assert set(grid.city_metrics) == {CITY_A}


def test_a_reply_the_check_rejects_is_dropped_and_the_reason_recorded(tmp_path: Path) -> None:
    # Prepare
    seen: list[tuple[int, str]] = []

    def check(reply: Message, city: str) -> str | None:
        seen.append((reply.metadata.src_node_id, city))
        return "bad update signature" if city == CITY_B else None

    grid, _ = watched(tmp_path, {11: trains(0.5), 22: trains(0.1), 33: fails("x")}, check=check)

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "train", [11, 22, 33])))

    # Assert
    assert [m.metadata.src_node_id for m in kept] == [11]
    assert seen == [(11, CITY_A), (22, CITY_B)], "error replies are not checked"
    (event,) = rounds_in(tmp_path / "run")
    assert event["cities"][CITY_B] == {
        "ok": False,
        "error": "rejected by the aggregator: bad update signature",
    }
    assert event["cities"][CITY_A]["ok"] is True
    assert CITY_B not in grid.city_metrics


def test_a_check_that_fails_rejects_the_reply_instead_of_ending_the_run(tmp_path: Path) -> None:
    # Prepare
    def check(reply: Message, city: str) -> str | None:
        if city == CITY_A:
            raise ValueError("signature is not base64")
        return None

    grid, _ = watched(tmp_path, {11: trains(0.5), 22: trains(0.1)}, check=check)

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "train", [11, 22])))

    # Assert
    assert [m.metadata.src_node_id for m in kept] == [22]
    (event,) = rounds_in(tmp_path / "run")
    assert event["cities"][CITY_A] == {
        "ok": False,
        "error": "rejected by the aggregator: the check failed: ValueError: "
        "signature is not base64",
    }


def test_a_node_that_never_answered_is_recorded_as_timed_out(tmp_path: Path) -> None:
    # Prepare
    grid, _ = watched(tmp_path, {11: trains(0.5), 22: silent})

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "train", [11, 22]), timeout=1.0))

    # Assert
    assert len(kept) == 1
    (event,) = rounds_in(tmp_path / "run")
    assert event["cities"][CITY_B] == {"ok": False, "error": "no reply before the round timed out"}


def test_a_node_the_spec_does_not_name_is_recorded_by_its_node_id(tmp_path: Path) -> None:
    # Prepare
    grid, _ = watched(tmp_path, {99: trains(0.5), 98: silent})

    # Execute
    grid.send_and_receive(instructions(grid, "train", [99, 98]))

    # Assert
    (event,) = rounds_in(tmp_path / "run")
    assert set(event["cities"]) == {"node 99", "node 98"}
    assert grid.city_of(99) == "node 99"
    assert grid.city_of(11) == CITY_A


def test_rounds_are_counted_per_phase(tmp_path: Path) -> None:
    # Prepare
    answers: dict[int, Answer] = {11: trains(0.5)}
    grid, _ = watched(tmp_path, answers)

    # Execute
    for round_no in (1, 2):
        answers[11] = trains(0.5 / round_no)
        grid.send_and_receive(instructions(grid, "train", [11], round_no))
        answers[11] = evaluates({1: 0.81, 2: 0.82}[round_no])
        grid.send_and_receive(instructions(grid, "evaluate", [11], round_no))
    answers[11] = evaluates(0.99)
    grid.send_and_receive(instructions(grid, "query.stats", [11]))

    # Assert
    events = rounds_in(tmp_path / "run")
    assert [(e["phase"], e["round"]) for e in events] == [
        ("train", 1),
        ("evaluate", 1),
        ("train", 2),
        ("evaluate", 2),
        ("query", 1),
    ]
    assert grid.city_metrics[CITY_A]["2"] == {
        "train_loss": 0.25,
        "train_num-examples": 10.0,
        "evaluate_accuracy": 0.82,
        "evaluate_num-examples": 10.0,
    }


def test_sending_nothing_records_nothing(tmp_path: Path) -> None:
    # Prepare
    grid, inner = watched(tmp_path, {11: trains(0.5)})

    # Execute
    kept = grid.send_and_receive([])

    # Assert
    assert list(kept) == []
    assert inner.timeouts == []
    assert list(read_progress(tmp_path / "run")) == []


def test_the_other_grid_calls_are_passed_on(tmp_path: Path) -> None:
    # Prepare
    grid, inner = watched(tmp_path, {11: trains(0.5), 22: silent})
    run = replace(Run.create_empty(7), fab_id="hanse/hanse-run")

    # Execute
    grid.set_run(run)
    message = grid.create_message(RecordDict({"arrays": model()}), "train", 11, "1", ttl=60.0)
    ids = list(grid.push_messages([message]))
    pulled = list(grid.pull_messages(ids))

    # Assert
    assert grid.run is run is inner.run
    assert list(grid.get_node_ids()) == [11, 22]
    assert message.metadata.dst_node_id == 11
    assert message.metadata.ttl == 60.0
    assert inner.sent == [message]
    assert [m.metadata.src_node_id for m in pulled] == [11]
    assert list(read_progress(tmp_path / "run")) == [], "only send_and_receive is recorded"


def test_a_flower_strategy_aggregates_only_the_replies_that_pass(tmp_path: Path) -> None:
    # Prepare: city C's update is rejected, so the average is over A and B only.
    answers: dict[int, Answer] = {
        11: trains(0.5, examples=10, shift=1.0),
        22: trains(0.5, examples=30, shift=2.0),
        33: trains(0.5, examples=60, shift=100.0),
    }
    grid, _ = watched(
        tmp_path, answers, check=lambda reply, city: "poisoned" if city == CITY_C else None
    )
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)

    # Execute
    result = strategy.start(grid=grid, initial_arrays=model(), num_rounds=2, timeout=5.0)

    # Assert
    weight = result.arrays["weight"].numpy()
    assert np.allclose(weight, 2 * (1.0 * 10 + 2.0 * 30) / 40)
    events = rounds_in(tmp_path / "run")
    assert [(e["phase"], e["round"]) for e in events] == [("train", 1), ("train", 2)]
    assert all(
        e["cities"][CITY_C]["error"] == "rejected by the aggregator: poisoned" for e in events
    )


# --- the aggregation floor (minParticipants) ---------------------------------------------------


def test_a_train_round_with_fewer_accepted_updates_than_the_floor_is_not_aggregated(
    tmp_path: Path,
) -> None:
    # Prepare: the agreements allow updates only in aggregates of at least 3 cities;
    # city C refuses this round.
    answers: dict[int, Answer] = {
        11: trains(0.5, examples=10, shift=1.0),
        22: trains(0.5, examples=30, shift=2.0),
        33: fails("privacy budget exhausted"),
    }
    inner = CannedGrid(answers)
    spec = a_spec(min_nodes=3, min_aggregate=3)
    grid = WatchedGrid(inner, spec, ProgressWriter(tmp_path / "run"))
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)

    # Execute
    result = strategy.start(grid=grid, initial_arrays=model(), num_rounds=2, timeout=5.0)

    # Assert: no round was aggregated (Flower's result holds no arrays; the ServerApp
    # keeps the initial model), and each round says why, with every city's outcome.
    assert len(result.arrays) == 0
    events = rounds_in(tmp_path / "run")
    assert [(e["phase"], e["round"], e["aggregated"]) for e in events] == [
        ("train", 1, False),
        ("train", 2, False),
    ]
    assert events[0]["reason"] == (
        "2 of the at least 3 cities the agreements require (minParticipants) sent an "
        "accepted update; the model stays as it was"
    )
    assert events[0]["cities"][CITY_A]["ok"] and not events[0]["cities"][CITY_C]["ok"]


def test_a_train_round_that_reaches_the_floor_is_aggregated(tmp_path: Path) -> None:
    # Prepare: a floor of 2; city C's update is refused, A and B reach the floor.
    answers: dict[int, Answer] = {
        11: trains(0.5, examples=10, shift=1.0),
        22: trains(0.5, examples=30, shift=2.0),
        33: fails("privacy budget exhausted"),
    }
    grid = WatchedGrid(
        CannedGrid(answers), a_spec(min_nodes=3, min_aggregate=2), ProgressWriter(tmp_path / "r")
    )
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)

    # Execute
    result = strategy.start(grid=grid, initial_arrays=model(), num_rounds=1, timeout=5.0)

    # Assert
    assert np.allclose(result.arrays["weight"].numpy(), (1.0 * 10 + 2.0 * 30) / 40)
    (event,) = rounds_in(tmp_path / "r")
    assert "aggregated" not in event and "reason" not in event


def test_evaluation_replies_are_kept_below_the_floor(tmp_path: Path) -> None:
    # Prepare: metrics only, no update leaves a city in an evaluation round.
    grid = WatchedGrid(
        CannedGrid({11: evaluates(0.5), 22: fails("down"), 33: fails("down")}),
        a_spec(min_nodes=3, min_aggregate=3),
        ProgressWriter(tmp_path / "run"),
    )

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "evaluate", [11, 22, 33])))

    # Assert
    assert [m.metadata.src_node_id for m in kept] == [11]
    (event,) = rounds_in(tmp_path / "run")
    assert "aggregated" not in event


# --- the progress file --------------------------------------------------------------------------


def test_progress_events_are_appended_and_read_back_in_order(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "new" / "run"

    # Execute
    ProgressWriter(out).write("start", spec={"hanse-rounds": 2})
    ProgressWriter(out).write("end", status="completed", rounds=2)

    # Assert
    events = list(read_progress(out))
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[0]["spec"] == {"hanse-rounds": 2}
    assert events[1]["status"] == "completed"
    assert all(isinstance(e["time"], float) for e in events)
    lines = (out / PROGRESS_FILE).read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["start", "end"]


def test_a_partly_written_last_line_is_skipped(tmp_path: Path) -> None:
    # Prepare
    writer = ProgressWriter(tmp_path)
    writer.write("start")
    writer.write("round", phase="train", round=1)
    with (tmp_path / PROGRESS_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"event": "round", "phase": "evalu')

    # Execute
    events = list(read_progress(tmp_path))

    # Assert
    assert [e["event"] for e in events] == ["start", "round"]


def test_a_run_without_progress_has_no_events(tmp_path: Path) -> None:
    # Execute
    events = list(read_progress(tmp_path / "never-started"))

    # Assert
    assert events == []
    assert not (tmp_path / "never-started").exists()


def test_an_error_the_superlink_sends_for_an_unavailable_node_counts_for_that_city(
    tmp_path: Path,
) -> None:
    # Prepare: as the real Grid, give each instruction its id; the SuperLink (node 1)
    # answers for city B, whose SuperNode stopped sending heartbeats.
    def unavailable(message: Message) -> Message:
        message.metadata.__dict__["_message_id"] = "instruction-22"
        reply = Message(Error(code=3, reason="Node Unavailable"), reply_to=message)
        reply.metadata.__dict__["_src_node_id"] = 1  # as the SuperLink sets it
        return reply

    grid, _ = watched(tmp_path, {11: trains(0.5), 22: unavailable})

    # Execute
    kept = list(grid.send_and_receive(instructions(grid, "train", [11, 22])))

    # Assert
    assert [m.metadata.src_node_id for m in kept] == [11]
    (event,) = rounds_in(tmp_path / "run")
    assert event["cities"] == {
        CITY_A: event["cities"][CITY_A],
        CITY_B: {"ok": False, "error": "Node Unavailable"},
    }
    assert event["cities"][CITY_A]["ok"] is True
