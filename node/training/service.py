"""Management API: a researcher's training runs on their aggregator node.

:class:`TrainingManagementServicer` puts the :class:`~node.training.aggregator.Aggregator`
on the wire: start a run under agreements, show and list runs, follow a run's
``progress.jsonl`` as a stream, stop a run. The aggregator's refusals become
errors with a reason (``TRAINING_REFUSED``, ``AGREEMENT_NOT_FOUND``,
``TASK_NOT_FOUND``, ``TRAINING_NOT_FOUND`` ...); nothing is started when a run is refused.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import grpc

from connector.errors import (
    ConnectorError,
    invalid_argument,
    not_found,
    to_rpc_status,
    unavailable,
)
from connector.pagination import decode_token, encode_token, page_size
from connector.services.idempotency import once
from connector.store import RequestLog
from connector.v1 import training_management_pb2 as pb
from connector.v1 import training_management_pb2_grpc
from connector.wire import timestamp
from federation.flower.process import FlowerProcessError
from federation.runspec import OPTIMIZERS, STRATEGIES, OptimizerName, RunSpecError, StrategyName
from federation.tasks import TaskNotFoundError
from node.training.aggregator import Aggregator, RunRequest, TrainingError, TrainingRun
from node.training.agreements import AgreementNotFoundError

SERVICE = pb.DESCRIPTOR.services_by_name["TrainingManagementService"]
"""The service descriptor (for health and reflection)."""

POLL_SECONDS = 0.5
"""How often WatchTraining reads the run's progress file."""

WATCH_MAX_SECONDS = 600.0
"""The longest one WatchTraining stream lasts; the client watches again from its offset."""

STOP_WAIT_SECONDS = 10.0
"""How long StopTraining waits for the run to be reported stopped."""

_STATES = {
    "RUNNING": pb.TRAINING_STATE_RUNNING,
    "COMPLETED": pb.TRAINING_STATE_COMPLETED,
    "FAILED": pb.TRAINING_STATE_FAILED,
    "STOPPED": pb.TRAINING_STATE_STOPPED,
}
_LIST_QUERY = "trainings"


def city_progress(
    cities: Mapping[str, str], events: Sequence[Mapping[str, Any]]
) -> list[pb.TrainingCity]:
    """Each city of a run with its last recorded outcome, from the run's progress events.

    Args:
        cities: City participant id -> agreement id.
        events: The run's progress events, in order.

    Returns:
        The run's cities in the order given, then any other participant the events name.
    """
    found = {
        city: pb.TrainingCity(
            participant_id=city,
            agreement_id=agreement,
            state=pb.TRAINING_CITY_STATE_WAITING,
        )
        for city, agreement in cities.items()
    }
    for event in events:
        if event.get("event") != "round":
            continue
        phase = str(event.get("phase", ""))
        for city, outcome in (event.get("cities") or {}).items():
            entry = found.setdefault(
                city,
                pb.TrainingCity(participant_id=city, state=pb.TRAINING_CITY_STATE_WAITING),
            )
            entry.last_round = int(event.get("round", 0))
            entry.last_phase = phase
            if outcome.get("ok"):
                entry.state = pb.TRAINING_CITY_STATE_OK
                entry.error = ""
                if phase == "train":
                    entry.update_bytes = int(outcome.get("bytes", 0))
                for name, value in (outcome.get("metrics") or {}).items():
                    entry.metrics[f"{phase}_{name}"] = float(value)
            else:
                entry.state = pb.TRAINING_CITY_STATE_FAILED
                entry.error = str(outcome.get("error") or "no reason given")
    return list(found.values())


def training_to_pb(run: TrainingRun) -> pb.Training:
    """The wire form of a run."""
    spec = run.spec
    summary = run.to_json()
    message = pb.Training(
        run_id=run.run_id,
        state=_STATES.get(run.state, pb.TRAINING_STATE_UNSPECIFIED),
        reason=run.reason,
        task_id=spec.task_id,
        task_hash=spec.task_hash,
        rounds=spec.rounds,
        rounds_done=run.rounds_done,
        strategy=spec.strategy,
        epsilon=spec.epsilon,
        min_nodes=spec.min_nodes,
        min_aggregate=spec.min_aggregate,
        local_epochs=spec.local_epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        optimizer=spec.optimizer,
        cities=city_progress(run.cities, run.events),
        folder=str(run.folder),
        model_path=str(summary["model"]),
        metrics_path=str(summary["metrics"]),
        event_count=len(run.events),
    )
    try:
        created = timestamp(datetime.fromisoformat(run.created))
    except ValueError:
        created = None
    if created is not None:
        message.create_time.CopyFrom(created)
    return message


