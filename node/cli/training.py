"""``hanse train``: start federated training under agreements, follow it, show its results.

A client of the node's training management API: the researcher's node is the
aggregator, and every run it starts is covered by finalized agreements with the
cities that train. ``watch`` follows a run's progress events round by round.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from connector.errors import ConnectorError
from connector.v1 import training_management_pb2 as pb
from federation.runspec import OPTIMIZERS, STRATEGIES
from node.cli.output import (
    EXIT_CONFIG,
    ConfigOption,
    console,
    errors,
    fail,
    load,
    print_json,
    readable_errors,
    table,
)
from node.client import NodeClient

app = typer.Typer(
    help="Federated training runs under agreements: start, watch, show, list, stop.",
    no_args_is_help=True,
)

FINISHED = frozenset(
    {pb.TRAINING_STATE_COMPLETED, pb.TRAINING_STATE_FAILED, pb.TRAINING_STATE_STOPPED}
)
RETRY_SECONDS = 0.5
"""Pause before ``watch`` reopens a stream the node closed while the run went on."""


def state_name(state: int) -> str:
    """``RUNNING``, ``COMPLETED``, ``FAILED``, ``STOPPED`` (or ``UNSPECIFIED``)."""
    return str(pb.TrainingState.Name(state)).removeprefix("TRAINING_STATE_")


def city_state_name(state: int) -> str:
    """``WAITING``, ``OK`` or ``FAILED`` (or ``UNSPECIFIED``)."""
    return str(pb.TrainingCityState.Name(state)).removeprefix("TRAINING_CITY_STATE_")


def metrics_text(metrics: Mapping[str, float]) -> str:
    """``name=value`` pairs, sorted by name, four significant digits."""
    return " ".join(f"{name}={float(value):.4g}" for name, value in sorted(metrics.items()))


def size_text(size: int) -> str:
    """A byte count for people (B, KiB, MiB)."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def event_lines(event: Mapping[str, Any]) -> list[Text]:
    """The lines ``watch`` prints for one progress event."""
    kind = event.get("event")
    if kind == "start":
        spec = event.get("spec") or {}
        task = spec.get("hanse-task", "?")
        strategy = spec.get("hanse-strategy", "?")
        return [Text(f"run started: task {task}, strategy {strategy}", style="bold")]
    if kind == "end":
        status = str(event.get("status", "?"))
        reason = str(event.get("reason") or "")
        style = "bold green" if status == "completed" else "bold red"
        return [Text(f"run {status}" + (f": {reason}" if reason else ""), style=style)]
    if kind != "round":
        return [Text(f"event {kind}: {json.dumps(dict(event), sort_keys=True)}")]
    outcomes: Mapping[str, Mapping[str, Any]] = event.get("cities") or {}
    accepted = sum(1 for outcome in outcomes.values() if outcome.get("ok"))
    lines = [
        Text(
            f"round {event.get('round')}/{event.get('rounds')} {event.get('phase')}: "
            f"{accepted} of {len(outcomes)} cities ok",
            style="bold",
        )
    ]
    if event.get("aggregated") is False:
        lines.append(Text(f"  not aggregated: {event.get('reason', '')}", style="yellow"))
    width = max((len(city) for city in outcomes), default=0)
    for city in sorted(outcomes):
        outcome = outcomes[city]
        if outcome.get("ok"):
            detail = metrics_text(outcome.get("metrics") or {}) or "no metrics"
            size = size_text(int(outcome.get("bytes", 0)))
            lines.append(Text(f"  {city:<{width}}  ok       {detail}  ({size})"))
        else:
            reason = outcome.get("error") or "no reason given"
            lines.append(Text(f"  {city:<{width}}  refused  {reason}", style="red"))
    return lines


def summary_rows(training: pb.Training) -> list[list[str]]:
    """The field/value rows of ``show``."""
    created = training.create_time.ToJsonString() if training.HasField("create_time") else "-"
    return [
        ["state", state_name(training.state)],
        ["reason", training.reason or "-"],
        ["task", f"{training.task_id} ({training.task_hash})"],
        ["rounds", f"{training.rounds_done}/{training.rounds}"],
        ["strategy", training.strategy],
        ["epsilon cap", f"{training.epsilon:g}" if training.epsilon else "per agreement"],
        ["min cities / round", str(training.min_nodes)],
        [
            "aggregation floor",
            f"{training.min_aggregate} cities (minParticipants)"
            if training.min_aggregate
            else "none",
        ],
        [
            "local training",
            f"{training.local_epochs} epoch(s), batch {training.batch_size}, "
            f"{training.optimizer or 'sgd'}, learning rate {training.learning_rate:g}",
        ],
        ["created", created],
        ["folder", training.folder],
        ["model", training.model_path or "-"],
        ["metrics", training.metrics_path or "-"],
    ]


