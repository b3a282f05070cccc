"""The aggregator role: a researcher's node runs the SuperLink and its training runs.

A run is started from finalized agreements this node holds as consumer. For each,
the aggregator verifies both signatures, registers with its SuperLink exactly the
key that signed the agreement for the city (the city's SuperNode authenticates with
that key), and nothing else. Runs live in ``<data_dir>/training/<run id>/``:
``spec.json``, the ServerApp's ``progress.jsonl``, then ``model.pt`` and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from connector.agreement_terms import agreement_id_of
from connector.audit import AuditLog
from connector.clock import Clock, SystemClock
from connector.negotiation.model import NegotiationRecord, NegotiationStore
from connector.negotiation.states import NegotiationState, Role
from connector.signing import SignedAgreement, SigningError, verify_signed_agreement
from federation.flower.fab import build_run_fab
from federation.flower.fleet_proxy import FleetProxy
from federation.flower.keys import public_key_pem_of_certificate
from federation.flower.process import FlowerProcessError
from federation.flower.superlink import SuperLink, SuperLinkSettings
from federation.progress import METRICS_FILE, MODEL_FILE, read_progress
from federation.runspec import OptimizerName, RunSpec, RunSpecError, StrategyName
from federation.tasks import TaskNotFoundError, load_task
from node.config import LoadedConfig
from node.training.agreements import AgreementNotFoundError, find_agreement

_log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A run cannot be started or found; the message says why and what to do."""


@dataclass(frozen=True)
class RunRequest:
    """What a researcher asks for (``hanse train start``)."""

    task_id: str
    agreements: Sequence[str]
    rounds: int
    strategy: StrategyName = "fedavg"
    epsilon: float = 0.0
    """Ask cities for at most this epsilon (0: what each agreement allows)."""
    min_nodes: int = 0
    """Fewest cities per round (0: all of them)."""
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.01
    optimizer: OptimizerName = "sgd"
    """The cities' local optimiser: sgd or adam."""


@dataclass
class TrainingRun:
    """One run as the aggregator sees it."""

    run_id: str
    spec: RunSpec
    cities: dict[str, str]
    """City participant id -> agreement id."""
    created: str
    state: str = "RUNNING"
    """RUNNING, COMPLETED, FAILED or STOPPED."""
    reason: str = ""
    rounds_done: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """Where the run's files are."""
        return self.spec.output

    def to_json(self) -> dict[str, Any]:
        """A JSON summary (for ``--json`` and the management API)."""
        return {
            "runId": self.run_id,
            "state": self.state,
            "reason": self.reason,
            "task": self.spec.task_id,
            "taskHash": self.spec.task_hash,
            "rounds": self.spec.rounds,
            "roundsDone": self.rounds_done,
            "strategy": self.spec.strategy,
            "epsilon": self.spec.epsilon,
            "cities": self.cities,
            "created": self.created,
            "folder": str(self.folder),
            "model": str(self.folder / MODEL_FILE) if self.state == "COMPLETED" else "",
            "metrics": str(self.folder / METRICS_FILE) if self.state == "COMPLETED" else "",
        }