def start_refusal(error: TrainingError) -> ConnectorError:
    """The wire error for a run the aggregator refused to start."""
    cause = error.__cause__
    if isinstance(cause, AgreementNotFoundError):
        return not_found("AGREEMENT_NOT_FOUND", str(error))
    if isinstance(cause, TaskNotFoundError):
        return not_found("TASK_NOT_FOUND", str(error))
    if isinstance(cause, RunSpecError):
        return invalid_argument(str(error))
    return ConnectorError(grpc.StatusCode.FAILED_PRECONDITION, "TRAINING_REFUSED", str(error))


def run_request(request: pb.StartTrainingRequest) -> RunRequest:
    """The aggregator's request, with 0/empty meaning the default; bad fields refused.

    Raises:
        ConnectorError: INVALID_ARGUMENT naming the first bad field (nothing is started).
    """
    if not request.task_id:
        raise invalid_argument("name the task to train (--task)", "task_id")
    if not request.agreement_ids:
        raise invalid_argument(
            "name at least one agreement (--agreement); see `hanse contract list`",
            "agreement_ids",
        )
    if request.rounds < 1:
        raise invalid_argument(f"rounds must be 1 or more, not {request.rounds}", "rounds")
    strategy = request.strategy or "fedavg"
    if strategy not in STRATEGIES:
        raise invalid_argument(
            f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}", "strategy"
        )
    optimizer = request.optimizer or "sgd"
    if optimizer not in OPTIMIZERS:
        raise invalid_argument(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}", "optimizer"
        )
    checks = (
        ("epsilon", request.epsilon, "0 (no cap) or positive"),
        ("min_nodes", request.min_nodes, "0 (all cities) or positive"),
        ("local_epochs", request.local_epochs, "0 (default 1) or positive"),
        ("batch_size", request.batch_size, "0 (default 64) or positive"),
        ("learning_rate", request.learning_rate, "0 (default 0.01) or positive"),
    )
    for name, value, allowed in checks:
        if not math.isfinite(value) or value < 0:
            raise invalid_argument(f"{name} must be {allowed}, not {value}", name)
    defaults = RunRequest(task_id="", agreements=(), rounds=1)
    chosen: StrategyName = next(s for s in STRATEGIES if s == strategy)
    optimizer_chosen: OptimizerName = next(o for o in OPTIMIZERS if o == optimizer)
    return RunRequest(
        task_id=request.task_id,
        agreements=tuple(request.agreement_ids),
        rounds=request.rounds,
        strategy=chosen,
        epsilon=request.epsilon,
        min_nodes=request.min_nodes,
        local_epochs=request.local_epochs or defaults.local_epochs,
        batch_size=request.batch_size or defaults.batch_size,
        learning_rate=request.learning_rate or defaults.learning_rate,
        optimizer=optimizer_chosen,
    )