def city_rows(training: pb.Training) -> list[list[str]]:
    """The per-city rows of ``show``: agreement, last outcome, last metrics."""
    rows = []
    for city in training.cities:
        last = f"{city.last_round} {city.last_phase}" if city.last_round else "-"
        rows.append(
            [
                city.participant_id,
                city.agreement_id or "-",
                city_state_name(city.state),
                last,
                metrics_text(city.metrics) or "-",
                size_text(city.update_bytes) if city.update_bytes else "-",
                city.error or "-",
            ]
        )
    return rows


def show_training(training: pb.Training, as_json: bool) -> None:
    """Print a run: JSON, or a summary table and a table of its cities."""
    if as_json:
        print_json(json_format.MessageToDict(training, preserving_proto_field_name=True))
        return
    table(f"training run {training.run_id}", ["field", "value"], summary_rows(training))
    table(
        "cities",
        ["city", "agreement", "state", "last round", "last metrics", "update", "error"],
        city_rows(training),
    )


def watch_run(
    client: NodeClient, run_id: str, timeout: float, out: Console, offset: int = 0
) -> pb.Training:
    """Follow a run until it ends, printing each event on ``out``; return its last state.

    Raises:
        typer.Exit: the run is still going after ``timeout`` seconds.
        ConnectorError: the node refused the call (unknown run) or cannot be reached.
    """
    deadline = time.monotonic() + timeout
    last: pb.Training | None = None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task(f"training {run_id}", total=None)
        while last is None or last.state not in FINISHED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            request = pb.WatchTrainingRequest(run_id=run_id, offset=offset)
            try:
                for response in client.stream(
                    client.trainings.WatchTraining, request, timeout=remaining
                ):
                    last = response.training
                    if response.event_json:
                        offset = response.index + 1
                        for line in event_lines(json.loads(response.event_json)):
                            out.print(line, highlight=False, soft_wrap=True)
                    bar.update(task, total=last.rounds, completed=last.rounds_done)
            except ConnectorError as exc:
                if exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                break
            if last is None or last.state not in FINISHED:
                time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
    if last is None or last.state not in FINISHED:
        done = f" (round {last.rounds_done}/{last.rounds})" if last is not None else ""
        raise fail(
            f"training run {run_id} is still running after {timeout:g}s{done}; "
            f"follow it again with: hanse train watch {run_id}"
        )
    return last


def _ended(training: pb.Training, out: Console) -> None:
    """Return for a completed run (after naming its files); else fail with the reason."""
    state = state_name(training.state)
    if training.state == pb.TRAINING_STATE_COMPLETED:
        out.print(
            f"training run {training.run_id} completed: model {training.model_path}, "
            f"metrics {training.metrics_path}",
            highlight=False,
            soft_wrap=True,
        )
        return
    raise fail(f"training run {training.run_id} {state}: {training.reason or 'no reason recorded'}")


