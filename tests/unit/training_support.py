"""A researcher's node for the training API tests: config, PKI, store, aggregator, server.

Everything is real: a federation CA and certificates, the node folder ``hanse node
init`` writes, a migrated SQLite store with agreements signed by both parties, the
lead's :class:`~node.training.aggregator.Aggregator`, and a gRPC server with the
management API's interceptors. No Flower process is started: runs that "happened"
are recorded the way the aggregator records them, and their ``progress.jsonl`` is
written with the ServerApp's own :class:`~federation.progress.ProgressWriter`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from connector.identity import init_ca, issue_certificate, server_credentials
from connector.interceptors.admin import AdminTokenInterceptor
from connector.interceptors.errors import ErrorInterceptor
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState, Role
from connector.signing import sign_agreement
from connector.store import (
    SqlAuditLog,
    SqlNegotiationStore,
    SqlRequestLog,
    create_engine,
    migrate,
    sqlite_url,
)
from federation.progress import ProgressWriter
from federation.runspec import RunSpec
from federation.tasks import load_task
from node.config import LoadedConfig, load_config
from node.endpoints import Endpoints, write_endpoints
from node.server import load_node_tls
from node.setup import NodeInit
from node.training.aggregator import Aggregator
from node.training.service import TrainingManagementServicer, add_training_service

TASK = "forecast-next-hour"
RESEARCHER = "urn:hanse:researcher"
CITY1 = "urn:hanse:city1"
CITY2 = "urn:hanse:city2"
POLL = 0.05


def task_hash() -> str:
    """The installed forecasting task's content hash."""
    return load_task(TASK).content_hash()


@dataclass
class Researcher:
    """The researcher's node: config, stores, aggregator, and the federation's parties."""

    root: Path
    loaded: LoadedConfig
    store: SqlNegotiationStore
    audit: SqlAuditLog
    requests: SqlRequestLog
    aggregator: Aggregator
    party_files: dict[str, tuple[bytes, bytes]]
    """Participant id -> (certificate PEM, key PEM)."""

    def agreement(
        self,
        name: str,
        city: str = CITY1,
        *,
        state: NegotiationState = NegotiationState.FINALIZED,
        usage: Mapping[str, Any] | None = None,
        signed: bool = True,
    ) -> str:
        """Store a negotiation with ``city`` as consumer; return its agreement id."""
        agreement_id = f"urn:uuid:agreement-{name}"
        agreement = {
            "@id": agreement_id,
            "@type": "Agreement",
            "target": f"urn:uuid:dataset-{name}",
            "timestamp": "2026-03-01T12:00:00Z",
            "assigner": city,
            "assignee": RESEARCHER,
            "permission": [{"action": "use"}],
        }
        signatures: tuple[Mapping[str, Any], ...] = ()
        if signed:
            signatures = tuple(
                sign_agreement(
                    agreement,
                    role=role,
                    cert_pem=self.party_files[party][0],
                    key_pem=self.party_files[party][1],
                ).to_json()
                for role, party in (("provider", city), ("consumer", RESEARCHER))
            )
        self.store.create(
            NegotiationRecord(
                id=f"urn:uuid:negotiation-{name}",
                role=Role.CONSUMER,
                state=state,
                consumer_pid=f"urn:uuid:negotiation-{name}",
                provider_pid=f"urn:uuid:provider-{name}",
                counterparty_id=city,
                counterparty_address="127.0.0.1:1",
                dataset_id=f"dataset-{name}",
                offer_id="research",
                offer={"@id": "research", "@type": "Offer", "target": f"dataset-{name}"},
                usage=usage
                if usage is not None
                else {"purpose": "forecasting", "task": {"id": TASK, "hash": task_hash()}},
                agreement=agreement,
                signatures=signatures,
            )
        )
        return agreement_id

    def record_run(
        self,
        run_id: str,
        cities: Mapping[str, str],
        *,
        rounds: int = 2,
        created: str = "2026-03-01T12:00:00Z",
        min_aggregate: int = 0,
    ) -> ProgressWriter:
        """Record a run as :meth:`Aggregator.start` does; return its progress writer."""
        out = self.aggregator.root / f"run-{run_id}"
        spec = RunSpec(
            task_id=TASK,
            task_hash=task_hash(),
            rounds=rounds,
            agreements=dict(cities),
            strategy="fedprox",
            min_nodes=len(cities),
            min_aggregate=min_aggregate,
            out_dir=str(out),
        )
        out.mkdir(parents=True, exist_ok=True)
        saved = {
            "runId": run_id,
            "created": created,
            "spec": spec.to_run_config(),
            "cities": dict(cities),
        }
        (out / "spec.json").write_text(json.dumps(saved, indent=2, sort_keys=True))
        index = self.aggregator.root / "runs.json"
        runs = json.loads(index.read_text()) if index.exists() else {}
        runs[run_id] = out.name
        index.write_text(json.dumps(runs, indent=2, sort_keys=True))
        return ProgressWriter(out)

    def nothing_started(self) -> bool:
        """No SuperLink, no run folder, no run on the record."""
        kinds = {entry.kind for entry in self.audit.entries(limit=1000)}
        return (
            self.aggregator._link is None
            and not self.aggregator.root.exists()
            and "training.run.started" not in kinds
        )