class TrainingManagementServicer(training_management_pb2_grpc.TrainingManagementServiceServicer):
    """Starts, shows, follows and stops the runs of this node's aggregator."""

    def __init__(
        self,
        aggregator: Aggregator,
        requests: RequestLog,
        *,
        poll_seconds: float = POLL_SECONDS,
        stop_wait_seconds: float = STOP_WAIT_SECONDS,
        watch_max_seconds: float = WATCH_MAX_SECONDS,
    ) -> None:
        self._aggregator = aggregator
        self._requests = requests
        self._poll = poll_seconds
        self._stop_wait = stop_wait_seconds
        self._watch_max = watch_max_seconds
        self._closing = threading.Event()

    def close(self) -> None:
        """End every open WatchTraining stream now (the node is stopping)."""
        self._closing.set()

    def StartTraining(  # noqa: N802 - the gRPC method name
        self, request: pb.StartTrainingRequest, context: grpc.ServicerContext
    ) -> pb.StartTrainingResponse:
        """Check the agreements and start a run across their cities."""
        asked = run_request(request)
        if not self._aggregator.enabled:
            raise ConnectorError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "TRAINING_REFUSED",
                "this node is not an aggregator; set aggregator.enabled: true in its config "
                "and restart it",
            )

        def effect() -> pb.StartTrainingResponse:
            try:
                run = self._aggregator.start(asked)
            except TrainingError as exc:
                raise start_refusal(exc) from exc
            except FlowerProcessError as exc:
                raise unavailable(
                    "INTERNAL",
                    f"the aggregator's Flower SuperLink failed: {exc}; see the node's log "
                    "and its data folder's superlink/superlink.log, then try again",
                ) from exc
            return pb.StartTrainingResponse(training=training_to_pb(run))

        return once(
            self._requests, "StartTraining", request.request_id, pb.StartTrainingResponse, effect
        )

    def GetTraining(  # noqa: N802 - the gRPC method name
        self, request: pb.GetTrainingRequest, context: grpc.ServicerContext
    ) -> pb.GetTrainingResponse:
        """One run with its progress so far."""
        return pb.GetTrainingResponse(training=training_to_pb(self._get(request.run_id)))

    def ListTrainings(  # noqa: N802 - the gRPC method name
        self, request: pb.ListTrainingsRequest, context: grpc.ServicerContext
    ) -> pb.ListTrainingsResponse:
        """The runs, newest first, a page at a time."""
        size = page_size(request.page_size)
        after = decode_token(request.page_token, _LIST_QUERY)
        runs = self._aggregator.list()
        start = 0
        if after:
            ids = [run.run_id for run in runs]
            if after not in ids:
                raise invalid_argument(
                    "page_token names a run this node does not have; start again without a token",
                    "page_token",
                    "PAGE_TOKEN_INVALID",
                )
            start = ids.index(after) + 1
        page = runs[start : start + size]
        more = start + size < len(runs)
        return pb.ListTrainingsResponse(
            trainings=[training_to_pb(run) for run in page],
            next_page_token=encode_token(page[-1].run_id, _LIST_QUERY) if more else "",
        )

    def WatchTraining(  # noqa: N802 - the gRPC method name
        self, request: pb.WatchTrainingRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchTrainingResponse]:
        """Stream the run's progress events from ``offset`` until the run ends.

        Not a generator itself: a bad request or unknown run is refused before the
        stream opens, so the error interceptor answers it with its reason.
        """
        if request.offset < 0:
            raise invalid_argument(f"offset must be 0 or more, not {request.offset}", "offset")
        run = self._get(request.run_id)
        return self._follow(run, request.offset, context)

    def StopTraining(  # noqa: N802 - the gRPC method name
        self, request: pb.StopTrainingRequest, context: grpc.ServicerContext
    ) -> pb.StopTrainingResponse:
        """Ask the SuperLink to stop a running run; wait briefly until it is stopped."""
        run = self._get(request.run_id)

        def effect() -> pb.StopTrainingResponse:
            current = self._get(run.run_id)
            if current.state != "RUNNING":
                raise ConnectorError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "TRAINING_FINISHED",
                    f"training run {run.run_id} has ended already ({current.state}); "
                    "nothing to stop",
                    metadata={"run_id": run.run_id, "state": current.state},
                )
            try:
                self._aggregator.superlink().stop_run(int(run.run_id))
            except TrainingError as exc:
                raise start_refusal(exc) from exc
            deadline = time.monotonic() + self._stop_wait
            while current.state == "RUNNING" and time.monotonic() < deadline:
                time.sleep(self._poll)
                current = self._get(run.run_id)
            return pb.StopTrainingResponse(training=training_to_pb(current))

        return once(
            self._requests, "StopTraining", request.request_id, pb.StopTrainingResponse, effect
        )

    def _get(self, run_id: str) -> TrainingRun:
        if not run_id:
            raise invalid_argument("name the training run (its run id)", "run_id")
        try:
            return self._aggregator.get(run_id)
        except TrainingError as exc:
            raise not_found("TRAINING_NOT_FOUND", str(exc), run_id=run_id) from exc

    def _follow(
        self, run: TrainingRun, offset: int, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchTrainingResponse]:
        done = threading.Event()
        context.add_callback(done.set)
        ends = time.monotonic() + self._watch_max
        index = offset
        while True:
            training = training_to_pb(run)
            sent_end = False
            for event in run.events[index:]:
                sent_end = event.get("event") == "end"
                yield pb.WatchTrainingResponse(
                    index=index, event_json=json.dumps(event, sort_keys=True), training=training
                )
                index += 1
            if run.state != "RUNNING":
                if not sent_end:
                    # Ended without an end event (stopped), or the caller resumed past it.
                    yield pb.WatchTrainingResponse(
                        index=len(run.events), event_json="", training=training
                    )
                return
            if done.wait(self._poll) or not context.is_active():
                return
            if self._closing.is_set() or time.monotonic() >= ends:
                return  # the run goes on; the client watches again from its offset
            try:
                run = self._aggregator.get(run.run_id)
            except TrainingError as exc:
                error = not_found("TRAINING_NOT_FOUND", str(exc), run_id=run.run_id)
                context.abort_with_status(to_rpc_status(error))
                return


def add_training_service(
    server: grpc.Server,
    aggregator: Aggregator,
    requests: RequestLog,
    *,
    poll_seconds: float = POLL_SECONDS,
    watch_max_seconds: float = WATCH_MAX_SECONDS,
) -> TrainingManagementServicer:
    """Serve the training management API on ``server`` (the management server).

    Args:
        server: The node's management gRPC server (admin token, error interceptor).
        aggregator: The node's aggregator; its config decides whether runs may start.
        requests: The request log that makes StartTraining and StopTraining idempotent.
        poll_seconds: How often WatchTraining reads a run's progress file.
        watch_max_seconds: The longest one WatchTraining stream lasts.

    Returns:
        The servicer added; call its :meth:`~TrainingManagementServicer.close` when the
        node stops, so open watches end at once.
    """
    servicer = TrainingManagementServicer(
        aggregator, requests, poll_seconds=poll_seconds, watch_max_seconds=watch_max_seconds
    )
    training_management_pb2_grpc.add_TrainingManagementServiceServicer_to_server(servicer, server)
    return servicer
