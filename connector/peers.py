"""Known peers, and a client that reaches their protocol API over mutual TLS.

Before the first call to a peer, the client checks that the server at the
configured address presents the configured participant id (its certificate's URI
SAN, issued by the trust bundle); a mismatch is refused before any request is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from connector.errors import ConnectorError, from_rpc_error, not_found, unavailable
from connector.identity import IdentityError, LoadedTLS, channel_credentials
from connector.identity.peer import fetch_server_participant_id
from connector.v1 import catalog_protocol_pb2, catalog_protocol_pb2_grpc, dataset_pb2

Req = TypeVar("Req")
Resp = TypeVar("Resp")

PASS_THROUGH_REASONS = frozenset(
    {
        "DATASET_NOT_FOUND",
        "INVALID_ARGUMENT",
        "REQUEST_TOO_LARGE",
        "OFFER_NOT_FOUND",
        "NEGOTIATION_NOT_FOUND",
        "TRANSITION_INVALID",
        "MESSAGE_INVALID",
        "POLICY_REFUSED",
        "AGREEMENT_INVALID",
    }
)
"""Peer errors returned to the caller as they are; others become PEER_ERROR."""


@dataclass(frozen=True)
class Peer:
    """A node this node talks to."""

    name: str
    """Local short name."""
    participant_id: str
    """Its participant id (the URI SAN of its certificate)."""
    address: str
    """Its protocol API, host:port."""


class PeerDirectory:
    """The peers a node knows, found by name or participant id."""

    def __init__(self, peers: Iterable[Peer]) -> None:
        self._peers = sorted(peers, key=lambda p: p.name)

    def all(self) -> list[Peer]:
        """Every known peer, by name."""
        return list(self._peers)

    def find(self, key: str) -> Peer:
        """The peer named ``key`` or having participant id ``key``.

        Raises:
            ConnectorError: NOT_FOUND with reason PEER_UNKNOWN.
        """
        for peer in self._peers:
            if key in (peer.name, peer.participant_id):
                return peer
        known = ", ".join(p.name for p in self._peers) or "none configured"
        raise not_found("PEER_UNKNOWN", f"unknown peer {key!r}; known peers: {known}", peer=key)


class PeerClient:
    """Calls peers' protocol APIs with this node's certificate."""

    def __init__(self, tls: LoadedTLS, *, timeout: float = 10.0) -> None:
        self._tls = tls
        self._credentials = channel_credentials(tls)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._channels: dict[tuple[str, str], grpc.Channel] = {}

    def catalog(self, peer: Peer, *, keyword: str = "") -> catalog_protocol_pb2.Catalog:
        """The peer's whole catalog (all pages joined)."""
        stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(self.channel(peer))
        joined = catalog_protocol_pb2.Catalog()
        token = ""
        for _ in range(10_000):
            request = catalog_protocol_pb2.GetCatalogRequest(
                page_size=500, page_token=token, keyword=keyword
            )
            response = self.call(peer, stub.GetCatalog, request)
            if not joined.participant_id:
                joined.CopyFrom(response.catalog)
            else:
                joined.datasets.extend(response.catalog.datasets)
            token = response.next_page_token
            if not token:
                break
        self._check_claim(peer, joined.participant_id)
        return joined

    def dataset(self, peer: Peer, dataset_id: str) -> dataset_pb2.Dataset:
        """One dataset of the peer's catalog."""
        stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(self.channel(peer))
        request = catalog_protocol_pb2.GetCatalogDatasetRequest(dataset_id=dataset_id)
        response = self.call(peer, stub.GetCatalogDataset, request)
        self._check_claim(peer, response.participant_id)
        return response.dataset

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def channel(self, peer: Peer) -> grpc.Channel:
        """A channel to the peer, after checking once that it presents the configured identity."""
        key = (peer.address, peer.participant_id)
        with self._lock:
            channel = self._channels.get(key)
        if channel is not None:
            return channel
        try:
            presented = fetch_server_participant_id(peer.address, self._tls, timeout=self._timeout)
        except IdentityError as exc:
            raise unavailable(
                "PEER_UNAVAILABLE",
                f"cannot reach peer {peer.name} at {peer.address} over mutual TLS: {exc}",
                peer=peer.name,
            ) from exc
        self._check_claim(peer, presented)
        channel = grpc.secure_channel(peer.address, self._credentials)
        with self._lock:
            existing = self._channels.setdefault(key, channel)
        if existing is not channel:
            channel.close()
        return existing

    def _check_claim(self, peer: Peer, presented: str) -> None:
        if presented != peer.participant_id:
            raise ConnectorError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "PEER_IDENTITY_MISMATCH",
                f"peer {peer.name} at {peer.address} is {presented!r}, "
                f"but this node's config expects {peer.participant_id!r}",
                metadata={"peer": peer.name, "presented": presented},
            )

    def call(
        self, peer: Peer, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req
    ) -> Resp:
        """Call a peer; its refusals keep their reason where the caller can act on it."""
        try:
            return method(request, timeout=self._timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            if error.reason in PASS_THROUGH_REASONS:
                raise ConnectorError(
                    error.code,
                    error.reason,
                    f"peer {peer.name}: {error.message}",
                    error.retryable,
                    {**error.metadata, "peer": peer.name},
                    error.violations,
                ) from exc
            if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unavailable(
                    "PEER_UNAVAILABLE",
                    f"peer {peer.name} at {peer.address} did not answer: {error.message}",
                    peer=peer.name,
                ) from exc
            raise ConnectorError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "PEER_ERROR",
                f"peer {peer.name} refused: {error.message} [{error.reason}]",
                metadata={"peer": peer.name, "peer_reason": error.reason},
            ) from exc
