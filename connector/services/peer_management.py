"""Management API: known peers, and their catalogs asked through this node."""

from __future__ import annotations

import grpc

from connector.datasets import is_valid_id
from connector.errors import invalid_argument
from connector.peers import Peer, PeerClient, PeerDirectory
from connector.v1 import peer_management_pb2 as pb
from connector.v1 import peer_management_pb2_grpc


def _peer_pb(peer: Peer) -> pb.Peer:
    return pb.Peer(name=peer.name, participant_id=peer.participant_id, address=peer.address)


class PeerManagementServicer(peer_management_pb2_grpc.PeerManagementServiceServicer):
    """Reaches peers' protocol APIs on the operator's behalf."""

    def __init__(self, directory: PeerDirectory, client: PeerClient) -> None:
        self._directory = directory
        self._client = client

    def ListPeers(
        self, request: pb.ListPeersRequest, context: grpc.ServicerContext
    ) -> pb.ListPeersResponse:
        """The configured peers."""
        return pb.ListPeersResponse(peers=[_peer_pb(p) for p in self._directory.all()])

    def GetPeerCatalog(
        self, request: pb.GetPeerCatalogRequest, context: grpc.ServicerContext
    ) -> pb.GetPeerCatalogResponse:
        """The peer's catalog, over mutual TLS with this node's certificate."""
        if not request.peer:
            raise invalid_argument("name the peer (name or participant id)", "peer")
        peer = self._directory.find(request.peer)
        catalog = self._client.catalog(peer, keyword=request.keyword)
        return pb.GetPeerCatalogResponse(peer=_peer_pb(peer), catalog=catalog)

    def GetPeerDataset(
        self, request: pb.GetPeerDatasetRequest, context: grpc.ServicerContext
    ) -> pb.GetPeerDatasetResponse:
        """One dataset of the peer's catalog."""
        if not request.peer:
            raise invalid_argument("name the peer (name or participant id)", "peer")
        if not is_valid_id(request.dataset_id):
            raise invalid_argument("dataset_id is missing or malformed", "dataset_id")
        peer = self._directory.find(request.peer)
        dataset = self._client.dataset(peer, request.dataset_id)
        return pb.GetPeerDatasetResponse(peer=_peer_pb(peer), dataset=dataset)
