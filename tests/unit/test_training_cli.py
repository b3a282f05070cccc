"""Tests for ``hanse train`` (node.cli.training) against a real management server.

The CLI runs in process (typer's runner) with the node's config file; it finds the
in-process server through the node's endpoints file and authenticates with TLS and
the node's admin token, as it does against a running node. The runs' progress is
written with the ServerApp's own ProgressWriter.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from connector.v1 import training_management_pb2 as pb
from node.cli import app, output
from node.cli.training import event_lines, summary_rows
from tests.unit.training_support import (
    CITY1,
    CITY2,
    TASK,
    Researcher,
    make_researcher,
    management_server,
    ok,
    refused,
    round_event,
    write_completed_run,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def researcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Researcher]:
    # Wide consoles, so table cells (paths) are not folded across lines.
    monkeypatch.setattr(output.console, "width", 240)
    monkeypatch.setattr(output.errors, "width", 240)
    node = make_researcher(tmp_path)
    with management_server(node, tls=True):
        yield node


def hanse(researcher: Researcher, *args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--config", str(researcher.loaded.path)])
    assert not isinstance(result.exception, AssertionError | TypeError | AttributeError), result
    return result


def plain(text: str) -> str:
    return ANSI.sub("", text)


def completed_run(researcher: Researcher, run_id: str = "8") -> Path:
    writer = researcher.record_run(run_id, {CITY1: "urn:uuid:agreement-a", CITY2: "urn:uuid:b"})
    write_completed_run(writer, CITY1, CITY2)
    return writer.path.parent


# show


def test_show_prints_state_rounds_each_citys_last_metrics_and_the_files(
    researcher: Researcher,
) -> None:
    # Prepare
    folder = completed_run(researcher)

    # Execute
    result = hanse(researcher, "train", "show", "8")

    # Assert
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "training run 8" in text
    assert re.search(r"│ state\s+│ COMPLETED", text)
    assert re.search(r"│ rounds\s+│ 2/2", text)
    assert re.search(r"│ strategy\s+│ fedprox", text)
    assert re.search(r"│ local training\s+│ 1 epoch\(s\), batch 64, sgd, learning rate 0\.01", text)
    assert f"{TASK} (sha256:" in text
    assert str(folder / "model.pt") in text
    assert str(folder / "metrics.json") in text
    city1 = next(line for line in text.splitlines() if CITY1 in line)
    assert "urn:uuid:agreement-a" in city1
    assert "OK" in city1
    assert "2 evaluate" in city1
    assert "evaluate_mae=0.125 train_loss=0.25" in city1
    assert "2.0 KiB" in city1
    city2 = next(line for line in text.splitlines() if CITY2 in line)
    assert "FAILED" in city2
    assert "the agreement has expired" in city2


def test_show_json_is_the_training_resource(researcher: Researcher) -> None:
    completed_run(researcher)

    result = hanse(researcher, "train", "show", "8", "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["run_id"] == "8"
    assert shown["state"] == "TRAINING_STATE_COMPLETED"
    assert shown["rounds_done"] == 2
    assert [c["participant_id"] for c in shown["cities"]] == [CITY1, CITY2]
    assert shown["cities"][0]["metrics"] == {"train_loss": 0.25, "evaluate_mae": 0.125}
    assert shown["model_path"].endswith("model.pt")


def test_show_of_an_unknown_run_says_so_and_fails(researcher: Researcher) -> None:
    result = hanse(researcher, "train", "show", "404")

    assert result.exit_code == 1
    assert plain(result.stderr).strip() == (
        "error: this node has no training run 404; see `hanse train list` [TRAINING_NOT_FOUND]"
    )


# list


def test_list_prints_runs_newest_first(researcher: Researcher) -> None:
    # Prepare
    completed_run(researcher, "8")
    researcher.record_run("9", {CITY1: "a"}, created="2026-03-02T00:00:00Z")

    # Execute
    result = hanse(researcher, "train", "list")
    as_json = hanse(researcher, "train", "list", "--json")

    # Assert
    assert result.exit_code == 0, result.output
    rows = [line for line in plain(result.stdout).splitlines() if TASK in line]
    assert len(rows) == 2
    assert re.search(r"│ 9\s+│ RUNNING\s+│ " + TASK + r"\s+│ 0/2\s+│ 1 ", rows[0])
    assert re.search(r"│ 8\s+│ COMPLETED\s+│ " + TASK + r"\s+│ 2/2\s+│ 2 ", rows[1])
    assert [t["run_id"] for t in json.loads(as_json.stdout)] == ["9", "8"]


# watch


def test_watch_prints_each_round_and_city_and_exits_0_when_completed(
    researcher: Researcher,
) -> None:
    # Prepare
    folder = completed_run(researcher)

    # Execute
    result = hanse(researcher, "train", "watch", "8", "--timeout", "30")

    # Assert
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in plain(result.stdout).splitlines()]
    assert lines[0] == f"run started: task {TASK}, strategy fedprox"
    assert lines[1:4] == [
        "round 1/2 train: 1 of 2 cities ok",
        f"  {CITY1}  ok       loss=0.5  (2.0 KiB)",
        f"  {CITY2}  refused  the agreement has expired",
    ]
    assert lines[4:6] == [
        "round 1/2 evaluate: 1 of 1 cities ok",
        f"  {CITY1}  ok       mae=0.25  (0 B)",
    ]
    assert "run completed" in lines
    assert lines[-1] == (
        f"training run 8 completed: model {folder / 'model.pt'}, metrics {folder / 'metrics.json'}"
    )
    assert any(re.search(r"training 8 .* 2/2 rounds", line) for line in lines)


def test_watch_follows_a_growing_run_to_its_end(researcher: Researcher) -> None:
    # Prepare
    writer = researcher.record_run("9", {CITY1: "a"}, rounds=2)
    writer.write("start", spec={"hanse-task": TASK, "hanse-strategy": "fedavg"})

    def rest() -> None:
        time.sleep(0.3)
        round_event(writer, 1, {CITY1: ok(0.4)})
        time.sleep(0.3)
        round_event(writer, 2, {CITY1: ok(0.3)})
        writer.write("end", status="completed", rounds=2)

    later = threading.Thread(target=rest)

    # Execute
    later.start()
    try:
        result = hanse(researcher, "train", "watch", "9", "--timeout", "30")
    finally:
        later.join()

    # Assert
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert (
        text.index("round 1/2 train") < text.index("round 2/2 train") < text.index("run completed")
    )


def test_watch_goes_on_across_streams_the_node_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the node ends each stream after 0.2 s; the run takes longer.
    monkeypatch.setattr(output.console, "width", 240)
    node = make_researcher(tmp_path)
    writer = node.record_run("9", {CITY1: "a"}, rounds=2)
    writer.write("start", spec={"hanse-task": TASK, "hanse-strategy": "fedavg"})

    def rest() -> None:
        time.sleep(0.5)
        round_event(writer, 1, {CITY1: ok(0.4)})
        time.sleep(0.5)
        round_event(writer, 2, {CITY1: ok(0.3)})
        writer.write("end", status="completed", rounds=2)

    later = threading.Thread(target=rest)

    # Execute
    with management_server(node, tls=True, watch_max_seconds=0.2):
        later.start()
        try:
            result = hanse(node, "train", "watch", "9", "--timeout", "30")
        finally:
            later.join()

    # Assert: every event once, in order.
    assert result.exit_code == 0, result.output
    lines = plain(result.stdout).splitlines()
    assert [line for line in lines if line.startswith(("run ", "round "))] == [
        f"run started: task {TASK}, strategy fedavg",
        "round 1/2 train: 1 of 1 cities ok",
        "round 2/2 train: 1 of 1 cities ok",
        "run completed",
    ]


def test_watch_of_a_failed_run_exits_non_zero_with_the_reason(researcher: Researcher) -> None:
    # Prepare
    writer = researcher.record_run("5", {CITY1: "a"})
    writer.write("start", spec={})
    round_event(writer, 1, {CITY1: refused("budget exhausted")})
    writer.write("end", status="failed", reason="RuntimeError: no city replied")

    # Execute
    result = hanse(researcher, "train", "watch", "5")

    # Assert
    assert result.exit_code == 1
    assert f"  {CITY1}  refused  budget exhausted" in plain(result.stdout)
    assert "run failed: RuntimeError: no city replied" in plain(result.stdout)
    assert plain(result.stderr).strip() == (
        "error: training run 5 FAILED: RuntimeError: no city replied"
    )


def test_watch_gives_up_after_its_timeout_and_says_how_to_go_on(researcher: Researcher) -> None:
    # Prepare
    writer = researcher.record_run("10", {CITY1: "a"})
    writer.write("start", spec={})

    # Execute
    result = hanse(researcher, "train", "watch", "10", "--timeout", "1")

    # Assert
    assert result.exit_code == 1
    assert plain(result.stderr).strip() == (
        "error: training run 10 is still running after 1s (round 0/2); "
        "follow it again with: hanse train watch 10"
    )


def test_watch_json_prints_progress_on_stderr_and_the_run_on_stdout(
    researcher: Researcher,
) -> None:
    completed_run(researcher)

    result = hanse(researcher, "train", "watch", "8", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "TRAINING_STATE_COMPLETED"
    assert "round 2/2 evaluate: 1 of 1 cities ok" in plain(result.stderr)


def test_watch_of_an_unknown_run_says_so_and_fails(researcher: Researcher) -> None:
    result = hanse(researcher, "train", "watch", "404")

    assert result.exit_code == 1
    assert "[TRAINING_NOT_FOUND]" in plain(result.stderr)


# start and stop


def test_start_under_an_unknown_agreement_fails_with_the_reason_and_starts_nothing(
    researcher: Researcher,
) -> None:
    result = hanse(
        researcher, "train", "start", "--task", TASK, "--agreement", "urn:uuid:x", "--rounds", "2"
    )

    assert result.exit_code == 1
    assert plain(result.stderr).strip() == (
        "error: this node has no agreement urn:uuid:x as consumer; see `hanse contract list` "
        "[AGREEMENT_NOT_FOUND]"
    )
    assert researcher.nothing_started()


def test_start_beyond_the_agreements_rounds_fails_and_starts_nothing(
    researcher: Researcher,
) -> None:
    # Prepare
    first = researcher.agreement("a", CITY1)
    second = researcher.agreement(
        "b", CITY2, usage={"purpose": "x", "task": {"id": TASK}, "max_rounds": 1}
    )

    # Execute
    result = hanse(
        researcher, "train", "start", "--task", TASK, "-a", first, "-a", second, "--rounds", "2"
    )

    # Assert
    assert result.exit_code == 1
    assert f"agreement {second} allows 1 rounds, not 2 [TRAINING_REFUSED]" in plain(result.stderr)
    assert researcher.nothing_started()


def test_start_with_an_unknown_strategy_fails_before_calling_the_node(
    researcher: Researcher,
) -> None:
    result = hanse(
        researcher,
        "train",
        "start",
        "--task",
        TASK,
        "-a",
        "x",
        "--rounds",
        "2",
        "--strategy",
        "median",
    )

    assert result.exit_code == 2
    assert "unknown strategy 'median'; choose one of fedavg, fedprox" in plain(result.stderr)
    assert researcher.nothing_started()


def test_start_with_an_unknown_optimizer_fails_before_calling_the_node(
    researcher: Researcher,
) -> None:
    result = hanse(
        researcher,
        "train",
        "start",
        "--task",
        TASK,
        "-a",
        "x",
        "--rounds",
        "2",
        "--optimizer",
        "rmsprop",
    )

    assert result.exit_code == 2
    assert "unknown optimizer 'rmsprop'; choose one of sgd, adam" in plain(result.stderr)
    assert researcher.nothing_started()


def test_start_with_adam_is_accepted_and_the_node_checks_the_agreements_next(
    researcher: Researcher,
) -> None:
    # Prepare: the node checks the optimizer before the agreements; an agreement it
    # lacks makes it refuse, so nothing starts, but only after accepting --optimizer.
    args = ["train", "start", "--task", TASK, "-a", "urn:uuid:x", "--rounds", "2"]

    # Execute
    result = hanse(researcher, *args, "--optimizer", "adam")

    # Assert
    assert result.exit_code == 1
    assert "[AGREEMENT_NOT_FOUND]" in plain(result.stderr)
    assert "optimizer" not in plain(result.stderr)
    assert researcher.nothing_started()


def test_show_prints_the_runs_optimizer(researcher: Researcher) -> None:
    # Prepare: a run whose spec names Adam.
    folder = completed_run(researcher)
    saved = json.loads((folder / "spec.json").read_text())
    saved["spec"]["hanse-optimizer"] = "adam"
    (folder / "spec.json").write_text(json.dumps(saved))

    # Execute
    result = hanse(researcher, "train", "show", "8")
    shown = json.loads(hanse(researcher, "train", "show", "8", "--json").stdout)

    # Assert
    assert result.exit_code == 0, result.output
    assert re.search(r"│ local training\s+│ .*, adam, learning rate 0\.01", plain(result.stdout))
    assert shown["optimizer"] == "adam"


def test_stopping_an_ended_run_fails_with_the_reason(researcher: Researcher) -> None:
    completed_run(researcher)

    result = hanse(researcher, "train", "stop", "8")

    assert result.exit_code == 1
    assert plain(result.stderr).strip() == (
        "error: training run 8 has ended already (COMPLETED); nothing to stop [TRAINING_FINISHED]"
    )
    assert researcher.aggregator._link is None


# Event lines


def test_event_lines_for_a_round_list_every_city_sorted() -> None:
    lines = event_lines(
        {
            "event": "round",
            "phase": "train",
            "round": 3,
            "rounds": 5,
            "cities": {
                "urn:b": refused("no reply before the round timed out"),
                "urn:a": ok(0.12345, 3 * 1024 * 1024, mae=2),
            },
        }
    )

    assert [line.plain for line in lines] == [
        "round 3/5 train: 1 of 2 cities ok",
        "  urn:a  ok       loss=0.1235 mae=2  (3.0 MiB)",
        "  urn:b  refused  no reply before the round timed out",
    ]
    assert lines[2].style == "red"


@pytest.mark.parametrize(
    ("floor", "shown"), [(3, "3 cities (minParticipants)"), (0, "none")], ids=["floor", "none"]
)
def test_show_prints_the_aggregation_floor(floor: int, shown: str) -> None:
    rows = summary_rows(pb.Training(run_id="7", min_nodes=3, min_aggregate=floor))

    assert ["min cities / round", "3"] in rows
    assert ["aggregation floor", shown] in rows


def test_event_lines_for_a_round_not_aggregated_say_why() -> None:
    reason = (
        "1 of the at least 2 cities the agreements require (minParticipants) sent an "
        "accepted update; the model stays as it was"
    )
    lines = event_lines(
        {
            "event": "round",
            "phase": "train",
            "round": 1,
            "rounds": 2,
            "cities": {
                "urn:a": ok(0.5, 1024),
                "urn:b": refused("privacy budget exhausted"),
            },
            "aggregated": False,
            "reason": reason,
        }
    )

    assert [line.plain for line in lines] == [
        "round 1/2 train: 1 of 2 cities ok",
        f"  not aggregated: {reason}",
        "  urn:a  ok       loss=0.5  (1.0 KiB)",
        "  urn:b  refused  privacy budget exhausted",
    ]
    assert lines[1].style == "yellow"


def test_train_tasks_lists_installed_tasks_and_prints_one_hash() -> None:
    from typer.testing import CliRunner

    from federation.tasks import load_task

    cli_app = app
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["train", "tasks", "--json"])
    one = runner.invoke(cli_app, ["train", "tasks", "--hash", "forecast-next-hour"])
    unknown = runner.invoke(cli_app, ["train", "tasks", "--hash", "no-such-task"])

    expected = load_task("forecast-next-hour").content_hash()
    assert listed.exit_code == 0, listed.output
    assert {"id": "forecast-next-hour", "hash": expected} in json.loads(listed.stdout)
    assert one.exit_code == 0, one.output
    assert one.stdout.strip() == expected
    assert unknown.exit_code != 0
    assert "no task 'no-such-task' is installed" in unknown.output
