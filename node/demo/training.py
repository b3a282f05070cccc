"""Start the demo's federated training through the researcher's node, and show it live.

The run is started through the researcher's training management API (as ``hanse
train start`` does) under the finalized agreements, and followed through its
WatchTraining stream: a live table shows the round, each city's state and its
latest training loss and held-out MAE, and bytes of model updates sent.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import grpc
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connector.errors import ConnectorError
from connector.v1 import training_management_pb2 as pb
from node.client import NodeClient
from node.demo.options import LEARNING_RATE, OPTIMIZER
from node.supervisor import RunningNode

TRAINING_TIMEOUT = 900.0
"""Seconds the demo follows a run before it gives up."""
STARTED_LINE = "training run {run_id} started"
"""What the demo prints (and flushes) once the run has started; tests wait for it."""


FINISHED = frozenset(
    {pb.TRAINING_STATE_COMPLETED, pb.TRAINING_STATE_FAILED, pb.TRAINING_STATE_STOPPED}
)
"""States a run does not leave."""


class TrainingError(RuntimeError):
    """The run failed, was stopped, or did not end in time."""


def start_training(
    researcher: RunningNode, task_id: str, negotiation_ids: list[str], rounds: int
) -> pb.Training:
    """Start a run of ``task_id`` under the researcher's finalized negotiations.

    The cities train with :data:`~node.demo.options.OPTIMIZER` at
    :data:`~node.demo.options.LEARNING_RATE`.

    Raises:
        ConnectorError: the node refused the run (the message says which agreement fails).
    """
    with researcher.client() as client:
        return client.call(
            client.trainings.StartTraining,
            pb.StartTrainingRequest(
                task_id=task_id,
                agreement_ids=negotiation_ids,
                rounds=rounds,
                optimizer=OPTIMIZER,
                learning_rate=LEARNING_RATE,
                request_id=str(uuid.uuid4()),
            ),
        ).training


def follow_training(
    researcher: RunningNode,
    run_id: str,
    names: Mapping[str, str],
    console: Console,
    timeout: float = TRAINING_TIMEOUT,
) -> pb.Training:
    """Show the run live until it ends; return its final state.

    Raises:
        TrainingError: the run failed or was stopped (with its reason), or is still
            going after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    metrics: dict[str, dict[str, float]] = {}
    last: pb.Training | None = None
    offset = 0
    with (
        researcher.client(timeout=30) as client,
        Live(Text("waiting for the first round ..."), console=console, auto_refresh=False) as live,
    ):
        while last is None or last.state not in FINISHED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            offset, last = _stream(client, run_id, offset, remaining, metrics, last, names, live)
            if last is None or last.state not in FINISHED:
                time.sleep(0.5)
    console.line()
    if last is None or last.state not in FINISHED:
        raise TrainingError(f"training run {run_id} did not end within {timeout:.0f}s")
    if last.state != pb.TRAINING_STATE_COMPLETED:
        raise TrainingError(
            f"training run {run_id} {state_name(last.state)}: {last.reason or 'no reason recorded'}"
        )
    return last


def _stream(
    client: NodeClient,
    run_id: str,
    offset: int,
    remaining: float,
    metrics: dict[str, dict[str, float]],
    last: pb.Training | None,
    names: Mapping[str, str],
    live: Live,
) -> tuple[int, pb.Training | None]:
    request = pb.WatchTrainingRequest(run_id=run_id, offset=offset)
    try:
        for response in client.stream(client.trainings.WatchTraining, request, timeout=remaining):
            last = response.training
            if response.event_json:
                offset = response.index + 1
                _merge_metrics(json.loads(response.event_json), metrics)
            live.update(progress_view(last, metrics, names), refresh=True)
    except ConnectorError as exc:
        if exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return offset, last


def _merge_metrics(event: Mapping[str, Any], metrics: dict[str, dict[str, float]]) -> None:
    if event.get("event") != "round":
        return
    for city, outcome in (event.get("cities") or {}).items():
        if outcome.get("ok"):
            metrics.setdefault(city, {}).update(
                {k: float(v) for k, v in (outcome.get("metrics") or {}).items()}
            )


def progress_view(
    training: pb.Training, metrics: Mapping[str, Mapping[str, float]], names: Mapping[str, str]
) -> Group:
    """The live view: a headline and a row per city."""
    headline = Text(
        f"training run {training.run_id}: {state_name(training.state)}, "
        f"round {training.rounds_done}/{training.rounds}",
        style="bold",
    )
    table = Table(
        "city", "state", "last round", "train MAE", "held-out MAE", "held-out RMSE", "sent"
    )
    for city in training.cities:
        seen = {**city.metrics, **metrics.get(city.participant_id, {})}
        table.add_row(
            names.get(city.participant_id, city.participant_id),
            city_state_name(city.state) + (f" ({city.error})" if city.error else ""),
            f"{city.last_round} {city.last_phase}" if city.last_round else "-",
            _number(seen, "train_mae"),
            _number(seen, "evaluate_mae"),
            _number(seen, "evaluate_rmse"),
            size_text(city.update_bytes) if city.update_bytes else "-",
        )
    return Group(headline, table)


def announce_started(console: Console, training: pb.Training) -> None:
    """Print (and flush) the line that says the run has started."""
    console.print(STARTED_LINE.format(run_id=training.run_id), highlight=False, soft_wrap=True)
    sys.stdout.flush()


def state_name(state: int) -> str:
    """``RUNNING``, ``COMPLETED``, ``FAILED``, ``STOPPED`` (as ``hanse train`` shows them)."""
    return str(pb.TrainingState.Name(state)).removeprefix("TRAINING_STATE_")


def city_state_name(state: int) -> str:
    """``WAITING``, ``OK`` or ``FAILED``."""
    return str(pb.TrainingCityState.Name(state)).removeprefix("TRAINING_CITY_STATE_")


def size_text(size: int) -> str:
    """A byte count for people (B, KiB, MiB)."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def _number(values: Mapping[str, float], name: str) -> str:
    return f"{values[name]:.4g}" if name in values else "-"