def round_event(
    writer: ProgressWriter,
    round_no: int,
    outcomes: Mapping[str, Mapping[str, Any]],
    *,
    phase: str = "train",
    rounds: int = 2,
) -> None:
    """Write one ``round`` event as the ServerApp's WatchedGrid does."""
    writer.write("round", phase=phase, round=round_no, rounds=rounds, cities=dict(outcomes))


def ok(loss: float, size: int = 2048, **metrics: float) -> dict[str, Any]:
    """An accepted reply's outcome."""
    return {"ok": True, "metrics": {"loss": loss, **metrics}, "bytes": size}


def refused(reason: str) -> dict[str, Any]:
    """A refused or missing reply's outcome."""
    return {"ok": False, "error": reason}


def write_completed_run(writer: ProgressWriter, city_ok: str, city_refused: str) -> None:
    """Two rounds (train and evaluate) in which one city refused, then a completed end."""
    writer.write("start", spec={"hanse-task": TASK, "hanse-strategy": "fedprox"})
    for round_no in (1, 2):
        round_event(
            writer,
            round_no,
            {city_ok: ok(0.5 / round_no), city_refused: refused("the agreement has expired")},
        )
        round_event(
            writer,
            round_no,
            {city_ok: {"ok": True, "metrics": {"mae": 0.25 / round_no}, "bytes": 0}},
            phase="evaluate",
        )
    writer.write("end", status="completed", rounds=2)
    (writer.path.parent / "model.pt").write_bytes(b"model")
    (writer.path.parent / "metrics.json").write_text("{}")


def make_researcher(root: Path, *, enabled: bool = True) -> Researcher:
    """A researcher's node folder, store and aggregator under ``root``."""
    pki = root / "pki"
    init_ca(pki)
    loaded = NodeInit(
        name="researcher",
        pki_dir=pki,
        out_dir=root / "researcher",
        participant_id=RESEARCHER,
        management_listen="127.0.0.1:0",
        protocol_listen="127.0.0.1:0",
    ).write()
    document = yaml.safe_load(loaded.path.read_text(encoding="utf-8"))
    document["aggregator"] = {"enabled": enabled, "listen": "127.0.0.1:0"}
    loaded.path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    loaded = load_config(loaded.path)
    parties = {
        RESEARCHER: (loaded.resolve(loaded.model.tls.cert), loaded.resolve(loaded.model.tls.key))
    }
    for name, participant in (("city1", CITY1), ("city2", CITY2)):
        files = issue_certificate(pki, name, participant_id=participant, out_dir=root / name)
        parties[participant] = (files.cert, files.key)
    engine = create_engine(sqlite_url(root / "state" / "researcher.db"))
    migrate(engine)
    audit = SqlAuditLog(engine)
    store = SqlNegotiationStore(engine, audit)
    requests = SqlRequestLog(engine)
    aggregator = Aggregator(loaded, store, audit)
    return Researcher(
        root=root,
        loaded=loaded,
        store=store,
        audit=audit,
        requests=requests,
        aggregator=aggregator,
        party_files={p: (c.read_bytes(), k.read_bytes()) for p, (c, k) in parties.items()},
    )


@dataclass(frozen=True)
class Served:
    """A running training API."""

    address: str
    servicer: TrainingManagementServicer


@contextmanager
def management_server(
    researcher: Researcher, *, tls: bool = False, watch_max_seconds: float = 600.0
) -> Iterator[Served]:
    """Serve the training API as the node's management server does.

    With ``tls`` the server uses the node's certificate and admin token and writes
    the node's endpoints file, so ``hanse`` commands with ``--config`` reach it.
    """
    interceptors: list[grpc.ServerInterceptor] = [ErrorInterceptor()]
    if tls:
        interceptors.insert(0, AdminTokenInterceptor(researcher.loaded.admin_token()))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=interceptors)
    servicer = add_training_service(
        server,
        researcher.aggregator,
        researcher.requests,
        poll_seconds=POLL,
        watch_max_seconds=watch_max_seconds,
    )
    if tls:
        credentials = server_credentials(
            load_node_tls(researcher.loaded), require_client_auth=False
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    server.start()
    if tls:
        write_endpoints(
            researcher.loaded.endpoints_file, Endpoints(protocol="127.0.0.1:1", management=address)
        )
    try:
        yield Served(address, servicer)
    finally:
        server.stop(grace=None).wait(5)
        researcher.loaded.endpoints_file.unlink(missing_ok=True)


def request_id() -> str:
    """A fresh idempotency key."""
    return str(uuid.uuid4())


def names(items: Sequence[Any]) -> list[str]:
    """The run ids of a list of Training messages."""
    return [item.run_id for item in items]