class Aggregator:
    """Starts the SuperLink on first use and runs training under agreements."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: NegotiationStore,
        audit: AuditLog,
        clock: Clock | None = None,
    ) -> None:
        self._config = loaded
        self._store = store
        self._audit = audit
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._link: SuperLink | None = None
        self._proxy: FleetProxy | None = None
        self.root = loaded.data_dir / "training"

    @property
    def enabled(self) -> bool:
        """Whether the node's config turns the aggregator role on."""
        return self._config.model.aggregator.enabled

    def superlink(self) -> SuperLink:
        """The running SuperLink, started now if it is not yet.

        Raises:
            TrainingError: the aggregator role is off in the node's config.
        """
        if not self.enabled:
            raise TrainingError(
                "this node is not an aggregator; set aggregator.enabled: true in its config"
            )
        with self._lock:
            if self._link is None or not self._link.process.alive():
                self._stop_link()
                section = self._config.model.aggregator
                host, _, port = section.listen.rpartition(":")
                tls = self._config.model.tls
                cert = self._config.resolve(tls.cert)
                key = self._config.resolve(tls.key)
                ca = self._config.resolve(tls.trust_bundle)
                # The SuperLink listens on loopback only; cities reach its Fleet API (and
                # nothing else of it) through the proxy on the configured address.
                self._link = SuperLink(
                    SuperLinkSettings(
                        cert=cert,
                        key=key,
                        ca=ca,
                        state_dir=self._config.data_dir / "superlink",
                        host="127.0.0.1",
                    )
                )
                try:
                    self._proxy = FleetProxy(
                        listen_host=host.strip("[]"),
                        listen_port=int(port),
                        upstream=f"https://{self._link.address}",
                        cert=cert,
                        key=key,
                        ca=ca,
                    )
                except FlowerProcessError:
                    self._stop_link()
                    raise
                _log.info(
                    "Fleet API served on %s (SuperLink %s)", self._proxy.address, self._link.address
                )
            return self._link

    def start(self, request: RunRequest) -> TrainingRun:
        """Check the agreements, register the cities' keys, submit the run.

        Raises:
            TrainingError: an agreement is unknown, not finalized, not this node's, for
                another task or fewer rounds, or has no valid signatures; the task is
                not installed; or the settings are invalid. Nothing is registered or
                started then.
        """
        try:
            task = load_task(request.task_id)
        except TaskNotFoundError as exc:
            raise TrainingError(str(exc)) from exc
        task_hash = task.content_hash()
        if not request.agreements:
            raise TrainingError("name at least one agreement (--agreement)")
        records = [self._usable(a, request, task_hash) for a in request.agreements]
        cities: dict[str, str] = {}
        for name, record in zip(request.agreements, records, strict=True):
            if record.counterparty_id in cities:
                raise TrainingError(
                    f"agreements {cities[record.counterparty_id]} and {name} are both with "
                    f"{record.counterparty_id}; name one agreement per city"
                )
            cities[record.counterparty_id] = agreement_id_of(record)
        min_nodes = request.min_nodes or len(cities)
        for name, record in zip(request.agreements, records, strict=True):
            _check_participants(name, record, len(cities), min_nodes)
        keys = {
            record.counterparty_id: _provider_key(record, name)
            for record, name in zip(records, request.agreements, strict=True)
        }
        run_dir_token = self._clock.now().strftime("%Y%m%dT%H%M%S%f")
        out = self.root / run_dir_token
        try:
            spec = RunSpec(
                task_id=task.id,
                task_hash=task_hash,
                rounds=request.rounds,
                agreements=cities,
                strategy=request.strategy,
                min_nodes=min_nodes,
                min_aggregate=max(map(_min_participants, records), default=0),
                local_epochs=request.local_epochs,
                batch_size=request.batch_size,
                learning_rate=request.learning_rate,
                optimizer=request.optimizer,
                epsilon=request.epsilon,
                round_timeout=self._config.model.aggregator.round_timeout_seconds,
                out_dir=str(out),
                trust_bundle=str(self._config.resolve(self._config.model.tls.trust_bundle)),
            )
        except RunSpecError as exc:
            raise TrainingError(str(exc)) from exc
        link = self.superlink()
        nodes = {link.register_node(keys[city], city): city for city in cities}
        spec = dataclasses.replace(spec, nodes=nodes)
        config = spec.to_run_config()
        flower_run = link.start_run(build_run_fab(config), config)
        run_id = str(flower_run)
        out.mkdir(parents=True, exist_ok=True)
        created = self._clock.now().astimezone(UTC).isoformat().replace("+00:00", "Z")
        saved = {"runId": run_id, "created": created, "spec": config, "cities": cities}
        (out / "spec.json").write_text(json.dumps(saved, indent=2, sort_keys=True))
        index = self.root / "runs.json"
        runs = json.loads(index.read_text()) if index.exists() else {}
        runs[run_id] = out.name
        index.write_text(json.dumps(runs, indent=2, sort_keys=True))
        self._audit.append(
            "training.run.started",
            actor="operator",
            subject=run_id,
            payload={
                "task": task.id,
                "taskHash": task_hash,
                "rounds": spec.rounds,
                "strategy": spec.strategy,
                "agreements": cities,
                "nodes": {str(k): v for k, v in nodes.items()},
            },
        )
        return self.get(run_id)

    def _usable(self, name: str, request: RunRequest, task_hash: str) -> NegotiationRecord:
        try:
            record = find_agreement(self._store, name, Role.CONSUMER)
        except AgreementNotFoundError as exc:
            raise TrainingError(f"{exc}; see `hanse contract list`") from exc
        if record.state != NegotiationState.FINALIZED:
            raise TrainingError(f"agreement {name} is {record.state.value}, not FINALIZED")
        task = record.usage.get("task") or {}
        if task.get("id") != request.task_id:
            raise TrainingError(
                f"agreement {name} covers task {task.get('id') or '(none)'}, not {request.task_id}"
            )
        if task.get("hash") and task["hash"] != task_hash:
            raise TrainingError(
                f"agreement {name} covers {request.task_id} with hash {task['hash']}; "
                f"this node's task has {task_hash}"
            )
        aggregator = record.usage.get("aggregator") or self._config.model.node.participant_id
        if aggregator != self._config.model.node.participant_id:
            raise TrainingError(f"agreement {name} names aggregator {aggregator}, not this node")
        max_rounds = record.usage.get("max_rounds")
        if isinstance(max_rounds, int) and request.rounds > max_rounds:
            raise TrainingError(
                f"agreement {name} allows {max_rounds} rounds, not {request.rounds}"
            )
        trust = self._config.resolve(self._config.model.tls.trust_bundle).read_bytes()
        try:
            signed = SignedAgreement.from_json(
                {"agreement": record.agreement, "signatures": list(record.signatures)}
            )
            report = verify_signed_agreement(signed, trust)
        except SigningError as exc:
            raise TrainingError(f"agreement {name} cannot be verified: {exc}") from exc
        if not report.ok:
            raise TrainingError(f"agreement {name} fails verification: {report.problem}")
        return record

    def get(self, run_id: str) -> TrainingRun:
        """A run with its progress so far.

        Raises:
            TrainingError: no such run on this node.
        """
        index = self.root / "runs.json"
        runs = json.loads(index.read_text()) if index.exists() else {}
        if run_id not in runs:
            raise TrainingError(f"this node has no training run {run_id}; see `hanse train list`")
        folder = self.root / runs[run_id]
        record = json.loads((folder / "spec.json").read_text())
        run = TrainingRun(
            run_id=run_id,
            spec=RunSpec.from_run_config(record["spec"]),
            cities=record["cities"],
            created=record["created"],
        )
        run.events = list(read_progress(folder))
        run.rounds_done = max(
            (e["round"] for e in run.events if e["event"] == "round" and e["phase"] == "train"),
            default=0,
        )
        end = next((e for e in run.events if e["event"] == "end"), None)
        if end is not None:
            run.state = "COMPLETED" if end["status"] == "completed" else "FAILED"
            run.reason = str(end.get("reason", ""))
        elif self._link is not None:
            try:
                status = self._link.run_status(int(run_id))
            except KeyError:
                status = None
            if status is not None and status.finished:
                run.state = "FAILED" if status.sub_status != "completed" else "COMPLETED"
                run.state = "STOPPED" if status.sub_status == "stopped" else run.state
                run.reason = status.details
        return run

    def list(self) -> list[TrainingRun]:
        """Every run on this node, newest first."""
        index = self.root / "runs.json"
        runs = json.loads(index.read_text()) if index.exists() else {}
        found = [self.get(run_id) for run_id in runs]
        return sorted(found, key=lambda r: r.created, reverse=True)

    def follow(self, run_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
        """The run's progress events from index ``after`` on (what is written so far)."""
        run = self.get(run_id)
        yield from run.events[after:]

    def stop(self) -> None:
        """Stop the Fleet proxy and the SuperLink (and any run in it)."""
        with self._lock:
            self._stop_link()

    def _stop_link(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._link is not None:
            self._link.stop()
            self._link = None


def _min_participants(record: NegotiationRecord) -> int:
    """The fewest cities per round the agreement's usage states (0: it states none)."""
    needed = record.usage.get("min_participants")
    return needed if isinstance(needed, int) and not isinstance(needed, bool) else 0


def _check_participants(name: str, record: NegotiationRecord, cities: int, min_nodes: int) -> None:
    """Refuse a run whose rounds may have fewer cities than the agreement's ``minParticipants``.

    The city's runner refuses such a run too (before reading any data); refusing here
    spares starting a run that every such city would refuse.

    Raises:
        TrainingError: the run names fewer cities, or asks for fewer per round.
    """
    needed = _min_participants(record)
    if not needed:
        return
    if cities < needed:
        raise TrainingError(
            f"agreement {name} allows training only in rounds of at least {needed} cities "
            f"and the run names {cities}; name the agreements of at least {needed} cities"
        )
    if min_nodes < needed:
        raise TrainingError(
            f"agreement {name} allows training only in rounds of at least {needed} cities "
            f"and the run asks for at least {min_nodes}; start it with --min-nodes {needed} "
            "or more"
        )


def _provider_key(record: NegotiationRecord, name: str) -> bytes:
    for signature in record.signatures:
        if signature.get("role") == "provider":
            return public_key_pem_of_certificate(str(signature["certificatePem"]))
    raise TrainingError(f"agreement {name} carries no provider signature")
