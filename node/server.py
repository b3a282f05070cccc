"""The node process: protocol API (mutual TLS), management API, health, metrics.

:class:`NodeServer` wires the stores, services and interceptors from a
:class:`~node.config.LoadedConfig`; :func:`serve` runs it until SIGTERM or SIGINT,
then drains in-flight RPCs and exits cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Gauge, Info, start_http_server

import connector
from connector.datasets import Column, Dataset, DataSource, Offer
from connector.dsp import endpoint_url
from connector.identity import (
    LoadedTLS,
    TLSFiles,
    certificate_participant_id,
    load_tls,
    server_credentials,
)
from connector.interceptors.admin import AdminTokenInterceptor
from connector.interceptors.authentication import PeerAuthenticationInterceptor
from connector.interceptors.errors import ErrorInterceptor
from connector.interceptors.limits import RequestSizeInterceptor
from connector.interceptors.metrics import MetricsInterceptor, RpcMetrics
from connector.negotiation.changes import NegotiationChanges
from connector.negotiation.dispatcher import Dispatcher
from connector.negotiation.engine import ACK_GRACE_SECONDS, NegotiationEngine, Party
from connector.negotiation.transport import GrpcTransport
from connector.peers import Peer, PeerClient, PeerDirectory
from connector.services.catalog_protocol import CatalogProtocolServicer
from connector.services.dataset_management import DatasetManagementServicer
from connector.services.identity import NodeIdentity
from connector.services.negotiation_management import MAX_WATCHES, NegotiationManagementServicer
from connector.services.negotiation_protocol import NegotiationProtocolServicer
from connector.services.peer_management import PeerManagementServicer
from connector.services.privacy_management import PrivacyManagementServicer
from connector.store import (
    SqlAuditLog,
    SqlDatasetStore,
    SqlNegotiationStore,
    SqlRequestLog,
    create_engine,
    migrate,
)
from connector.store.ledger import SqlPrivacyLedger
from connector.v1 import (
    catalog_protocol_pb2,
    catalog_protocol_pb2_grpc,
    dataset_management_pb2,
    dataset_management_pb2_grpc,
    negotiation_management_pb2,
    negotiation_management_pb2_grpc,
    negotiation_protocol_pb2,
    negotiation_protocol_pb2_grpc,
    peer_management_pb2,
    peer_management_pb2_grpc,
    privacy_management_pb2,
    privacy_management_pb2_grpc,
    training_management_pb2,
)
from node.config import ConfigError, DatasetConfig, LoadedConfig, is_loopback
from node.endpoints import Endpoints, connectable, write_endpoints
from node.logs import configure_logging

_log = logging.getLogger("hanse.node")

GRACE_SECONDS = 10.0
"""How long SIGTERM waits for in-flight RPCs."""

RPC_WORKERS = 16
"""Threads serving the RPCs of one API at once."""

PROTOCOL_SERVICES = (
    catalog_protocol_pb2.DESCRIPTOR.services_by_name["CatalogProtocolService"],
    negotiation_protocol_pb2.DESCRIPTOR.services_by_name["NegotiationProtocolService"],
)
MANAGEMENT_SERVICES = (
    dataset_management_pb2.DESCRIPTOR.services_by_name["DatasetManagementService"],
    peer_management_pb2.DESCRIPTOR.services_by_name["PeerManagementService"],
    negotiation_management_pb2.DESCRIPTOR.services_by_name["NegotiationManagementService"],
    training_management_pb2.DESCRIPTOR.services_by_name["TrainingManagementService"],
    privacy_management_pb2.DESCRIPTOR.services_by_name["PrivacyManagementService"],
)


@dataclass
class _Listener:
    server: grpc.Server
    address: str


def dataset_from_config(loaded: LoadedConfig, dataset: DatasetConfig) -> Dataset:
    """The domain dataset a config entry declares (policies normalised)."""
    source = (
        DataSource(sql_table=dataset.sql_table)
        if dataset.format == "sql"
        else DataSource(path=str(loaded.resolve(dataset.path)) if dataset.path else "")
    )
    return Dataset(
        id=dataset.id,
        title=dataset.title,
        description=dataset.description,
        keywords=tuple(dataset.keywords),
        format=dataset.format,
        source=source,
        columns=tuple(Column(c.name, c.type, c.description, c.unit) for c in dataset.columns),
        offers=tuple(
            sorted(
                (
                    Offer(
                        id=offer.id,
                        dataset_id=dataset.id,
                        policy=loaded.offer_policy(dataset, index),
                        auto_agree=offer.auto_agree,
                    )
                    for index, offer in enumerate(dataset.offers)
                ),
                key=lambda o: o.id,
            )
        ),
    )


def load_node_tls(loaded: LoadedConfig) -> LoadedTLS:
    """The node's TLS material, checked against its participant id.

    Raises:
        ConfigError: a file is unreadable, or the certificate names another participant.
    """
    section = loaded.model.tls
    files = TLSFiles(
        cert=loaded.resolve(section.cert),
        key=loaded.resolve(section.key),
        trust_bundle=loaded.resolve(section.trust_bundle),
    )
    try:
        tls = load_tls(files)
    except Exception as exc:  # IdentityError and OS errors carry the file name
        raise ConfigError(loaded.path, "tls", str(exc)) from exc
    presented = certificate_participant_id(tls.cert_pem)
    if presented != loaded.model.node.participant_id:
        raise ConfigError(
            loaded.path,
            "tls.cert",
            f"certificate {files.cert} is for participant {presented!r}, but node.participant_id "
            f"is {loaded.model.node.participant_id!r}; issue a certificate with "
            "'hanse pki issue NAME --participant-id URI'",
        )
    return tls


class NodeServer:
    """One Hanse node: its servers, stores and services."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.config = loaded
        self.model = loaded.model
        self.registry = CollectorRegistry()
        self._listeners: list[_Listener] = []
        self._health = health.HealthServicer()
        self._metrics_server: Any = None
        self._peer_client: PeerClient | None = None
        self._engine: Any = None
        self._dispatcher: Dispatcher | None = None
        self._changes: NegotiationChanges | None = None
        self._training: Any = None
        self._connectivity: Any = None
        self.aggregator: Any = None
        self.endpoints: Endpoints | None = None

    def start(self) -> Endpoints:
        """Open the store, bind every port, start serving; return the bound addresses."""
        # Everything that can be wrong in the config is checked before the store is touched.
        tls = load_node_tls(self.config)
        admin_token = self.config.admin_token()
        self._engine = create_engine(self.config.database_url())
        migrate(self._engine)
        store = SqlDatasetStore(self._engine)
        for dataset in self.model.datasets:
            store.upsert_dataset(dataset_from_config(self.config, dataset))
        requests = SqlRequestLog(self._engine)
        rpc_metrics = RpcMetrics(self.registry)
        Info("hanse_node", "The node's identity and version.", registry=self.registry).info(
            {
                "name": self.model.node.name,
                "participant_id": self.model.node.participant_id,
                "version": connector.__version__,
            }
        )
        Gauge("hanse_datasets", "Datasets registered.", registry=self.registry).set_function(
            lambda: float(store.count_datasets())
        )

        protocol = self._server(
            [
                MetricsInterceptor(rpc_metrics, "protocol"),
                PeerAuthenticationInterceptor(),
                RequestSizeInterceptor(self.model.protocol.max_request_bytes),
                ErrorInterceptor(),
            ],
            self.model.protocol.max_request_bytes,
        )
        protocol_port = protocol.add_secure_port(
            self.model.protocol.listen, server_credentials(tls, require_client_auth=True)
        )
        protocol_address = _bound(self.model.protocol.listen, protocol_port)
        advertised = self.model.protocol.advertised_address or connectable(protocol_address)
        identity = NodeIdentity(
            participant_id=self.model.node.participant_id,
            name=self.model.node.name,
            endpoint_url=endpoint_url(advertised),
        )
        catalog_protocol_pb2_grpc.add_CatalogProtocolServiceServicer_to_server(
            CatalogProtocolServicer(store, identity), protocol
        )
        self._add_common(protocol, PROTOCOL_SERVICES)
        self._listeners.append(_Listener(protocol, protocol_address))

        management = self._server(
            [
                MetricsInterceptor(rpc_metrics, "management"),
                AdminTokenInterceptor(admin_token),
                RequestSizeInterceptor(self.model.management.max_request_bytes),
                ErrorInterceptor(),
            ],
            self.model.management.max_request_bytes,
            # Each open WatchManagedNegotiation holds a thread: room for all of them.
            workers=RPC_WORKERS + MAX_WATCHES,
        )
        management_port = management.add_secure_port(
            self.model.management.listen, server_credentials(tls, require_client_auth=False)
        )
        self._peer_client = PeerClient(tls, timeout=self.model.protocol.peer_timeout_seconds)
        directory = PeerDirectory(
            Peer(p.name, p.participant_id, p.address) for p in self.model.peers
        )
        negotiations = SqlNegotiationStore(
            self._engine, SqlAuditLog(self._engine), requests=requests
        )
        self.negotiation_engine = NegotiationEngine(
            party=Party(
                participant_id=self.model.node.participant_id,
                callback_address=identity.endpoint_url,
                cert_pem=tls.cert_pem,
                key_pem=tls.key_pem,
                trust_pem=tls.trust_pem,
            ),
            store=negotiations,
            datasets=store,
            transport=GrpcTransport(self._peer_client),
            known_addresses={p.participant_id: p.address for p in self.model.peers},
            memberships=self.model.peer_memberships(),
            ack_grace=ACK_GRACE_SECONDS,
        )
        negotiation_protocol_pb2_grpc.add_NegotiationProtocolServiceServicer_to_server(
            NegotiationProtocolServicer(self.negotiation_engine, requests), protocol
        )
        negotiation_management_pb2_grpc.add_NegotiationManagementServiceServicer_to_server(
            NegotiationManagementServicer(
                self.negotiation_engine, directory, self._peer_client, requests
            ),
            management,
        )
        self._dispatcher = Dispatcher(self.negotiation_engine)
        self._changes = self.negotiation_engine.changes
        dataset_management_pb2_grpc.add_DatasetManagementServiceServicer_to_server(
            DatasetManagementServicer(store, requests), management
        )
        peer_management_pb2_grpc.add_PeerManagementServiceServicer_to_server(
            PeerManagementServicer(directory, self._peer_client), management
        )
        privacy_management_pb2_grpc.add_PrivacyManagementServiceServicer_to_server(
            PrivacyManagementServicer(store, SqlPrivacyLedger(self._engine), negotiations),
            management,
        )
        self._add_training(management, negotiations, requests)
        self._add_common(management, MANAGEMENT_SERVICES)
        management_address = _bound(self.model.management.listen, management_port)
        if not is_loopback(self.model.management.listen):
            _log.warning(
                "management API listens beyond loopback; keep it cluster-internal "
                "(the admin token is its only guard there)",
                extra={"management": management_address},
            )
        self._listeners.append(_Listener(management, management_address))

        health_address = ""
        if self.model.health.listen:
            probe = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            health_pb2_grpc.add_HealthServicer_to_server(self._health, probe)
            health_address = _bound(
                self.model.health.listen, probe.add_insecure_port(self.model.health.listen)
            )
            self._listeners.append(_Listener(probe, health_address))

        metrics_address = ""
        if self.model.metrics.listen:
            host, _, port = self.model.metrics.listen.rpartition(":")
            self._metrics_server, _thread = start_http_server(
                int(port), addr=host.strip("[]"), registry=self.registry
            )
            metrics_address = f"{host}:{self._metrics_server.server_port}"

        for listener in self._listeners:
            listener.server.start()
        self._dispatcher.start()
        if self._connectivity is not None:
            self._connectivity.start()
        for name in ("", *(s.full_name for s in PROTOCOL_SERVICES + MANAGEMENT_SERVICES)):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.endpoints = Endpoints(
            protocol=protocol_address,
            management=management_address,
            health=health_address,
            metrics=metrics_address,
            pid=os.getpid(),
        )
        write_endpoints(self.config.endpoints_file, self.endpoints)
        _log.info(
            "node serving",
            extra={
                "participant_id": self.model.node.participant_id,
                "protocol": protocol_address,
                "management": management_address,
                "health": health_address,
                "metrics": metrics_address,
                "datasets": store.count_datasets(),
            },
        )
        return self.endpoints

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Stop taking new RPCs, let in-flight ones finish (up to ``grace``), release all."""
        started = self.endpoints is not None
        self._health.enter_graceful_shutdown()
        if self._changes is not None:
            self._changes.close()  # open watches end now, not at the end of the grace
        if self._training is not None:
            self._training.close()  # open training watches too
        events = [listener.server.stop(grace) for listener in self._listeners]
        for event in events:
            event.wait(grace + 1)
        self._listeners.clear()
        if self._dispatcher is not None:
            self._dispatcher.stop()
            self._dispatcher = None
        self._stop_training()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        if self._peer_client is not None:
            self._peer_client.close()
        if self._engine is not None:
            self._engine.dispose()
        if started:
            self.config.endpoints_file.unlink(missing_ok=True)
            self.endpoints = None
            _log.info("node stopped")

    def _add_training(
        self, management: grpc.Server, negotiations: SqlNegotiationStore, requests: SqlRequestLog
    ) -> None:
        """The training API (aggregator role) and the agreement-driven SuperNodes (city role).

        Imported here: Flower and torch load only in the node process, not in every CLI call.
        """
        from node.training.aggregator import Aggregator
        from node.training.connectivity import Connectivity, ledger_rounds
        from node.training.service import add_training_service

        audit = SqlAuditLog(self._engine)
        self.aggregator = Aggregator(self.config, negotiations, audit)
        self._training = add_training_service(management, self.aggregator, requests)
        if self.model.datasets:
            ledger = SqlPrivacyLedger(self._engine)
            self._connectivity = Connectivity(
                self.config,
                negotiations,
                audit,
                spent=ledger.total_epsilon,
                rounds=ledger_rounds(ledger),
            )

    def _stop_training(self) -> None:
        if self._connectivity is not None:
            self._connectivity.stop()
            self._connectivity = None
        if self.aggregator is not None:
            self.aggregator.stop()
            self.aggregator = None
        if self._training is not None:
            from federation.guard.context import close_databases

            close_databases()
            self._training = None

    def _server(
        self,
        interceptors: list[grpc.ServerInterceptor],
        max_bytes: int,
        *,
        workers: int = RPC_WORKERS,
    ) -> grpc.Server:
        # gRPC's own limit is a backstop above ours, so ours answers with a reason.
        backstop = max_bytes * 2 + 64 * 1024
        return grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", backstop),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=256,
        )

    def _add_common(self, server: grpc.Server, services: tuple[Any, ...]) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [s.full_name for s in services]
        reflection.enable_server_reflection(
            (
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )


def _bound(listen: str, port: int) -> str:
    if port == 0:
        raise ConfigError("(listen)", listen, "could not bind; is the port in use?")
    host = listen.rpartition(":")[0]
    return f"{host}:{port}"


def serve(loaded: LoadedConfig) -> int:
    """Run the node until SIGTERM/SIGINT; return the exit code."""
    configure_logging(loaded.model.node.name, loaded.model.log.level, loaded.model.log.format)
    node = NodeServer(loaded)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        node.start()
    except Exception:
        node.stop(grace=0)
        raise
    while not stop.wait(1.0):
        pass
    node.stop()
    return 0
