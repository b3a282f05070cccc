"""A client of a node's management API, configured from the node's config file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import grpc

from connector.errors import ConnectorError, from_rpc_error
from connector.identity import channel_credentials
from connector.interceptors.admin import bearer_metadata
from connector.v1 import (
    dataset_management_pb2_grpc,
    negotiation_management_pb2_grpc,
    peer_management_pb2_grpc,
    privacy_management_pb2_grpc,
    training_management_pb2_grpc,
)
from node.config import LoadedConfig
from node.endpoints import connectable, read_endpoints
from node.server import load_node_tls

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def management_address(loaded: LoadedConfig) -> str:
    """Where the node's management API is: the running node's endpoints file, else config."""
    endpoints = read_endpoints(loaded.endpoints_file)
    if endpoints is not None and endpoints.management:
        return connectable(endpoints.management)
    return connectable(loaded.model.management.listen)


class NodeClient:
    """Calls one node's management API with its admin token."""

    def __init__(self, loaded: LoadedConfig, *, timeout: float = 30.0) -> None:
        self.config = loaded
        self.address = management_address(loaded)
        self.timeout = timeout
        tls = load_node_tls(loaded)
        self._metadata = bearer_metadata(loaded.admin_token())
        self._channel = grpc.secure_channel(
            self.address, channel_credentials(tls, with_client_cert=False)
        )
        self.datasets = dataset_management_pb2_grpc.DatasetManagementServiceStub(self._channel)
        self.peers = peer_management_pb2_grpc.PeerManagementServiceStub(self._channel)
        self.negotiations = negotiation_management_pb2_grpc.NegotiationManagementServiceStub(
            self._channel
        )
        self.trainings = training_management_pb2_grpc.TrainingManagementServiceStub(self._channel)
        self.privacy = privacy_management_pb2_grpc.PrivacyManagementServiceStub(self._channel)

    def call(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        """Call ``method``; failures become :class:`ConnectorError` with a readable message."""
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def stream(
        self,
        method: grpc.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None = None,
    ) -> Iterator[Resp]:
        """Call a server-streaming ``method`` with deadline ``timeout``; yield its responses.

        Failures (a passed deadline too) become :class:`ConnectorError`.
        """
        try:
            yield from method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: grpc.RpcError) -> ConnectorError:
        error = from_rpc_error(exc)
        if error.reason == "UNKNOWN" and error.code == grpc.StatusCode.UNAVAILABLE:
            return ConnectorError(
                error.code,
                "UNKNOWN",
                f"node not reachable at {self.address} ({error.message}); is it running? "
                f"start it with: hanse node start --config {self.config.path}",
                retryable=True,
            )
        return error

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