@app.command("start")
def train_start(
    task: str = typer.Option(..., "--task", help="Task (training plugin) id the agreements cover."),
    agreements: list[str] = typer.Option(
        ...,
        "--agreement",
        "-a",
        help="Agreement id (repeat for each city); see 'hanse contract list'.",
    ),
    rounds: int = typer.Option(..., "--rounds", help="Federated rounds."),
    strategy: str = typer.Option(
        "fedavg", "--strategy", help=f"Aggregation: {', '.join(STRATEGIES)}."
    ),
    epsilon: float = typer.Option(
        0.0, "--epsilon", help="Cap each city's epsilon (0: what each agreement allows)."
    ),
    min_nodes: int = typer.Option(0, "--min-nodes", help="Fewest cities per round (0: all)."),
    local_epochs: int = typer.Option(1, "--local-epochs", help="Local passes per round."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples per local step."),
    learning_rate: float = typer.Option(0.01, "--learning-rate", help="Local step size."),
    optimizer: str = typer.Option(
        "sgd",
        "--optimizer",
        help=f"Local optimiser: {', '.join(OPTIMIZERS)} (Adam trains better under DP).",
    ),
    watch: bool = typer.Option(False, "--watch", help="Follow the run until it ends."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds --watch follows the run."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """Start a federated training run across the cities of the named agreements."""
    if strategy not in STRATEGIES:
        raise fail(
            f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}", EXIT_CONFIG
        )
    if optimizer not in OPTIMIZERS:
        raise fail(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}", EXIT_CONFIG
        )
    with readable_errors(), NodeClient(load(config)) as client:
        training = client.call(
            client.trainings.StartTraining,
            pb.StartTrainingRequest(
                task_id=task,
                agreement_ids=agreements,
                rounds=rounds,
                strategy=strategy,
                epsilon=epsilon,
                min_nodes=min_nodes,
                local_epochs=local_epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                optimizer=optimizer,
                request_id=str(uuid.uuid4()),
            ),
        ).training
        cities = ", ".join(c.participant_id for c in training.cities)
        (errors if as_json else console).print(
            f"training run {training.run_id} started: task {training.task_id}, "
            f"{training.rounds} rounds, {training.strategy}, cities {cities}",
            highlight=False,
            soft_wrap=True,
        )
        if watch:
            training = watch_run(client, training.run_id, timeout, errors if as_json else console)
    if as_json:
        print_json(json_format.MessageToDict(training, preserving_proto_field_name=True))
    if watch:
        _ended(training, errors if as_json else console)


@app.command("watch")
def train_watch(
    run_id: str = typer.Argument(..., help="Training run id."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds to follow the run."),
    offset: int = typer.Option(0, "--from", help="Skip this many progress events."),
    as_json: bool = typer.Option(
        False, "--json", help="Progress on stderr; the final run as JSON on stdout."
    ),
    config: Path = ConfigOption,
) -> None:
    """Follow a run round by round; exit 0 when it completes, non-zero if it fails or stops."""
    with readable_errors(), NodeClient(load(config)) as client:
        training = watch_run(client, run_id, timeout, errors if as_json else console, offset)
    if as_json:
        print_json(json_format.MessageToDict(training, preserving_proto_field_name=True))
    _ended(training, errors if as_json else console)


@app.command("show")
def train_show(
    run_id: str = typer.Argument(..., help="Training run id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """Show a run: state, rounds, each city's last metrics, model and metrics files."""
    with readable_errors(), NodeClient(load(config)) as client:
        training = client.call(
            client.trainings.GetTraining, pb.GetTrainingRequest(run_id=run_id)
        ).training
    show_training(training, as_json)


@app.command("list")
def train_list(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """List this node's training runs, newest first."""
    found: list[pb.Training] = []
    with readable_errors(), NodeClient(load(config)) as client:
        token = ""
        while True:
            page = client.call(
                client.trainings.ListTrainings,
                pb.ListTrainingsRequest(page_size=500, page_token=token),
            )
            found.extend(page.trainings)
            token = page.next_page_token
            if not token:
                break
    if as_json:
        print_json([json_format.MessageToDict(t, preserving_proto_field_name=True) for t in found])
        return
    table(
        "training runs",
        ["run", "state", "task", "rounds", "cities", "created", "reason"],
        [
            [
                t.run_id,
                state_name(t.state),
                t.task_id,
                f"{t.rounds_done}/{t.rounds}",
                str(len(t.cities)),
                t.create_time.ToJsonString() if t.HasField("create_time") else "-",
                t.reason or "-",
            ]
            for t in found
        ],
    )


@app.command("stop")
def train_stop(
    run_id: str = typer.Argument(..., help="Training run id."),
    config: Path = ConfigOption,
) -> None:
    """Stop a running run."""
    with readable_errors(), NodeClient(load(config)) as client:
        training = client.call(
            client.trainings.StopTraining,
            pb.StopTrainingRequest(run_id=run_id, request_id=str(uuid.uuid4())),
        ).training
    console.print(f"training run {training.run_id}: {state_name(training.state)}", highlight=False)


@app.command("tasks")
def train_tasks(
    hash_of: str = typer.Option(
        "", "--hash", help="Print only this task's content hash (for contract requests)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the training tasks installed with this Hanse, with their content hashes."""
    from federation.tasks import TaskNotFoundError, installed_tasks, load_task

    if hash_of:
        try:
            typer.echo(load_task(hash_of).content_hash())
        except TaskNotFoundError as exc:
            raise fail(str(exc)) from exc
        return
    tasks = installed_tasks()
    if as_json:
        print_json([{"id": task_id, "hash": digest} for task_id, digest in sorted(tasks.items())])
        return
    table("installed tasks", ["task", "content hash"], [[k, v] for k, v in sorted(tasks.items())])
